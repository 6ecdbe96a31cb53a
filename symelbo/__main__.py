"""``python -m symelbo``: the command line.

``python -m`` puts the current folder first on ``sys.path``, so a ``sympy.py``
lying there would be imported, and run, in place of SymPy. The current folder
is taken off the path again unless symelbo itself was loaded from it (a source
checkout run in place).
"""

import os
import sys
from pathlib import Path


def _drop_current_folder() -> None:
    here = os.getcwd()
    package_root = str(Path(__file__).resolve().parent.parent)
    if os.path.realpath(here) != os.path.realpath(package_root):
        sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p or ".")
                       != os.path.realpath(here)]


_drop_current_folder()

from symelbo.cli import main  # noqa: E402  (after the path is made safe)

sys.exit(main())
