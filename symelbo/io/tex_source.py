"""Finding display math in a LaTeX, Markdown or notebook source, as text: nothing is run.

Map of this module:

- :class:`Source`     the user's text and how an offset in it maps to ``line:column``
  (for a notebook, to the line of the ``.ipynb`` file that holds the cell's line).
- :class:`Math`       one display-math block: its text after macro expansion, with
  the source offset of every character, and the ``%`` comments of its lines.
- :class:`Skip`       something passed over, at its place, with the reason.
- :func:`scan`        a source's display-math blocks and what was skipped.
- :func:`read_source` reads a user's file (``tex``, ``markdown`` or ``ipynb``).

Read: ``align``, ``align*``, ``aligned``, ``split``, ``eqnarray``, ``equation``,
``gather``, ``multline`` (starred or not), ``\\[...\\]`` and ``$$...$$``;
inline ``$...$`` is prose and is not read. In Markdown, fenced code blocks
and code spans are not math. ``\\newcommand``, ``\\renewcommand``,
``\\providecommand``, ``\\def`` (with ``#1``... arguments) and
``\\DeclareMathOperator`` defined in the file are expanded inside math, at
most :data:`MAX_EXPANSIONS` times per block, never growing a block past
:data:`MAX_BLOCK_CHARS`; ``\\input``, ``\\include``, ``\\write18`` and
``\\catcode`` are never followed, only noted as skipped.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field

from symelbo.core.errors import InputError
from symelbo.io.userfiles import read_user_text

__all__ = ["Source", "Math", "Skip", "scan", "read_source", "KINDS", "kind_of",
           "MAX_EXPANSIONS", "MAX_BLOCK_CHARS", "matching_brace"]

#: The source kinds, by the name ``--from`` takes.
KINDS = ("tex", "markdown", "ipynb")
_SUFFIXES = {".tex": "tex", ".ltx": "tex", ".latex": "tex", ".md": "markdown",
             ".markdown": "markdown", ".ipynb": "ipynb"}
#: Macro expansions allowed in one math block; a definition that calls itself stops here.
MAX_EXPANSIONS = 2000
#: The longest a math block may be, before or after expansion, in characters.
MAX_BLOCK_CHARS = 50_000
_ENVS = ("align", "aligned", "split", "eqnarray", "equation", "gather", "gathered", "multline",
         "alignat", "flalign")
_OPEN = re.compile(r"\\begin\s*\{(" + "|".join(_ENVS) + r")(\*?)\}|\\\[|\$\$")
_INNER = re.compile(r"\\(begin|end)\s*\{(" + "|".join(_ENVS) + r")\*?\}(\s*\[[a-z]\])?(\{\d+\})?")
_HOSTILE = re.compile(r"\\(input|include|write\s*18|write|immediate|catcode|openout|openin|read"
                      r"|csname|expandafter|makeatletter|usepackage|documentclass)(?![A-Za-z])")
_NOTES = {"input": "\\input is not followed: symelbo reads only this file, as text",
          "include": "\\include is not followed: symelbo reads only this file, as text",
          "write": "\\write is never run: symelbo reads the file as text",
          "immediate": "\\immediate\\write is never run: symelbo reads the file as text",
          "catcode": "catcode changes are not followed: the file is read with TeX's usual codes"}


@dataclass(frozen=True)
class Skip:
    """Something in the source passed over: where, and why."""

    line: int
    column: int
    reason: str


@dataclass
class Source:
    """A user's text; :meth:`place` maps an offset in :attr:`text` to ``(line, column)``."""

    path: str
    text: str
    kind: str
    #: for a notebook: the file line and column where each line of ``text`` starts
    line_places: list | None = None

    def __post_init__(self):
        self._starts = [0] + [i + 1 for i, ch in enumerate(self.text) if ch == "\n"]

    def place(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self._starts, offset) - 1
        column = offset - self._starts[index] + 1
        if self.line_places is None:
            return index + 1, column
        line, first = self.line_places[min(index, len(self.line_places) - 1)]
        return line, first + column - 1

    def text_line(self, offset: int) -> int:
        """The line of :attr:`text` (not of the file, for a notebook) holding ``offset``."""
        return bisect.bisect_right(self._starts, offset)

    def error(self, message: str, offset: int) -> InputError:
        line, column = self.place(offset)
        return InputError(message, self.path, line, column)


@dataclass
class Math:
    """One display-math block: expanded text, each character's source offset, line comments."""

    env: str
    text: str
    offsets: list
    start: int
    #: line of the source text -> the text of its ``%`` comment
    comments: dict = field(default_factory=dict)
    #: a reason the block cannot be read at all (hostile command, runaway macro), or ""
    problem: str = ""
    problem_offset: int = 0


def kind_of(path: str, override: str | None = None) -> str:
    """``tex``, ``markdown``, ``ipynb`` or ``calc``: ``--from`` if given, else the suffix."""
    suffix = path[path.rfind("."):].lower() if "." in path else ""
    if override == "markdown" and suffix == ".ipynb":
        return "ipynb"
    if override:
        return override
    return _SUFFIXES.get(suffix, "calc")


def read_source(path: str, kind: str) -> Source:
    """Read a user's file as a :class:`Source`; a notebook keeps only its markdown cells."""
    text = read_user_text(path)
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError("the file holds a NUL byte; it is not a text file", path, line)
    if kind == "ipynb":
        return _notebook(path, text)
    return Source(path, text, kind)


def _notebook(path: str, raw: str) -> Source:
    """The markdown cells of a notebook, each line placed at its line of the ``.ipynb`` file."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        line = getattr(error, "lineno", 1)
        raise InputError(f"not a notebook: the JSON cannot be read ({getattr(error, 'msg', error)})",
                         path, line, getattr(error, "colno", 1)) from None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        raise InputError("not a notebook: no list of cells", path, 1, 1)
    raw_lines = raw.split("\n")
    anchors = [i for i, l in enumerate(raw_lines, start=1) if re.match(r'\s*"source"\s*:', l)]
    lines_out, places = [], []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
            continue
        body = cell.get("source", "")
        text = "".join(str(l) for l in body) if isinstance(body, list) else str(body)
        anchor = anchors[index] if index < len(anchors) else 1
        # nbformat writes a list of lines, one per line of the file, after '"source": ['
        listed = isinstance(body, list) and raw_lines[anchor - 1].rstrip().endswith("[")
        for number, line in enumerate(text.split("\n")):
            at = anchor + 1 + number if listed else anchor
            prefix = raw_lines[at - 1] if at - 1 < len(raw_lines) else ""
            lines_out.append(line)
            places.append((at, len(prefix) - len(prefix.lstrip()) + 2 if listed else 1))
        lines_out.append("")  # each cell ends its own blocks: cells never join
        places.append((anchor, 1))
    text = "\n".join(lines_out)
    return Source(path, text, "ipynb", places or [(1, 1)])


# ---------------------------------------------------------------------------
# groups and comments
# ---------------------------------------------------------------------------

def matching_brace(text: str, start: int, limit: int | None = None) -> int:
    """The index just after the group opened by ``text[start] == '{'``, or -1 if unclosed.

    Escaped braces ``\\{`` do not count; scanning stops at ``limit``.
    """
    depth, i, end = 0, start, len(text) if limit is None else min(limit, len(text))
    while i < end:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _strip_comments(text: str) -> tuple[str, dict]:
    """Blank every ``%`` comment (not ``\\%``) with spaces, keeping offsets; comments by line."""
    out, comments = [], {}
    for number, line in enumerate(text.split("\n"), start=1):
        i = 0
        while True:
            i = line.find("%", i)
            if i < 0:
                break
            backslashes = len(line[:i]) - len(line[:i].rstrip("\\"))
            if backslashes % 2 == 0:
                comments[number] = line[i + 1:].strip()
                line = line[:i] + " " * (len(line) - i)
                break
            i += 1
        out.append(line)
    return "\n".join(out), comments


def _blank_markdown_code(text: str) -> str:
    """Fenced code blocks and code spans blanked with spaces: they hold code, not math."""
    out, fence = [], None
    for line in text.split("\n"):
        stripped = line.lstrip()
        if fence:
            out.append(" " * len(line))
            if stripped.startswith(fence):
                fence = None
            continue
        match = re.match(r"(`{3,}|~{3,})", stripped)
        if match:
            fence = match.group(1)
            out.append(" " * len(line))
            continue
        out.append(re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), line))
    return "\n".join(out)


# ---------------------------------------------------------------------------
# macros
# ---------------------------------------------------------------------------

_DEFINE = re.compile(r"\\(newcommand|renewcommand|providecommand|DeclareMathOperator|def)\*?(?![A-Za-z])")


@dataclass(frozen=True)
class _Macro:
    arguments: int
    body: str
    default: str | None = None


def _macros(text: str, source: Source, skipped: list) -> dict:
    """The macros the file defines, by name; a definition that cannot be read is skipped."""
    macros: dict[str, _Macro] = {}
    for match in _DEFINE.finditer(text):
        i = match.end()
        kind = match.group(1)
        name_match = re.compile(r"\s*\{?\s*\\([A-Za-z]+)\s*\}?").match(text, i)
        if not name_match:
            continue
        name, i = name_match.group(1), name_match.end()
        arguments, default = 0, None
        if kind == "def":
            params = re.compile(r"((?:#\d)*)\s*").match(text, i)
            arguments, i = len(params.group(1)) // 2, params.end()
        else:
            count = re.compile(r"\s*\[(\d)\]").match(text, i)
            if count:
                arguments, i = int(count.group(1)), count.end()
                optional = re.compile(r"\s*\[([^\]]*)\]").match(text, i)
                if optional:
                    default, i = optional.group(1), optional.end()
        while i < len(text) and text[i].isspace():
            i += 1
        end = matching_brace(text, i, i + MAX_BLOCK_CHARS) if i < len(text) and text[i] == "{" else -1
        if end < 0:
            line, column = source.place(match.start())
            skipped.append(Skip(line, column, f"the definition of \\{name} cannot be read; not expanded"))
            continue
        body = text[i + 1:end - 1]
        if kind == "DeclareMathOperator":
            body = "\\operatorname{" + body + "}"
        macros[name] = _Macro(arguments, body, default)
    return macros


def _argument(chars: list, i: int):
    """One macro argument at ``chars[i]``: a brace group's inside, or one token; (text, next)."""
    while i < len(chars) and chars[i][0].isspace():
        i += 1
    if i >= len(chars):
        return None, i
    if chars[i][0] == "{":
        depth, j = 0, i
        while j < len(chars):
            ch = chars[j][0]
            if ch == "\\":
                j += 2
                continue
            depth += (ch == "{") - (ch == "}")
            if depth == 0:
                return chars[i + 1:j], j + 1
            j += 1
        return None, i
    if chars[i][0] == "\\":
        j = i + 1
        while j < len(chars) and chars[j][0].isalpha():
            j += 1
        return chars[i:max(j, i + 2)], max(j, i + 2)
    return chars[i:i + 1], i + 1


def _expand(text: str, offsets: list, macros: dict):
    """``text`` with the file's macros expanded; each new character takes its call's offset.

    Returns ``(text, offsets, problem)``; ``problem`` names a runaway expansion.
    """
    if not macros or "\\" not in text:
        return text, offsets, ""
    chars = list(zip(text, offsets))
    count, i = 0, 0
    while i < len(chars):
        if chars[i][0] != "\\":
            i += 1
            continue
        j = i + 1
        while j < len(chars) and chars[j][0].isalpha():
            j += 1
        name = "".join(c for c, _ in chars[i + 1:j])
        macro = macros.get(name)
        if macro is None:
            i = max(j, i + 2)
            continue
        count += 1
        if count > MAX_EXPANSIONS:
            hint = f"; \\{name} is defined in terms of itself" if f"\\{name}" in macro.body else ""
            return "", [], f"macro expansion does not end (more than {MAX_EXPANSIONS} expansions{hint})"
        place = chars[i][1]
        args, k = [], j
        for index in range(macro.arguments):
            if index == 0 and macro.default is not None:
                if k < len(chars) and chars[k][0] == "[":
                    close = next((m for m in range(k, len(chars)) if chars[m][0] == "]"), -1)
                    args.append(chars[k + 1:close] if close > 0 else [])
                    k = close + 1 if close > 0 else k
                else:
                    args.append([(c, place) for c in macro.default])
                continue
            arg, k = _argument(chars, k)
            if arg is None:
                return "", [], f"\\{name} takes {macro.arguments} argument(s); fewer are given"
            args.append(arg)
        body: list = []
        b = 0
        while b < len(macro.body):
            ch = macro.body[b]
            if ch == "#" and b + 1 < len(macro.body) and macro.body[b + 1].isdigit():
                n = int(macro.body[b + 1])
                if 1 <= n <= len(args):
                    body.extend(args[n - 1])
                b += 2
                continue
            body.append((ch, place))
            b += 1
        # a command name at the end of the body must not run into a letter after the call
        if k < len(chars) and chars[k][0].isalpha() and body and body[-1][0].isalpha():
            body.append((" ", place))
        chars[i:k] = body
        if len(chars) > MAX_BLOCK_CHARS:
            return "", [], (f"macro expansion makes the block longer than {MAX_BLOCK_CHARS:,} "
                            "characters")
    return "".join(c for c, _ in chars), [o for _, o in chars], ""


# ---------------------------------------------------------------------------
# scanning
# ---------------------------------------------------------------------------

def scan(source: Source) -> tuple[list, list]:
    """The display-math blocks of ``source`` and the list of what was skipped, in order."""
    skipped: list[Skip] = []
    text, comments = _strip_comments(source.text)
    if source.kind in ("markdown", "ipynb"):
        text = _blank_markdown_code(text)
    for match in _HOSTILE.finditer(text):
        note = _NOTES.get(re.sub(r"\s*18$", "", match.group(1)))
        if match.group(1).startswith("write") and text[:match.start()].endswith("\\immediate"):
            continue  # \immediate\write is noted once, at \immediate
        if note:
            line, column = source.place(match.start())
            skipped.append(Skip(line, column, note))
    macros = _macros(text, source, skipped)
    blocks: list[Math] = []
    i = 0
    while True:
        match = _OPEN.search(text, i)
        if not match:
            break
        if match.start() > 0 and text[match.start() - 1] == "\\" and match.group(0) == "$$":
            i = match.end()
            continue
        if match.group(1):
            env = match.group(1) + match.group(2)
            closer = re.compile(r"\\end\s*\{" + re.escape(match.group(1)) + re.escape(match.group(2)) + r"\}")
            found = closer.search(text, match.end())
            end, after = (found.start(), found.end()) if found else (-1, -1)
        else:
            env = "\\[" if match.group(0) == "\\[" else "$$"
            closing = "\\]" if env == "\\[" else "$$"
            end = text.find(closing, match.end())
            after = end + 2 if end >= 0 else -1
        if end < 0:
            line, column = source.place(match.start())
            skipped.append(Skip(line, column, f"{match.group(0)} is never closed; not read"))
            i = match.end()
            continue
        start = match.end()
        body = text[start:end]
        body = _INNER.sub(lambda m: " " * len(m.group(0)), body)
        if env.startswith("alignat"):
            body = re.sub(r"^\s*\{\d+\}", lambda m: " " * len(m.group(0)), body)
        blocks.append(_block(env, body, start, comments, macros, source))
        i = after
    return blocks, skipped


def _block(env, body, start, comments, macros, source) -> Math:
    offsets = list(range(start, start + len(body)))
    first, last = source.text_line(start), source.text_line(start + len(body))
    block_comments = {n: comments[n] for n in range(first, last + 1) if n in comments}
    if len(body) > MAX_BLOCK_CHARS:
        return Math(env, "", [], start, block_comments,
                    f"the block is longer than {MAX_BLOCK_CHARS:,} characters; not read", start)
    hostile = _HOSTILE.search(body)
    if hostile:
        return Math(env, "", [], start, block_comments,
                    f"\\{hostile.group(1)} inside math is not read (symelbo reads TeX as text and runs "
                    "nothing)", start + hostile.start())
    text, offsets, problem = _expand(body, offsets, macros)
    hostile = None if problem else _HOSTILE.search(text)
    if hostile:  # a macro of the file that expands to \input or \write
        return Math(env, "", [], start, block_comments,
                    f"\\{hostile.group(1)} inside math (from a macro) is not read (symelbo reads TeX "
                    "as text and runs nothing)", offsets[hostile.start()])
    return Math(env, text, offsets, start, block_comments, problem, start if problem else 0)
