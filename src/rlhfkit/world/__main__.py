"""`python -m rlhfkit.world ...`: the same as `rlhfkit world ...`."""

import sys

from rlhfkit.world.cli import main

sys.exit(main())
