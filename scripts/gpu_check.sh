#!/usr/bin/env bash
# The GPU check of hamgan, in one call on a fresh machine with one CUDA GPU: prints one table.
#
#   scripts/gpu_check.sh [--out DIR] [--budget SECONDS]
#
# What it measures (scripts/gpu_check.py; every row in its own process, with its own time limit):
#   - bench_context --device cuda at 1 x 512 x 128 x 128: Ham NMF, Ham CD, full attention; time and memory next to
#     the paper's Table 3 (Ham NMF 7.7 / 15.6 ms, attention 82.2 / 242 ms, infer / train)
#   - bench_train at 128x128, batch 64: ham / attention / none in bf16, plain, channels_last, and channels_last +
#     torch.compile (the compiled rows come last and are skipped when the time budget runs out); images/s, peak memory
#   - bench_fid on the GPU against pytorch-fid (Fashion-MNIST PNGs, or synthetic ones when Fashion-MNIST is absent)
#   - a 200-step Fashion-MNIST 32x32 training in bf16 (synthetic data of the same shape when it is absent)
#   - a 2-process DDP training on the one GPU: NCCL, or gloo when NCCL refuses two ranks on one device; plain and
#     with train.sync_bn
#
# Assumptions about the machine: the repository is checked out; a Python with a CUDA build of torch (and
# torchvision) is installed (PYTHON, else python3 / python); the other dependencies (numpy, scipy, pillow, pyyaml,
# tqdm, pytorch-fid) are imported from there or installed with pip into DIR/pydeps (--no-deps, the installed torch
# is never replaced). No internet is needed when they are present. FID rows need the Inception weights
# pt_inception-2015-12-05-6726825d.pth in $TORCH_HOME/hub/checkpoints (or FID_WEIGHTS=path, or
# ../shared/fid-weights/ beside the repo); without them pytorch-fid tries to download them, else those rows fail.
#
# Output: the table on stdout and in DIR/gpu_check.md, rows as JSON in DIR/gpu_check.json, each row's log in
# DIR/logs/. Exit status: 0 all rows passed, 1 some row failed or was skipped, 2 no GPU / no usable Python.
# Budget: --budget (default 450 s) bounds the whole check, set-up included; the compiled rows are skipped first.
set -uo pipefail
START=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=/tmp/hamgan-gpu-check
BUDGET=450
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --out DIR, --budget SECONDS)" >&2; exit 2 ;;
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
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() and torch.cuda.device_count() > 0 else 1)" \
    2>/dev/null; then
  echo "gpu_check.sh: no CUDA GPU visible to torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)" \
       "(CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}); this check needs one GPU" >&2
  exit 2
fi

# Missing pure-Python dependencies go into DIR/pydeps, without dependencies of their own (never a second torch).
DEPS="$OUT/pydeps"
export PYTHONPATH="$ROOT:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
MISSING=$("$PY" - <<'EOF'
import importlib.util
wanted = {"numpy": "numpy", "scipy": "scipy", "PIL": "pillow", "yaml": "pyyaml", "tqdm": "tqdm",
          "pytorch_fid": "pytorch-fid", "torchvision": "torchvision"}
print(" ".join(pkg for mod, pkg in wanted.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [[ -n "$MISSING" ]]; then
  echo "gpu_check.sh: installing $MISSING into $DEPS" >&2
  if [[ " $MISSING " == *" torchvision "* ]]; then  # the torchvision release of this torch (0.(minor + 15))
    TV=$("$PY" -c "import torch; v = torch.__version__.split('+')[0].split('.'); print(f'0.{int(v[1]) + 15}.*')")
    MISSING=${MISSING/torchvision/torchvision==$TV}
  fi
  # shellcheck disable=SC2086
  if ! "$PY" -m pip install --quiet --no-deps --target "$DEPS" $MISSING > "$OUT/logs/pip.log" 2>&1; then
    echo "gpu_check.sh: pip could not install $MISSING (see $OUT/logs/pip.log); install them for $PY" >&2
    exit 2
  fi
fi

WEIGHTS_DIR=$("$PY" -c "import torch; print(torch.hub.get_dir())")/checkpoints
WEIGHTS=pt_inception-2015-12-05-6726825d.pth
for src in "${FID_WEIGHTS:-}" "$ROOT/../shared/fid-weights/$WEIGHTS" "$ROOT/shared/fid-weights/$WEIGHTS"; do
  if [[ -n "$src" && -f "$src" && ! -f "$WEIGHTS_DIR/$WEIGHTS" ]]; then
    mkdir -p "$WEIGHTS_DIR" && cp "$src" "$WEIGHTS_DIR/$WEIGHTS"
  fi
done

LEFT=$(( BUDGET - ($(date +%s) - START) ))
exec "$PY" "$ROOT/scripts/gpu_check.py" --out "$OUT" --budget "$LEFT"
