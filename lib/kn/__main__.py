"""`python -m kn ...` is the `kn` command (kn.book.cli)."""

import sys

from kn.book.cli import main

sys.exit(main())
