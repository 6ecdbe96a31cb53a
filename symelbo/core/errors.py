"""Typed errors. Every error that reaches a user is one line naming where it happened.

Bad input (a derivation file, a model file, a command-line value) raises
:class:`InputError`; the command line prints ``str(error)`` and exits with 2.
"""

from __future__ import annotations


class SymelboError(Exception):
    """Base class of every error symelbo raises on purpose."""


class InputError(SymelboError, ValueError):
    """Unreadable or invalid user input, located at ``path:line:column``.

    ``line`` and ``column`` are 1-based; either may be None when the input has
    no meaningful position (a missing file, a TOML table without lines).
    """

    def __init__(self, message: str, path: str | None = None,
                 line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column

    def located(self, path: str | None = None, line: int | None = None,
                column: int | None = None) -> "InputError":
        """Return a copy with the missing parts of the location filled in."""
        return InputError(self.message,
                          self.path if self.path is not None else path,
                          self.line if self.line is not None else line,
                          self.column if self.column is not None else column)

    def __str__(self) -> str:
        where = [self.path or "<input>"]
        if self.line is not None:
            where.append(str(self.line))
            if self.column is not None:
                where.append(str(self.column))
        return f"{':'.join(where)}: {self.message}"


class ToolMissingError(SymelboError):
    """An external program (pdflatex) is not installed; the message says how to get it."""
