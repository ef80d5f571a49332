#!/usr/bin/env bash
# Feature extraction on all GPUs of one node: one process (rank) per GPU, each extracting one shard.
#
#   pipelines/torchrun_extract.sh 8 coin /data/COIN feats/coin-vitb16 [extra cmdcl extract options]
#
# torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `cmdcl extract` takes its shard from RANK/WORLD_SIZE
# (cmdcl.core.distributed.shard_from_env) and this script pins each rank to GPU LOCAL_RANK. The ranks
# never talk to each other: a rank that fails does not stop the others, and re-running the script
# resumes only the unfinished shards. The shards are verified and merged at the end.
set -euo pipefail

GPUS=${1:?usage: torchrun_extract.sh GPUS DATASET ROOT OUT [extra cmdcl extract options]}
DATASET=${2:?dataset name}
ROOT=${3:?dataset root}
OUT=${4:?output folder}
shift 4
MODEL=${MODEL:-ViT-B-16}
PRETRAINED=${PRETRAINED-openai}  # empty: the model's random weights (tests)
FRAMES=${FRAMES:-64}
DEVICE=${DEVICE:-cuda}  # cuda: rank r uses cuda:LOCAL_RANK; anything else (cpu) is passed as it is
CPUS=$(nproc)
WORKERS=${WORKERS:-$(( CPUS / GPUS > 1 ? CPUS / GPUS - 1 : 1 ))}  # decode processes per rank

export HDF5_USE_FILE_LOCKING=FALSE  # NFS/Lustre; one writer per shard

# The per-rank command runs through `bash -c` so that LOCAL_RANK is read inside each rank.
export DEVICE
torchrun --standalone --nproc_per_node="$GPUS" --no-python bash -c '
  device=$DEVICE; [[ $device == cuda ]] && device="cuda:${LOCAL_RANK}"
  exec cmdcl extract --device "$device" "$@"
' cmdcl-rank --dataset "$DATASET" --root "$ROOT" --out "$OUT" --model "$MODEL" ${PRETRAINED:+--pretrained "$PRETRAINED"} \
  --frames "$FRAMES" --workers "$WORKERS" --no-progress "$@" || status=$?

if [[ ${status:-0} -ne 0 ]]; then
  echo "some ranks failed (exit ${status}); re-run the same command to resume their shards" >&2
  exit "$status"
fi
cmdcl verify "$OUT"
cmdcl merge "$OUT" --out "${OUT%/}.h5"
