"""``python -m harness.sweep``: what Slurm array tasks and local cell processes run."""

import sys

from harness.sweep.cli import main

sys.exit(main())
