"""The tinyr1 command line in a process of its own, plus a reward that a random tiny model earns
half the time (`length_parity`: 1 for a response of odd length), so GRPO and PPO really update.

    python tests/training/cli_with_test_reward.py train job.yaml --reward.weights.length_parity=1

The crash tests run it under `TINYR1_KILL_AT` / `TINYR1_PAUSE_AT` (see `tinyr1.faults`).
"""

import sys

from tinyr1.cli import main
from tinyr1.rewards import rules

rules.REWARDS["length_parity"] = lambda problems, responses, **_: [float(len(r) % 2) for r in responses]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
