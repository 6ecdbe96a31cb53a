"""Naming a character in an error message, so a reader can see what is wrong with it.

A Cyrillic 'р' typed for a Latin 'p' looks the same on screen; the message
must say which character it is (its code point and Unicode name) and what it
looks like, or the user cannot find the fault.

    >>> describe("\\u0440")
    "U+0440 CYRILLIC SMALL LETTER ER, which looks like 'p'"
    >>> describe("@")
    "'@'"

A mathematical sign typed for its ASCII spelling (``≥``, ``∑``, ``𝔼``, a
Greek letter) is also told how to write it in the ``.calc`` notation:

    >>> advice("\u2265")
    'write >= (the .calc notation is ASCII)'
    >>> advice("\u03b8")
    'write theta (the .calc notation is ASCII; documents print it as a Greek letter)'
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["describe", "advice", "LOOKALIKES", "ASCII_SPELLINGS"]

#: Characters that look like ASCII ones (or stand for an ASCII operator) but are not.
LOOKALIKES: dict[str, str] = {
    # Cyrillic letters shaped like Latin ones
    "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0443": "y",
    "\u0445": "x", "\u0455": "s", "\u0456": "i", "\u0458": "j", "\u04bb": "h", "\u0501": "d",
    "\u051b": "q", "\u051d": "w", "\u0410": "A", "\u0412": "B", "\u0415": "E", "\u041a": "K",
    "\u041c": "M", "\u041d": "H", "\u041e": "O", "\u0420": "P", "\u0421": "C", "\u0422": "T",
    "\u0425": "X", "\u0405": "S", "\u0406": "I", "\u0408": "J", "\u0417": "3",
    # Greek letters shaped like Latin ones
    "\u0391": "A", "\u0392": "B", "\u0395": "E", "\u0396": "Z", "\u0397": "H", "\u0399": "I",
    "\u039a": "K", "\u039c": "M", "\u039d": "N", "\u039f": "O", "\u03a1": "P", "\u03a4": "T",
    "\u03a5": "Y", "\u03a7": "X", "\u03bf": "o", "\u03bd": "v", "\u03c1": "p", "\u03ba": "k",
    "\u03b9": "i", "\u03c5": "u",
    # operators and punctuation from word processors
    "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
    "\u00d7": "*", "\u22c5": "*", "\u00b7": "*", "\u2217": "*", "\u2215": "/", "\u2044": "/",
    "\u2264": "<=", "\u2265": ">=", "\u2018": "'", "\u2019": "'",
    "\u201c": '"', "\u201d": '"', "\u2223": "|", "\u2225": "||", "\u00a0": "a space",
    "\u2009": "a space", "\u202f": "a space", "\u200b": "nothing (a zero-width space)",
    "\u200c": "nothing (a zero-width non-joiner)", "\u200d": "nothing (a zero-width joiner)",
    "\u2060": "nothing (a word joiner)", "\ufeff": "nothing (a zero-width no-break space)",
}


#: Mathematical signs and how the ``.calc`` notation spells what they mean.
ASCII_SPELLINGS: dict[str, str] = {
    "\u2265": ">=", "\u2a7e": ">=", "\u2264": "<=", "\u2a7d": "<=", "\u00f7": "/",
    "\u2016": "||", "\u2211": "sum_Z[...]", "\u222b": "int_Z[...]",
    "\U0001d53c": "E_q[...]", "\u2207": "grad_phi[...]", "\u2202": "grad_phi[...]",
    "\u2112": "ELBO(q(Z), p(X, Z))", "\u221a": "(...)^(1/2)", "\u221e": "a number",
}

#: Signs with no spelling at all in the notation, and what to write instead.
_NO_SPELLING = {
    "\u2260": "a step's relation is one of =, <=, >=, <, >; there is no 'not equal'",
    "\u2248": "a step's relation is one of =, <=, >=, <, >; there is no 'approximately'",
    "\u221d": "proportionality is not part of the notation; write the step with =",
}

_GREEK = re.compile(r"(?:MATHEMATICAL [A-Z -]+? |GREEK )(SMALL |CAPITAL )?(?:LETTER )?(FINAL )?"
                    r"(ALPHA|BETA|GAMMA|DELTA|EPSILON|ZETA|ETA|THETA|IOTA|KAPPA|LAMDA|MU|NU|XI|"
                    r"OMICRON|PI|RHO|SIGMA|TAU|UPSILON|PHI|CHI|PSI|OMEGA)(?: SYMBOL)?")


def _greek_letter(char: str) -> str | None:
    """The ASCII name of a Greek letter (any style: plain, italic, bold), capitalised for a capital."""
    match = _GREEK.fullmatch(unicodedata.name(char, ""))
    if not match:
        return None
    letter = "lambda" if match.group(3) == "LAMDA" else match.group(3).lower()
    return letter.capitalize() if match.group(1) == "CAPITAL " else letter


def advice(char: str) -> str | None:
    """How to write ``char`` in the ``.calc`` notation, when there is a way; else None."""
    if char in _NO_SPELLING:
        return _NO_SPELLING[char]
    if char in ASCII_SPELLINGS:
        return f"write {ASCII_SPELLINGS[char]} (the .calc notation is ASCII)"
    greek = _greek_letter(char)
    if greek:
        return f"write {greek} (the .calc notation is ASCII; documents print it as a Greek letter)"
    return None  # a look-alike is named by describe(); saying "write p" again adds nothing


def _looks_like(char: str) -> str | None:
    if char in _NO_SPELLING:  # "≠" decomposes to "=" and a stroke: it does not look like "="
        return None
    if char in LOOKALIKES:
        return LOOKALIKES[char]
    # fullwidth forms, ligatures, accented letters: their compatibility decomposition
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return base if base and base.isascii() and base.isprintable() else None


def describe(char: str) -> str:
    """A printable ASCII character quoted; any other by code point, name and look-alike."""
    if not char:
        return "the end of the line"
    if char.isascii() and char.isprintable():
        return repr(char)
    name = unicodedata.name(char, None)
    if name is None:
        name = {"\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\f": "FORM FEED",
                "\v": "LINE TABULATION", "\x1b": "ESCAPE", "\x7f": "DELETE"}.get(char, "a control character")
    text = f"U+{ord(char):04X} {name}"
    similar = _looks_like(char)
    if similar:
        shown = similar if similar.startswith(("a ", "nothing")) else repr(similar)
        text += f", which looks like {shown}"
    return text
