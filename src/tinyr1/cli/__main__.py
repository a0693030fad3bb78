"""`python -m tinyr1.cli ...` (what launchers such as `accelerate launch -m` and `torchrun -m` run)."""

import sys

from tinyr1.cli.main import main

sys.exit(main())
