"""``python -m symelbo``: the command line."""

import sys

from symelbo.cli.commands import main

sys.exit(main())
