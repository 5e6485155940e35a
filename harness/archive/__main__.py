"""``python -m harness.archive``."""

import sys

from harness.archive.cli import main

sys.exit(main())
