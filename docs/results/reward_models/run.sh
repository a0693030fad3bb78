#!/usr/bin/env bash
# Outcome-only vs process-supervised (rule, PRM) vs ORM-rewarded GRPO on the quickstart task:
# the same config (configs/quickstart.yaml: 30 steps of 4 prompts x 8 samples, LoRA r32, the same
# 200 held-out problems), only the reward / advantage changes. Run each arm alone on the machine.
#
# Needs the two reward models made by the README's "Reward models" commands, passed as
#   ORM=runs/rm-demo/orm PRM=runs/rm-demo/prm bash docs/results/reward_models/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
T=.venv/bin/tinyr1
ORM=${ORM:?set ORM to a folder made by tinyr1 rm train}
PRM=${PRM:?set PRM to a folder made by tinyr1 prm train}
common=(--run.progress=false)
$T train --run.name=exp-outcome "${common[@]}"
$T train --run.name=exp-process-arith --grpo.advantage=process --reward.process=arithmetic "${common[@]}"
$T train --run.name=exp-process-prm --grpo.advantage=process "--reward.process=prm:$PRM" "${common[@]}"
$T train --run.name=exp-orm "--reward.weights.orm:$ORM=0.5" "${common[@]}"
$T report runs/exp-outcome runs/exp-process-arith runs/exp-process-prm runs/exp-orm \
  --out docs/results/reward_models --title "Outcome vs process vs ORM rewards (GRPO, quickstart task)"
