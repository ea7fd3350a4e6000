"""`python -m triformers ...` runs the `triformers` command (and lets torchrun launch it)."""

import sys

from .cli import main

sys.exit(main())
