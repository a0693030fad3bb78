#!/usr/bin/env bash
# The MATH levels 1-2 runs, by name: `bash docs/results/math/run.sh NAME...` (as
# docs/results/gsm8k/run.sh: a finished run, final/ present, is skipped; an interrupted one is
# continued with `tinyr1 train --resume`). `archive` copies every finished run, without its model,
# to docs/results/math/archive/<run>/ (config, summary, metrics, held-out responses gzipped), which
# `tinyr1 report` reads like the run folder it was.
# Extra `tinyr1 train` flags for every run named: RUN_ARGS='--run.eval_every=0' bash run.sh NAME.
set -euo pipefail
cd "$(dirname "$0")/../../.."
T=.venv/bin/tinyr1
MATH=${MATH:-../shared/data/MATH}
data=(--data.source=math:$MATH)
read -r -a extra <<< "${RUN_ARGS:-}"

run() {  # run NAME ARGS...: tinyr1 train ARGS --run.name=NAME, or --resume runs/NAME
  local name=$1; shift
  if [ -d "runs/$name/final" ]; then echo "runs/$name: finished, skipped"; return; fi
  if [ -f "runs/$name/config.yaml" ]; then $T train --resume "runs/$name"; return; fi
  $T train "$@" "${data[@]}" "${extra[@]}" --run.name="$name"
}

for what in "$@"; do
  case $what in
    math-sft) run math-sft configs/math_sft.yaml ;;
    math-grpo) run math-grpo configs/math_grpo.yaml --model.name=runs/math-sft ;;
    math-grpo-seed1) run math-grpo-seed1 configs/math_grpo.yaml --model.name=runs/math-sft --run.seed=1 --run.eval_every=0 ;;
    archive)
      for dir in runs/math-*/; do
        run_name=$(basename "$dir")
        [ -d "$dir/final" ] && [ -d "$dir/eval" ] || continue
        to=docs/results/math/archive/$run_name
        mkdir -p "$to/eval"
        cp "$dir"/config.yaml "$dir"/summary.json "$dir"/metrics.jsonl "$to/"
        for f in "$dir"/eval/step-*.jsonl; do gzip -9nc "$f" > "$to/eval/$(basename "$f").gz"; done
      done ;;
    *) echo "run.sh: unknown run '$what' (see the case list in $0)" >&2; exit 2 ;;
  esac
done
