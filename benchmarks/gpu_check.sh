#!/usr/bin/env bash
# One prepared check for a GPU node where cmdcl and its packages are installed and there is no network.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]              # the GPU check, within GPU_CHECK_BUDGET_S (470 s)
#   bash benchmarks/gpu_check.sh OUT_DIR --dry-run      # print the steps, run nothing
#   bash benchmarks/gpu_check.sh OUT_DIR --cpu-smoke    # the same steps at toy sizes on the CPU (minutes)
#
# Steps, in order of importance (a step that no longer fits the budget is skipped and recorded):
#   suite          the test suite (the CUDA-only tests run here, skipped elsewhere)
#   encoder        benchmarks/encoder_rates.py: ViT-B-16 and ViT-L-14, fp32 / amp-fp16 / fp16 / bf16, img/s and
#                  cosine to fp32
#   train-data     benchmarks/train_throughput.py --skip-cmdcl: the COIN-sized feature file and its data path
#   train-epoch    one epoch of the CMDCL head on that file on the GPU (`cmdcl train-head --epochs 1`)
#   decoder-choice benchmarks/decoder_choice.py on H.264 mp4: one decode worker's rate per installed backend
#                  (nvdec included), exact and keyframe seeking
#   videos         the benchmark videos (generated once; cached under benchmarks/out/videos)
#   extract-*      benchmarks/extract_throughput.py for ViT-L-14 then ViT-B-16, with each decoder (pyav, decord,
#                  nvdec: those installed) and each sampling mode (--seek exact / keyframe when the script has it)
# Every step's output goes to OUT_DIR/logs/<step>.log, its numbers to OUT_DIR/<step>.json, and
# OUT_DIR/summary.json holds every step's exit code, seconds and numbers.
# Models have random weights (pretrained none); HF_HUB_OFFLINE=1: nothing is downloaded.
set -u -o pipefail

OUT=${1:-benchmarks/out/gpu-check}
MODE=${2:-gpu}
case "$MODE" in gpu|--dry-run|--cpu-smoke) ;; *) echo "usage: $0 [OUT_DIR] [--dry-run|--cpu-smoke]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}  # 8 minutes less a margin for the summary
MIN_STEP_S=20
export HF_HUB_OFFLINE=1 HDF5_USE_FILE_LOCKING=FALSE PYTHONUNBUFFERED=1
mkdir -p "$OUT/logs"
: >"$OUT/steps.jsonl"
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))

record() {  # name status seconds note
  printf '{"step": "%s", "status": "%s", "seconds": %s, "note": "%s"}\n' "$1" "$2" "$3" "$4" >>"$OUT/steps.jsonl"
  printf '%-28s %-8s %6ss  %s\n' "$1" "$2" "$3" "$4"
}

step() {  # name limit_s command...: run it under the smaller of its limit and what is left of the budget
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - $(date +%s)))
  if [[ $MODE == --dry-run ]]; then
    echo "[dry-run] $name (limit ${limit}s): $*"
    record "$name" dry-run 0 ""
    return 0
  fi
  if ((left < MIN_STEP_S)); then
    record "$name" skipped 0 "budget spent (${left}s left)"
    return 0
  fi
  ((limit > left)) && limit=$left
  local t0 t1 rc
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  t1=$(date +%s%N)
  local tenths=$(((t1 - t0) / 100000000)) note=""
  ((rc == 124 || rc == 137)) && note="timed out after ${limit}s"
  record "$name" "$([[ $rc == 0 ]] && echo ok || echo "rc=$rc")" "$((tenths / 10)).$((tenths % 10))" "$note"
}

has() {  # has BACKEND: installed and usable here
  "$PY" -c "import sys; from cmdcl.extract.decoders import backend_available; sys.exit(0 if backend_available('$1') else 1)" \
    2>/dev/null
}

# ------------------------------------------------------------------------------------------- sizes
if [[ $MODE == --cpu-smoke ]]; then
  DEVICE=cpu; MODELS_ENC=(--tiny); EXTRACT_MODELS=(cmdcl-tiny); EXTRACT_SIZE=(--tiny --workers 2)
  SUITE=(tests/test_models.py tests/test_nvdec.py); TRAIN_SIZE=(--small); EPOCH_DEVICE=cpu
else
  DEVICE=cuda; MODELS_ENC=(--device cuda --models ViT-B-16 ViT-L-14 --batch-size 256 --batches 8)
  EXTRACT_MODELS=(ViT-L-14 ViT-B-16)
  EXTRACT_SIZE=(--videos "${GPU_CHECK_VIDEOS:-6}" --frames 64 --workers "$(($(nproc) > 1 ? $(nproc) - 1 : 1))"
                --device cuda --precision fp16)
  SUITE=(tests); TRAIN_SIZE=(); EPOCH_DEVICE=cuda
fi

echo "gpu_check: mode $MODE, budget ${BUDGET_S}s, output $OUT, python $PY"
if [[ $MODE != --dry-run ]]; then
  { nvidia-smi 2>&1 || echo "no nvidia-smi"; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; } >"$OUT/logs/machine.log" 2>&1
fi

# ------------------------------------------------------------------------------------------- steps
step suite 200 "$PY" -m pytest "${SUITE[@]}" -q -rs -p no:cacheprovider --junitxml="$OUT/suite.xml"
step encoder 120 "$PY" benchmarks/encoder_rates.py "${MODELS_ENC[@]}" --json "$OUT/encoder.json"

step train-data 120 "$PY" benchmarks/train_throughput.py "${TRAIN_SIZE[@]}" --skip-cmdcl --out benchmarks/out \
  --json "$OUT/train-data.json"
FEATURES=$("$PY" -c "import json,sys; print(json.load(open('$OUT/train-data.json'))['file'])" 2>/dev/null || true)
if [[ -n $FEATURES || $MODE == --dry-run ]]; then
  step train-epoch 120 "$PY" -c "
import json, sys, time
from cmdcl.pipelines.cli import main
started = time.perf_counter()
try:
    main(['train-head', '--features', '${FEATURES:-FEATURES}', '--out', '$OUT/train-run', '--method', 'cmdcl',
          '--epochs', '1', '--warmup-epochs', '0', '--device', '$EPOCH_DEVICE', '--no-progress'])
except SystemExit as exit:
    if exit.code:
        raise
wall = time.perf_counter() - started
epoch = [json.loads(line) for line in open('$OUT/train-run/metrics.jsonl') if line.strip()][0]
json.dump({'epoch': epoch, 'wall_s_with_startup_and_test': wall, 'features': '${FEATURES:-}',
           'device': '$EPOCH_DEVICE'}, open('$OUT/train-epoch.json', 'w'), indent=2)"
else
  record train-epoch skipped 0 "no feature file (train-data failed)"
fi


if [[ $MODE == --cpu-smoke ]]; then CHOICE_SIZE=(--videos 1 --seconds 8 --repeat 1); else CHOICE_SIZE=(--videos 2 --seconds 60 --repeat 1); fi
step decoder-choice 60 "$PY" benchmarks/decoder_choice.py --containers mp4 --seek exact keyframe "${CHOICE_SIZE[@]}" \
  --json "$OUT/decoder-choice.json"

if [[ $MODE == gpu ]]; then  # the videos extract_throughput.py draws for --videos N --seed 0, generated in parallel
  step videos 120 "$PY" -c "
import sys; from concurrent.futures import ProcessPoolExecutor; sys.path.insert(0, 'benchmarks')
from common import OUT, draw_specs, video_set
def make(spec):
    return video_set([spec], OUT / 'videos', log=print)
specs = draw_specs(${GPU_CHECK_VIDEOS:-6}, seed=0, prefix='v')
with ProcessPoolExecutor(len(specs)) as pool:
    print(list(pool.map(make, specs)))"
fi

DECODERS=()
for decoder in pyav nvdec decord; do
  if [[ $MODE == --dry-run ]] || has "$decoder"; then
    DECODERS+=("$decoder")
  else
    record "extract-$decoder" skipped 0 "$decoder not installed or no GPU"
  fi
done
SEEKS=(default)
if "$PY" benchmarks/extract_throughput.py --help 2>/dev/null | grep -q -- "--seek"; then
  SEEKS=(exact keyframe)
else
  record extract-seek skipped 0 "extract_throughput.py has no --seek: default sampling only"
fi
for model in "${EXTRACT_MODELS[@]}"; do
  for seek in "${SEEKS[@]}"; do
    for decoder in "${DECODERS[@]}"; do
      name="extract-$model-$decoder-$seek"
      seek_args=()
      [[ $seek != default ]] && seek_args=(--seek "$seek")
      step "$name" 75 "$PY" benchmarks/extract_throughput.py --model "$model" --decoder "$decoder" "${seek_args[@]}" \
        "${EXTRACT_SIZE[@]}" --json "$OUT/$name.json"
    done
  done
done

# ------------------------------------------------------------------------------------------- summary
"$PY" - "$OUT" "$MODE" "$BUDGET_S" "$(($(date +%s) - START))" <<'EOF'
import json, sys
from pathlib import Path
out, mode, budget, wall = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
for step in steps:
    numbers = out / f"{step['step']}.json"
    if numbers.is_file():
        step["numbers"] = json.loads(numbers.read_text())
    if step["step"] == "suite" and (out / "suite.xml").is_file():  # pytest's counts, from its JUnit XML
        import xml.etree.ElementTree as ET
        suite = ET.parse(out / "suite.xml").getroot().find("testsuite")
        step["numbers"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
summary = {"mode": mode, "budget_s": budget, "wall_s": wall, "steps": steps}
(out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
bad = [s["step"] for s in steps if s["status"] not in ("ok", "skipped", "dry-run")]
print(f"gpu_check: {wall}s of {budget}s; {len(steps)} steps, not ok: {bad or 'none'}; {out / 'summary.json'}")
EOF
