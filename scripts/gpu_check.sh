#!/usr/bin/env bash
# The GPU check of hamgan, in one call on a fresh machine with one CUDA GPU: prints one table, in 8 minutes.
#
#   scripts/gpu_check.sh [--out DIR] [--budget SECONDS] [--smoke]
#
# The rows (scripts/gpu_check_rows.py has the details), in priority order, each asserting something:
#   1. ImageNet-128 HamGAN-baby and SAGAN training steps at the real width, bf16: images/s and peak memory at the
#      largest batch that fits (256, else halved), eager, channels_last and torch.compile
#   2. a resume on the GPU: 2 + 2 steps against 4, bit-exact or within the run-to-run difference
#   3. fp16 with the grad scaler; fp16 resumed from a bf16 checkpoint
#   4. the context blocks at 1 x 512 x 128 x 128 next to the paper's Table 3
#   5. FID features and FID on the GPU against pytorch-fid
#   6. DDP on 2 GPUs with train.sync_bn and train.compile ("needs 2 GPUs" on a one-GPU machine: neither pass nor
#      fail)
# --smoke runs every row at tiny sizes on the CPU (tests this script; tests/test_gpu_check.py).
#
# Assumptions about the machine: the repository is checked out; a Python with a CUDA build of torch (and
# torchvision) is installed (PYTHON, else python3 / python); the other dependencies (numpy, scipy, pillow, pyyaml,
# tqdm, pytorch-fid) are imported from there or installed with pip into DIR/pydeps (--no-deps, the installed torch
# is never replaced). No internet is needed when they are present. The FID row needs the Inception weights
# pt_inception-2015-12-05-6726825d.pth in $TORCH_HOME/hub/checkpoints (or FID_WEIGHTS=path, or
# ../shared/fid-weights/ beside the repository).
#
# Output: the table on stdout and in DIR/gpu_check.md, rows with their figures in DIR/gpu_check.json (for
# docs/benchmarks.md), a log per job in DIR/logs/. Exit status: 0 every row passed (or needs 2 GPUs), 1 a row
# failed, 2 no GPU / no usable Python. Budget: --budget (default 480 s) bounds the whole check, set-up included;
# each job's time limit is its share of what is left.
set -uo pipefail
START=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=/tmp/hamgan-gpu-check
BUDGET=480
SMOKE=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --smoke) SMOKE=(--smoke); shift ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --out DIR, --budget SECONDS, --smoke)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT/logs"

PY=""
for cand in "${PYTHON:-}" python3 python; do
  if [[ -n "$cand" ]] && command -v "$cand" >/dev/null && "$cand" -c "import torch" 2>/dev/null; then
    PY=$(command -v "$cand"); break
  fi
done
if [[ -z "$PY" ]]; then
  echo "gpu_check.sh: no Python with torch found (set PYTHON=/path/to/python of a CUDA torch install)" >&2
  exit 2
fi

# Missing pure-Python dependencies go into DIR/pydeps, without dependencies of their own (never a second torch).
DEPS="$OUT/pydeps"
export PYTHONPATH="$ROOT:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
MISSING=""
for pair in numpy:numpy scipy:scipy PIL:pillow yaml:pyyaml tqdm:tqdm pytorch_fid:pytorch-fid \
            torchvision:torchvision; do
  if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${pair%%:*}') is None)"; then
    MISSING="$MISSING ${pair##*:}"
  fi
done
if [[ -n "$MISSING" ]]; then
  echo "gpu_check.sh: installing$MISSING into $DEPS" >&2
  if [[ " $MISSING " == *" torchvision "* ]]; then  # the torchvision release of this torch (0.(minor + 15))
    TV=$("$PY" -c "import torch; v = torch.__version__.split('+')[0].split('.'); print(f'0.{int(v[1]) + 15}.*')")
    MISSING=${MISSING/torchvision/torchvision==$TV}
  fi
  # shellcheck disable=SC2086
  if ! "$PY" -m pip install --quiet --no-deps --target "$DEPS" $MISSING > "$OUT/logs/pip.log" 2>&1; then
    echo "gpu_check.sh: pip could not install$MISSING (see $OUT/logs/pip.log); install them for $PY" >&2
    exit 2
  fi
fi

# The FID weights: a local copy into the torch hub cache ($TORCH_HOME/hub/checkpoints) when one is at hand.
WEIGHTS=pt_inception-2015-12-05-6726825d.pth
HUB=${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}/hub/checkpoints
for src in "${FID_WEIGHTS:-}" "$ROOT/../shared/fid-weights/$WEIGHTS"; do
  if [[ -n "$src" && -f "$src" && ! -f "$HUB/$WEIGHTS" ]]; then
    mkdir -p "$HUB" && cp "$src" "$HUB/$WEIGHTS"
  fi
done

LEFT=$(( BUDGET - ($(date +%s) - START) ))
exec "$PY" "$ROOT/scripts/gpu_check.py" --out "$OUT" --budget "$LEFT" "${SMOKE[@]}"
