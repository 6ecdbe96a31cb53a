"""Reading a user's file: a regular file only, never more than a cap, never blocking.

Every file named on the command line or by a model (``.calc``, ``.toml``, a
data file) is read through :func:`read_user_bytes`, so that a device
(``/dev/zero``), a FIFO, a socket or a directory is refused with one line
before anything is read, and no input can make the program read past its cap.

    >>> read_user_bytes("/dev/zero")          # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    InputError: /dev/zero: not a regular file (a character device); give a file
"""

from __future__ import annotations

import os
import stat

from symelbo.core.errors import InputError

__all__ = ["MAX_SOURCE_BYTES", "MAX_DATA_BYTES", "MAX_LINE_CHARS", "read_user_bytes", "read_user_text",
           "decode_user_text", "source_lines", "excerpt"]

#: A derivation or model file larger than this is refused (50 MB).
MAX_SOURCE_BYTES = 50 * 1024 * 1024
#: The default cap of a data file (``--max-data-mb`` changes it); 32 MB, about a million
#: observations as text: a data value costs far more in memory than on disk.
MAX_DATA_BYTES = 32 * 1024 * 1024
#: The longest line a derivation file may hold, in characters: far past any formula a person
#: writes (an 8,000-term flat sum is 60,000), short of what would take minutes to check.
MAX_LINE_CHARS = 100_000

_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_user_bytes(path: str | os.PathLike, limit: int = MAX_SOURCE_BYTES,
                    what: str = "file", resolved: bool = False) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, or InputError.

    The file is opened with ``O_NONBLOCK`` (a FIFO planted between the check
    and the open cannot block) and checked with ``fstat`` on the open
    descriptor, so what is checked is what is read. ``resolved``: ``path`` is a
    real path (symbolic links resolved) that was checked to lie where it may;
    the open then follows no link, and the descriptor must lead to exactly that
    path (a folder swapped for a link after the check is refused).
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    if resolved:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(name, flags)
    except OSError as error:
        raise InputError(f"cannot read the {what} ({error.strerror or error})", name) from None
    try:
        if resolved and not _leads_to(descriptor, name):
            raise InputError(f"the {what} moved while it was opened (a link in its path "
                             "changed); not read", name)
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"not a regular file ({_kind(info.st_mode)}); give a {what}", name)
        if info.st_size > limit:
            raise InputError(f"the {what} is {info.st_size:,} bytes, over the limit of "
                             f"{limit:,} bytes", name)
        chunks, total = [], 0
        while True:  # read to the cap + 1, in case the file grows while it is read
            chunk = os.read(descriptor, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise InputError(f"the {what} grew past the limit of {limit:,} bytes "
                                 "while it was read", name)
        return b"".join(chunks)
    except OSError as error:
        raise InputError(f"cannot read the {what} ({error.strerror or error})", name) from None
    except MemoryError:
        raise InputError(f"the {what} is too large to hold in memory", name) from None
    finally:
        os.close(descriptor)


def _leads_to(descriptor: int, name: str) -> bool:
    """True when the open ``descriptor`` is the file at the real path ``name`` (Linux's
    /proc tells; elsewhere the inode is compared with what ``name`` names now)."""
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}") == name
    except OSError:
        try:
            here, there = os.fstat(descriptor), os.stat(name, follow_symlinks=False)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def read_user_text(path: str | os.PathLike, limit: int = MAX_SOURCE_BYTES,
                   what: str = "file", resolved: bool = False) -> str:
    """The UTF-8 text of a regular file (a leading byte-order mark dropped), or InputError.

    A byte that is not UTF-8 is reported at its line and column.
    """
    return decode_user_text(read_user_bytes(path, limit, what, resolved), os.fspath(path), what)


def decode_user_text(data: bytes, name: str, what: str = "file") -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped); a byte that is not UTF-8
    is an InputError at its line and column of ``name``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise InputError(f"the {what} is not UTF-8 text (byte 0x{data[error.start]:02x})",
                         name, line, column) from None
    return text[1:] if text.startswith("\ufeff") else text


def source_lines(text: str) -> list[str]:
    """The lines of a file as editors and error messages count them: split at LF only.

    ``str.splitlines`` also splits at form feeds, U+2028 and other separators,
    which would shift every later line number and could end a comment early,
    turning its rest into a checked line. A CR before the LF (Windows) is dropped.
    """
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def excerpt(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters (with an ellipsis), control characters escaped.

    For echoing a piece of user input inside a one-line message.
    """
    cut = text if len(text) <= width else text[: width - 1] + "\u2026"
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in cut)
