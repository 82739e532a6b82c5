#!/usr/bin/env bash
# Train a 128x128 ImageNet model with torchrun: one process per GPU, on one or several nodes.
#
#   scripts/train_imagenet128.sh CONFIG OUT_DIR [dotted.key=value ...]
#
# Environment (defaults in brackets):
#   GPUS          GPUs per node           [the GPUs torch sees: torch.cuda.device_count(), honours CUDA_VISIBLE_DEVICES]
#   NODES         number of nodes                                  [1]
#   NODE_RANK     this node's rank, 0 .. NODES-1                   [0]   (multi-node without RDZV_ENDPOINT only)
#   RDZV_ENDPOINT host:port of the rendezvous (any node, e.g. node 0) for multi-node runs   [unset]
#   RDZV_ID       a job id shared by all nodes                     [hamgan]
#   MASTER_ADDR / MASTER_PORT  static multi-node launch instead of RDZV_ENDPOINT
#   MAX_RESTARTS  torchrun --max-restarts: after a failure (a lost rank, a node error) all ranks restart and resume
#                 from the latest checkpoint by themselves                                   [3]
#   SHUTDOWN_TIMEOUT  seconds torchrun waits after SIGTERM before SIGKILL: the window the trainer has to finish
#                 its step and write a checkpoint (1.2 GB at 128x128) on preemption           [300]
#   PYTHON        the Python with torch and hamgan                 [python3]
#   DRY_RUN=1     print the torchrun command instead of running it
#
# One node, 8 GPUs:
#   scripts/train_imagenet128.sh configs/imagenet128_hamgan_baby.yaml runs/hamgan_baby data.packed=/data/in128
# Four nodes (run the same line on every node; the endpoint is any reachable node):
#   NODES=4 RDZV_ENDPOINT=node0:29400 scripts/train_imagenet128.sh configs/imagenet128_hamgan_strong.yaml \
#       /shared/runs/hamgan_strong data.packed=/shared/in128
#
# train.batch_size in the config is the GLOBAL batch: it is split over NODES x GPUS processes (and train.accumulate
# micro-batches), e.g. 256 on 8 GPUs = 32 images per GPU. Global rank 0 holds the run lock and writes checkpoints,
# samples and metrics to OUT_DIR; on resume it chooses the checkpoint and every rank loads that file, so multi-node
# runs need OUT_DIR on a shared file system. Rerunning the same command resumes.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"  # this header
  exit 2
fi
CONFIG=$1
OUT=$2
shift 2

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "train_imagenet128.sh: '$PYTHON' cannot import torch; set PYTHON to the Python of your hamgan environment" >&2
  exit 2
fi
if [[ -z "${GPUS:-}" ]]; then
  GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
fi
if [[ "$GPUS" -lt 1 ]]; then
  echo "train_imagenet128.sh: no GPU visible to torch (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset});" \
       "this script launches one process per GPU. Use a GPU machine, or hamgan-train for a CPU run" >&2
  exit 2
fi
NODES=${NODES:-1}
MAX_RESTARTS=${MAX_RESTARTS:-3}
SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT:-300}

ARGS=(--nnodes "$NODES" --nproc_per_node "$GPUS" --max-restarts "$MAX_RESTARTS")
# --shutdown-timeout exists in torchrun since torch 2.7 (checked in 2.14.1); older releases read the variable
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=$SHUTDOWN_TIMEOUT
if "$PYTHON" -m torch.distributed.run --help 2>/dev/null | grep -q -- "--shutdown-timeout"; then
  ARGS+=(--shutdown-timeout "$SHUTDOWN_TIMEOUT")
else
  echo "train_imagenet128.sh: this torchrun has no --shutdown-timeout; its default window may be too short" \
       "to write a checkpoint on preemption (upgrade torch)" >&2
fi
if [[ "$NODES" -eq 1 && -z "${RDZV_ENDPOINT:-}" && -z "${MASTER_ADDR:-}" ]]; then
  ARGS+=(--standalone)
elif [[ -n "${RDZV_ENDPOINT:-}" ]]; then
  ARGS+=(--rdzv_backend c10d --rdzv_endpoint "$RDZV_ENDPOINT" --rdzv_id "${RDZV_ID:-hamgan}")
else
  ARGS+=(--node_rank "${NODE_RANK:-0}" --master_addr "${MASTER_ADDR:?set RDZV_ENDPOINT or MASTER_ADDR}" \
         --master_port "${MASTER_PORT:-29500}")
fi

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
CMD=("$PYTHON" -m torch.distributed.run "${ARGS[@]}" -m hamgan.train "$CONFIG" --out "$OUT" "$@")
if [[ -n "${DRY_RUN:-}" ]]; then
  echo "${CMD[@]}"
  exit 0
fi
exec "${CMD[@]}"
