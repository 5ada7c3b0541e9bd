"""`python -m kn ...` is the `kn` command (kn.cli)."""

import sys

from .cli import main

sys.exit(main())
