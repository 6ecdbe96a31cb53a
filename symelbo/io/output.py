"""Writing a command's output: the format asked for, and a write that fails in one line.

Every command writes through :func:`emit`, so output to a full disk, a closed
pipe or an unwritable place is exit status 2 with one line naming where, and
no control character from a user's text reaches the terminal.
"""

from __future__ import annotations

import os
import sys

from symelbo.core.errors import InputError

__all__ = ["format_of", "emit"]


def format_of(args) -> str:
    """The output format asked for; contradictory options are a usage error."""
    fmt = "json" if args.json else ("latex" if args.pdf else args.format)
    if args.json and (args.pdf or args.format not in ("text", "json")):
        raise InputError("--json cannot be combined with --pdf or another --format", "<command line>")
    if args.fragment and (fmt != "latex" or args.pdf):
        raise InputError("--fragment goes with --format latex (and not with --pdf)", "<command line>")
    return fmt


def emit(text: str, output: str | None) -> None:
    """Write ``text`` to the file ``output`` (UTF-8), or to standard output when it is None.

    Any failure to write (a full disk or ``/dev/full``, a closed pipe as in
    ``symelbo derive jensen | head -1``, a folder or an unwritable place
    given to ``-o``) is an :class:`~symelbo.core.errors.InputError` naming the
    file: exit 2 with one line. Control characters are escaped
    (:func:`~symelbo.io.report.terminal_text`), so a title or a model name cannot
    drive the terminal that shows the output.
    """
    from symelbo.io.report import terminal_text   # here: the report module loads SymPy
    # every format may quote the user's text; no format needs a control character
    text = terminal_text(text)
    if output:
        try:
            with open(output, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
        except OSError as error:
            raise InputError(f"cannot write the output ({error.strerror or error})", output) from None
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as error:
        _abandon_stdout()
        raise InputError(f"cannot write the output ({error.strerror or error})",
                         "<standard output>") from None


def _abandon_stdout() -> None:
    """Point standard output at the null device after a failed write.

    Otherwise the interpreter flushes what is left in the buffer at exit,
    fails again and prints a second, unreadable message.
    """
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's capture): nothing to flush
        pass
