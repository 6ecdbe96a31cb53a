"""Messages a newcomer meets: syntax errors that name the right spelling, warnings, the CLI's words.

Every message is pinned whole: a message that changes is a change a user sees.
"""

from __future__ import annotations

import warnings

import pytest

from symelbo.core.errors import InputError
from symelbo.io.characters import advice
from symelbo.io.mistakes import LATEX_INPUT, bracket_fault, spelling_fault
from symelbo.io.parser import HeaderWarning, did_you_mean, parse_text

ASCII = "(the .calc notation is ASCII)"
GREEK = "(the .calc notation is ASCII; documents print it as a Greek letter)"

SYNTAX = [
    # near-miss rule names
    ("log p(X)\n = log(sum_Z[p(X, Z)]) by marginalisation\n",
     "2:27: unknown rule 'marginalisation'; did you mean marginalization? "
     "(`symelbo list` shows the rules)"),
    ("KL(q(Z) || p(Z | X))\n = E_q[log(q(Z) / p(Z | X))] by definiton_kl\n",
     "2:33: unknown rule 'definiton_kl'; did you mean definition_kl? (`symelbo list` shows the rules)"),
    ("log p(X)\n = log p(X) by frobnicate\n",
     "2:16: unknown rule 'frobnicate' (`symelbo list` shows the rules)"),
    # brackets, reported at the bracket, not where parsing stopped
    ("log(p(X, Z) = log p(X, Z) by definition_kl\n", "1:4: this '(' is never closed"),
    ("log(sum_Z[p(X, Z)) = 0\n", "1:10: this '[' is closed by ')' at column 18; write ']'"),
    ("log p(X)) = 0\n", "1:9: this ')' closes nothing"),
    # mathematical signs and Greek letters
    ("ELBO(q(Z), p(X, Z)) \u2265 0\n", "1:21: unexpected character U+2265 GREATER-THAN OR EQUAL TO, "
     f"which looks like '>='; write >= {ASCII}"),
    ("ELBO(q(Z), p(X, Z)) \u2264 0\n", "1:21: unexpected character U+2264 LESS-THAN OR EQUAL TO, "
     f"which looks like '<='; write <= {ASCII}"),
    ("ELBO(q(Z), p(X, Z)) \u2260 0\n", "1:21: unexpected character U+2260 NOT EQUAL TO; a step's "
     "relation is one of =, <=, >=, <, >; there is no 'not equal'"),
    ("\u2211_Z[p(X, Z)] = p(X)\n", f"1:1: unexpected character U+2211 N-ARY SUMMATION; write sum_Z[...] {ASCII}"),
    ("\U0001d53c_q[log q(Z)] = 0\n", "1:1: unexpected character U+1D53C MATHEMATICAL DOUBLE-STRUCK "
     f"CAPITAL E, which looks like 'E'; write E_q[...] {ASCII}"),
    ("log p(X, \u03b8) = 0\n", f"1:10: unexpected character U+03B8 GREEK SMALL LETTER THETA; write theta {GREEK}"),
    ("log p(X | \u039b) = 0\n", f"1:11: unexpected character U+039B GREEK CAPITAL LETTER LAMDA; write Lambda {GREEK}"),
    # TeX
    ("\\log p(X) = 0\n", f"1:1: '\\log' is LaTeX; this file is in the .calc notation (write log p(X) or "
     f"log(...); {LATEX_INPUT})"),
    ("\\frac{1}{2} = 0\n", f"1:1: '\\frac' is LaTeX; this file is in the .calc notation (write (a) / (b); "
     f"{LATEX_INPUT})"),
    ("\\mathbb{E}_q[log q(Z)] = 0\n", "1:1: '\\mathbb' is LaTeX; this file is in the .calc notation "
     f"(write E_q[...]; {LATEX_INPUT})"),
    ("log p(X | \\theta) = 0\n", "1:11: '\\theta' is LaTeX; this file is in the .calc notation "
     f"(write theta; {LATEX_INPUT})"),
    ("log p(X) = \\foo\n", f"1:12: '\\foo' is LaTeX; this file is in the .calc notation ({LATEX_INPUT})"),
    # spellings from elsewhere
    ("KL(q || p) = 0\n", "1:1: KL compares densities applied to their variables: write KL(q(Z) || p(Z | X))"),
    ("KL(q(Z), p(Z)) = 0\n", "1:1: KL separates its two densities with ||, as in KL(q(Z) || p(Z | X))"),
    ("ELBO(q, p) = 0\n", "1:1: ELBO takes densities applied to their variables: write ELBO(q(Z), p(X, Z))"),
    ("ln p(X) = 0\n", "1:1: the natural logarithm is written log, as in log p(X) or log(x)"),
    ("ln(X) = 0\n", "1:1: the natural logarithm is written log, as in log p(X) or log(x)"),
    ("sqrt(2) = 0\n", "1:1: sqrt is not part of the notation; write (...)^(1/2)"),
    ("sqrt(x) = 0\n", "1:1: sqrt is not part of the notation; write (...)^(1/2)"),
    ("log p(X) == 0\n", "1:10: '==' is not a relation; a step that claims equality is written ="),
    ("log p(X) => 0\n", "1:10: '=>' is not a relation; 'greater than or equal' is written >="),
    ("log p(X) != 0\n", "1:10: '!=' is not a relation; a step's relation is one of =, <=, >=, <, >"),
    ("E_q(Z)[log p(X, Z)] = 0\n", "1:1: a density with its variables goes in braces: write "
     "E_{q(Z)}[...], or E_q[...] for all of q's variables"),
    ("KL[q(Z) || p(Z)] = 0\n", "1:1: KL takes parentheses, as in KL(q(Z) || p(Z | X))"),
    ("log[p(X)] = 0\n", "1:1: log takes parentheses, as in log(...)"),
    ("sum_Z(p(X, Z)) = p(X)\n", "1:1: sum_Z takes brackets, as in sum_Z[...]"),
    ("H(q(Z)) = 0\n", "1:1: entropy takes brackets, as in H[q(Z)]"),
]


@pytest.mark.parametrize("text, message", SYNTAX)
def test_a_syntax_error_names_the_right_spelling(text, message):
    with pytest.raises(InputError) as info:
        parse_text(text, "f.calc")
    assert str(info.value) == "f.calc:" + message


def test_a_spelling_right_of_where_parsing_stopped_is_not_blamed():
    # the fault is the '@'; the '==' further right is not what stopped the parser
    assert spelling_fault("log p(X) @ 1 == 2", before=9) is None
    assert spelling_fault("log p(X) = 1 == 2", before=13) == (
        14, "'==' is not a relation; a step that claims equality is written =")


@pytest.mark.parametrize("line", ["log(sum_Z[p(X, Z)])", "E_{q(Z)}[log p(X, Z)]", ""])
def test_balanced_brackets_are_no_fault(line):
    assert bracket_fault(line) is None


@pytest.mark.parametrize("char, text", [
    ("\u2265", f"write >= {ASCII}"), ("\u2a7d", f"write <= {ASCII}"), ("\u222b", f"write int_Z[...] {ASCII}"),
    ("\u2207", f"write grad_phi[...] {ASCII}"), ("\u03d5", f"write phi {GREEK}"),
    ("\u03bb", f"write lambda {GREEK}"), ("\U0001d703", f"write theta {GREEK}"),
    ("\U0001d6ba", f"write Sigma {GREEK}"), ("\u0440", None), ("@", None),
])
def test_advice_for_a_character(char, text):
    assert advice(char) == text


@pytest.mark.parametrize("word, choices, hint", [
    ("marginalisation", ["marginalization", "jensen"], "; did you mean marginalization?"),
    ("titel", ["title", "assume"], "; did you mean title?"),
    ("author", ["title", "assume", "define"], ""),
])
def test_did_you_mean(word, choices, hint):
    assert did_you_mean(word, choices) == hint


def test_a_misspelled_header_is_a_warning_and_the_file_still_reads():
    with pytest.warns(HeaderWarning) as caught:
        derivation = parse_text("titel: ELBO\n\nlog p(X) = log p(X)\n", "f.calc")
    assert [str(w.message) for w in caught] == [
        "f.calc:1:1: warning: the header 'titel' is not one symelbo reads; did you mean title? "
        "(it is kept as metadata)"]
    assert derivation.headers == {"titel": "ELBO"} and len(derivation.chains) == 1


def test_a_header_far_from_every_known_one_is_metadata_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        derivation = parse_text("author: A. Student\ntitle: T\n\nlog p(X) = log p(X)\n", "f.calc")
    assert derivation.headers == {"author": "A. Student", "title": "T"}
