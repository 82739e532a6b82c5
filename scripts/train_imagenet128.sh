#!/usr/bin/env bash
# Train a 128x128 ImageNet model with torchrun: one process per GPU, on one or several nodes.
#
#   scripts/train_imagenet128.sh CONFIG OUT_DIR [dotted.key=value ...]
#
# Environment (defaults in brackets):
#   GPUS         GPUs per node                                    [all visible: nvidia-smi -L | wc -l]
#   NODES        number of nodes                                  [1]
#   NODE_RANK    this node's rank, 0 .. NODES-1                   [0]   (multi-node without RDZV_ENDPOINT only)
#   RDZV_ENDPOINT  host:port of the rendezvous (any node, e.g. node 0) for multi-node runs   [unset]
#   RDZV_ID      a job id shared by all nodes                     [hamgan]
#   MASTER_ADDR / MASTER_PORT  static multi-node launch instead of RDZV_ENDPOINT
#
# One node, 8 GPUs:
#   GPUS=8 scripts/train_imagenet128.sh configs/imagenet128_hamgan_baby.yaml runs/hamgan_baby data.packed=/data/in128.u8
# Four nodes (run the same line on every node; the endpoint is any reachable node):
#   NODES=4 GPUS=8 RDZV_ENDPOINT=node0:29400 scripts/train_imagenet128.sh configs/imagenet128_hamgan_strong.yaml \
#       /shared/runs/hamgan_strong data.packed=/shared/in128.u8
#
# train.batch_size in the config is the GLOBAL batch: it is split over NODES x GPUS processes (and train.accumulate
# micro-batches), e.g. 256 on 8 GPUs = 32 images per GPU. Global rank 0 writes checkpoints, samples and metrics to
# OUT_DIR; every rank reads the latest checkpoint there when resuming, so multi-node runs need OUT_DIR on a shared
# file system. Rerunning the same command resumes.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"  # this header
  exit 2
fi
CONFIG=$1
OUT=$2
shift 2

GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
NODES=${NODES:-1}
if [[ "$GPUS" -lt 1 ]]; then
  echo "train_imagenet128.sh: no GPU found (set GPUS=N to override)" >&2
  exit 2
fi

ARGS=(--nnodes "$NODES" --nproc_per_node "$GPUS")
if [[ "$NODES" -eq 1 && -z "${RDZV_ENDPOINT:-}" && -z "${MASTER_ADDR:-}" ]]; then
  ARGS+=(--standalone)
elif [[ -n "${RDZV_ENDPOINT:-}" ]]; then
  ARGS+=(--rdzv_backend c10d --rdzv_endpoint "$RDZV_ENDPOINT" --rdzv_id "${RDZV_ID:-hamgan}")
else
  ARGS+=(--node_rank "${NODE_RANK:-0}" --master_addr "${MASTER_ADDR:?set RDZV_ENDPOINT or MASTER_ADDR}" \
         --master_port "${MASTER_PORT:-29500}")
fi

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
exec torchrun "${ARGS[@]}" -m hamgan.train "$CONFIG" --out "$OUT" "$@"
