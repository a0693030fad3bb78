#!/usr/bin/env bash
# Every run of docs/results/gsm8k/README.md, by name: `bash docs/results/gsm8k/run.sh NAME...`
# (`all` runs them in order). Each needs the runs it starts from (gsm8k-sft first). A run that
# finished (final/ exists) is skipped; an interrupted one continues with `tinyr1 train --resume`.
# Then `bash docs/results/gsm8k/run.sh archive` copies every finished run to
# docs/results/gsm8k/archive/<run>/: config.yaml, summary.json, metrics.jsonl and its held-out
# evaluations (eval/step-<k>.jsonl.gz: one JSON line per problem, response, answer, correct),
# without the model. `tinyr1 report` reads such a folder like the run it was, so runs of several
# sessions can be compared and paired after runs/ is gone.
# Extra `tinyr1 train` flags for every run named: RUN_ARGS='--run.eval_every=0' bash run.sh NAME.
# When only a run's model is needed (to start another from, its evaluations being archived),
# RUN_ARGS='--run.eval_before=false' skips the evaluation before training (for gsm8k-sft, the base
# model's: 10-30 min on 2 cores); `archive` skips a run without one.
#
# The numbers depend on the CPU (float reductions differ): the README names the machine of each.
set -euo pipefail
cd "$(dirname "$0")/../../.."
T=.venv/bin/tinyr1
A=docs/results/gsm8k/archive  # what `archive` writes
GSM8K=${GSM8K:-../shared/data/GSM8K}
data=(--data.source=gsm8k:$GSM8K)
read -r -a extra <<< "${RUN_ARGS:-}"
process=(--reward.process=reference --grpo.advantage=process --run.eval_every=0)

run() {  # run NAME ARGS...: tinyr1 train ARGS --run.name=NAME, or --resume runs/NAME
  local name=$1; shift
  if [ -d "runs/$name/final" ]; then echo "runs/$name: finished, skipped"; return; fi
  if [ -f "runs/$name/config.yaml" ]; then $T train --resume "runs/$name"; return; fi
  $T train "$@" "${data[@]}" "${extra[@]}" --run.name="$name"
}

for what in "$@"; do
  case $what in
    gsm8k-sft) run gsm8k-sft configs/gsm8k_sft.yaml ;;
    gsm8k-sft-seed1) run gsm8k-sft-seed1 configs/gsm8k_sft.yaml --run.seed=1 ;;
    gsm8k-grpo) run gsm8k-grpo configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft ;;
    gsm8k-grpo-seed1) run gsm8k-grpo-seed1 configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft --run.seed=1 ;;
    gsm8k-sft-200) run gsm8k-sft-200 configs/gsm8k_sft.yaml --model.name=runs/gsm8k-sft --run.seed=2 ;;
    gsm8k-sft200-grpo) run gsm8k-sft200-grpo configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft-200 ;;
    gsm8k-grpo-process-seed0|gsm8k-grpo-process-seed1|gsm8k-grpo-process-seed2)
      run "$what" configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft "${process[@]}" --run.seed="${what: -1}" ;;
    gsm8k-grpo-120)  # more compute (question d): 3x the steps, held-out curve every 40
      run gsm8k-grpo-120 configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft --run.steps=120 --run.eval_every=40 ;;
    gsm8k-grpo-full)  # full fine-tuning instead of LoRA r32 (question c); lr set before any result
      run gsm8k-grpo-full configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft --lora.rank=0 --optim.lr=1e-5 --run.eval_every=0 ;;
    gsm8k-grpo-r8|gsm8k-grpo-r128|gsm8k-grpo-r8-seed1|gsm8k-grpo-r128-seed1)  # LoRA rank (question c): alpha = 2 x rank, as r32's 64
      rank=${what#gsm8k-grpo-r}; rank=${rank%-seed1}; seed=0; [ "$what" != "${what%-seed1}" ] && seed=1
      run "$what" configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft --lora.rank="$rank" --lora.alpha=$((2 * rank)) --run.eval_every=0 \
        --run.seed=$seed ;;
    gsm8k-grpo-alone)  # GRPO from the base model, no SFT (question a)
      run gsm8k-grpo-alone configs/gsm8k_grpo.yaml --model.name=smollm2-135m-instruct --run.eval_every=0 ;;
    gsm8k-orm-data)  # outcome reward model data (question b): 8 samples of 512 training problems from the SFT model, graded strictly
      # the archived samples (50 min on 2 slow cores to collect); delete the archived file to collect again here
      if [ ! -f runs/gsm8k-orm-data/responses.jsonl ] && [ -f $A/gsm8k-orm-data/responses.jsonl.gz ]; then
        mkdir -p runs/gsm8k-orm-data
        gunzip -c $A/gsm8k-orm-data/responses.jsonl.gz > runs/gsm8k-orm-data/responses.jsonl
        echo "runs/gsm8k-orm-data: copied from $A/gsm8k-orm-data/responses.jsonl.gz"; continue
      fi  # rm collect resumes an interrupted collection, and reports a finished one without sampling again
      $T rm collect configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft "${data[@]}" --limit 512 --samples 8 \
        --out runs/gsm8k-orm-data/responses.jsonl ;;
    gsm8k-orm)  # the ORM: Bradley-Terry on (right, wrong) pairs of one problem, from the SFT model
      [ -d runs/gsm8k-orm/final ] && { echo "runs/gsm8k-orm: finished, skipped"; continue; }
      [ -f runs/gsm8k-orm/config.yaml ] && { $T rm train --resume runs/gsm8k-orm; continue; }
      $T rm train --data runs/gsm8k-orm-data/responses.jsonl --model runs/gsm8k-sft --objective bradley_terry \
        --optim.bf16=auto --train.save_every=20 --out runs/gsm8k-orm ;;
    gsm8k-orm-eval)  # the ORM on held-out problems: 8 samples of 128 of them from the SFT model, AUC and best-of-n
      [ -f runs/gsm8k-orm/eval/summary.json ] && { echo "runs/gsm8k-orm/eval: done, skipped"; continue; }
      $T rm collect configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft "${data[@]}" --split test --limit 128 --samples 8 \
        --out runs/gsm8k-orm-data/heldout.jsonl  # resumes, or reports the finished file
      $T rm eval --model runs/gsm8k-orm --data runs/gsm8k-orm-data/heldout.jsonl ;;
    gsm8k-grpo-orm|gsm8k-grpo-orm-seed1)  # GRPO with the strict outcome reward plus the ORM's score
      seed=0; [ "$what" != "${what%-seed1}" ] && seed=1
      run "$what" configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft --reward.weights.orm:runs/gsm8k-orm=0.5 --run.eval_every=0 \
        --run.seed=$seed ;;
    gsm8k-prm-data)  # PRM step labels (question b): the ORM data's responses to the problems the SFT model solved at
      # least once (the others' steps would all be labelled wrong), each step prefix continued 4 times by the SFT
      # model (Math-Shepherd); `prm label` resumes after the responses already labelled
      mkdir -p runs/gsm8k-prm-data
      .venv/bin/python -c 'import sys; from tinyr1.io import read_jsonl, write_jsonl
rows = [row for _, row in read_jsonl(sys.argv[1])]
solved = {r["problem_id"] for r in rows if r["label"]}
write_jsonl(sys.argv[2], [r for r in rows if r["problem_id"] in solved])' \
        runs/gsm8k-orm-data/responses.jsonl runs/gsm8k-prm-data/solutions.jsonl
      $T prm label configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft --input runs/gsm8k-prm-data/solutions.jsonl \
        --completions 4 --out runs/gsm8k-prm-data/steps.jsonl ;;
    gsm8k-prm)  # the PRM: P(step leads to the right answer) at each step's end, hard labels, from the SFT model
      [ -d runs/gsm8k-prm/final ] && { echo "runs/gsm8k-prm: finished, skipped"; continue; }
      $T prm train --data runs/gsm8k-prm-data/steps.jsonl --model runs/gsm8k-sft --out runs/gsm8k-prm ;;
    gsm8k-grpo-prm)  # GRPO with per-step process advantages from the PRM (2 P(ok) - 1 a step) beside the strict outcome
      run gsm8k-grpo-prm configs/gsm8k_grpo.yaml --model.name=runs/gsm8k-sft --reward.process=prm:runs/gsm8k-prm \
        --grpo.advantage=process --run.eval_every=0 ;;
    gsm8k-ppo) run gsm8k-ppo configs/gsm8k_ppo.yaml --model.name=runs/gsm8k-sft ;;
    all) "$0" gsm8k-sft gsm8k-sft-seed1 gsm8k-grpo gsm8k-grpo-seed1 gsm8k-sft-200 gsm8k-sft200-grpo \
           gsm8k-grpo-process-seed0 gsm8k-grpo-process-seed1 gsm8k-grpo-process-seed2 gsm8k-ppo ;;
    archive)
      for f in gsm8k-orm-data/responses.jsonl gsm8k-orm-data/heldout.jsonl; do  # the reward models' samples
        [ -f "runs/$f" ] && mkdir -p "$A/$(dirname "$f")" && gzip -9nc "runs/$f" > "$A/$f.gz"
      done
      for f in gsm8k-orm/summary.json gsm8k-orm/metrics.jsonl gsm8k-orm/eval/summary.json; do  # the ORM's scores, not its weights
        [ -f "runs/$f" ] && mkdir -p "$A/$(dirname "$f")" && cp "runs/$f" "$A/$f"
      done
      for dir in runs/gsm8k-*/; do
        run_name=$(basename "$dir")
        [ -d "$dir/final" ] && [ -f "$dir/eval/step-0.jsonl" ] || continue  # finished training runs only (not the ORM's)
        to=$A/$run_name
        mkdir -p "$to/eval"
        cp "$dir"/config.yaml "$dir"/summary.json "$dir"/metrics.jsonl "$to/"
        for f in "$dir"/eval/step-*.jsonl; do gzip -9nc "$f" > "$to/eval/$(basename "$f").gz"; done
      done ;;
    *) echo "run.sh: unknown run '$what' (see the case list in $0)" >&2; exit 2 ;;
  esac
done
