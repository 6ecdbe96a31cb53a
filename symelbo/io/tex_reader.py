"""Reading derivations from LaTeX and Markdown math: display chains to ``.calc`` and back.

Map of this module:

- :func:`read_tex`         a source file to a :class:`TexReading`: its chains as
  ``.calc`` text, the :class:`~symelbo.core.derivation.Derivation` the ``.calc``
  reader builds from that text (every step placed at its line and column in the
  user's file), what could not be read, and what was skipped.
- :func:`check_reading`    the checker's result for a reading: steps that could
  not be read are ``unknown`` with the reason, the rest checked as usual.
- :func:`rules_from_text`  a justification as people write it ("by Jensen",
  "definition of KL") to rule names, through :data:`ALIASES`.
- :func:`skipped_lines`    the skipped list, for the end of a text report.

How a block is read: rows are cut at ``\\\\``, cells at ``&``; the first two
cells of a row are math (three in ``eqnarray``), later cells are annotations.
The chain is cut at its top-level relations; each side is parsed by
``tex.lark`` and written in ``.calc`` notation, then the whole file's ``.calc``
text is read by :func:`symelbo.io.parser.parse_text`, so a TeX derivation and
its ``.calc`` translation are one derivation with one set of verdicts. Every
blanked mark (``&``, ``\\\\``, ``\\text{...}``) is replaced by spaces of the same
length, so a column in a side is a column of the user's file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import sympy as sp
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from symelbo.core.derivation import Chain, Derivation, Step
from symelbo.core.errors import InputError
from symelbo.io.characters import describe
from symelbo.io.grammars import load_parser
from symelbo.io.parser import parse_text
from symelbo.io.tex_source import Math, Skip, Source, matching_brace, read_source, scan

__all__ = ["TexReading", "Unread", "read_tex", "read_tex_text", "read_source_chains", "check_reading",
           "rules_from_text", "ALIASES", "skipped_lines", "unread_lines", "unread_steps", "UNREAD",
           "MAX_TERM_NESTING"]

#: The placeholder for a side that could not be read.
UNREAD = sp.Symbol("UNREAD")
#: Deepest grouping a side may have; deeper sides are reported, not parsed.
MAX_TERM_NESTING = 200

#: Justifications people write, normalised (lower case, no punctuation), to rule names.
ALIASES = {
    "jensen": ("jensen",), "jensens": ("jensen",), "jensen inequality": ("jensen",),
    "jensens inequality": ("jensen",), "concavity of log": ("jensen",),
    "concavity of the log": ("jensen",), "concavity of the logarithm": ("jensen",),
    "gibbs": ("gibbs_inequality",), "gibbs inequality": ("gibbs_inequality",),
    "gibbs' inequality": ("gibbs_inequality",), "gibbss inequality": ("gibbs_inequality",),
    "kl >= 0": ("gibbs_inequality",), "kl nonnegative": ("gibbs_inequality",),
    "kl is nonnegative": ("gibbs_inequality",), "nonnegativity of kl": ("gibbs_inequality",),
    "non-negativity of kl": ("gibbs_inequality",), "kl geq 0": ("gibbs_inequality",),
    "bayes": ("bayes_rule",), "bayes rule": ("bayes_rule",), "bayes theorem": ("bayes_rule",),
    "bayes' rule": ("bayes_rule",), "bayes' theorem": ("bayes_rule",),
    "linearity": ("linearity_expectation",), "linearity of expectation": ("linearity_expectation",),
    "linearity of the expectation": ("linearity_expectation",),
    "linearity of expectations": ("linearity_expectation",),
    "linearity of the gradient": ("linearity_gradient",), "linearity of gradient": ("linearity_gradient",),
    "linearity of differentiation": ("linearity_gradient",),
    "definition of kl": ("definition_kl",), "def of kl": ("definition_kl",), "kl definition": ("definition_kl",),
    "definition of the kl divergence": ("definition_kl",), "definition of kl divergence": ("definition_kl",),
    "definition of expectation": ("definition_expectation",),
    "definition of the expectation": ("definition_expectation",),
    "def of expectation": ("definition_expectation",),
    "definition of entropy": ("definition_entropy",), "definition of the entropy": ("definition_entropy",),
    "definition of elbo": ("definition_elbo",), "definition of the elbo": ("definition_elbo",),
    "def of elbo": ("definition_elbo",),
    "log of a product": ("log_product",), "log product": ("log_product",), "product of logs": ("log_product",),
    "log of a quotient": ("log_quotient",), "log quotient": ("log_quotient",),
    "log of a ratio": ("log_quotient",),
    "expectation of a constant": ("expectation_constant",), "constant": ("expectation_constant",),
    "gradient of a constant": ("gradient_constant",),
    "product rule": ("product_rule",), "chain rule of probability": ("product_rule",),
    "marginalization": ("marginalization",), "marginalisation": ("marginalization",),
    "sum rule": ("marginalization",), "law of total probability": ("marginalization",),
    "multiply by one": ("multiply_by_one",), "multiplying by one": ("multiply_by_one",),
    "multiply by q/q": ("multiply_by_one",), "algebra": ("algebra",), "rearranging": ("algebra",),
}
_LEAD = re.compile(r"^(by|using|from|via|apply|applying|use|from the)\s+")
_NOTATION_WORDS = {"kl", "elbo", "e", "h", "d", "var", "cov"}
_REL_CALC = {"=": "=", "\\geq": ">=", "\\ge": ">=", "\\geqslant": ">=", "\\leq": "<=", "\\le": "<=",
             "\\leqslant": "<=", "<": "<", ">": ">", "\\lt": "<", "\\gt": ">", ">=": ">=", "<=": "<="}
_NOT_A_STEP = ("\\approx", "\\neq", "\\ne", "\\equiv", "\\triangleq", "\\coloneqq", "\\eqqcolon",
               "\\defeq", "\\doteq", "\\sim", "\\in", "\\subset", "\\subseteq", "\\simeq", ":=", "=:",
               "\\mapsto", "\\to", "\\rightarrow", "\\Rightarrow", "\\iff", "\\implies")
_RELATION = re.compile(
    r"\\(overset|stackrel|underset)(?![A-Za-z])"
    r"|\\(geqslant|leqslant|geq|leq|ge|le|lt|gt|propto|approx|neq|ne|equiv|triangleq|coloneqq"
    r"|eqqcolon|defeq|doteq|sim|in|subseteq|subset|simeq|mapsto|to|rightarrow|Rightarrow|iff"
    r"|implies)(?![A-Za-z])"
    r"|:=|=:|<=|>=|=|<|>")
_BLANKED = re.compile(
    r"\\(label|hspace\*?|vspace\*?|phantom|hphantom|vphantom|intertext|shortintertext|mathrlap"
    r"|mathllap|color|textcolor)\s*\{"
    r"|\\(nonumber|notag|displaystyle|textstyle|scriptstyle|mathrel|mathord|mathbin|quad|qquad"
    r"|allowbreak|nolimits|limits)(?![A-Za-z])"
    r"|\\(left|right)\s*\.")
_JUSTIFYING = re.compile(r"\\(text|textrm|textit|textbf|textsf|mbox|mathrm|tag\*?)\s*\{|\\because(?![A-Za-z])")
_OPTIMUM = re.compile(r"\\(arg\s*\\?(min|max)|argmin|argmax|min|max|sup|inf)(?![A-Za-z])"
                      r"|\\operatorname\*?\s*\{\s*arg")
_DENSITY_HINT = re.compile(r"(?<![A-Za-z\\])[pq]\s*(_\s*(\{[^{}]*\}|\\[A-Za-z]+|[A-Za-z0-9]))?\s*"
                           r"(\\left|\\[bB]ig+[lr]?)?\s*\(|KL|ELBO|\\mathcal\s*\{\s*L\s*\}"
                           r"|[\[(]\s*[pq](_\{?\\?[A-Za-z0-9]+\}?)?\s*[\])]")  # H[q], L(q)


@dataclass(frozen=True)
class Unread:
    """A side, or a relation, that could not be read: where and why."""

    line: int
    column: int
    message: str


@dataclass
class _Link:
    relation: str          # the .calc relation, or "" for one not read
    offset: int            # where it is written (an index into the block's text)
    notes: list = field(default_factory=list)   # justification texts
    unread: str = ""


@dataclass
class _Term:
    text: str              # the side, blanked marks as spaces
    start: int             # its index in the block's text
    tree: Tree | None = None
    calc: str = ""
    problem: Unread | None = None


@dataclass
class _Chain:
    block: Math
    terms: list
    links: list


@dataclass
class TexReading:
    """A source read: the ``.calc`` translation, its derivation, the unread and the skipped."""

    source: Source
    derivation: Derivation
    calc_text: str
    #: per TeX chain: its line, and per step (``None`` when read) the :class:`Unread` reason
    chains: list
    skipped: list


# ---------------------------------------------------------------------------
# justifications
# ---------------------------------------------------------------------------

def _normal(text: str) -> str:
    text = re.sub(r"\\geq?(?![A-Za-z])", ">=", text.replace("\\_", "_"))
    text = re.sub(r"\\[A-Za-z]+", " ", text)
    text = re.sub(r"\\[^A-Za-z]", " ", text)
    text = re.sub(r"[(){}\[\].:$`~]", " ", text.lower()).replace("’", "'")
    return re.sub(r"\s+", " ", text).strip()


def rules_from_text(text: str) -> tuple[str, ...]:
    """The rule names a written justification names; () when it names none we know.

    >>> rules_from_text(r"(by Jensen's inequality)")
    ('jensen',)
    >>> rules_from_text("definition of KL and linearity")
    ('definition_kl', 'linearity_expectation')
    """
    from symelbo.core.rules import RULES  # the registry is the one place that knows rule names
    names: list[str] = []
    for part in re.split(r",|;|\band\b|\+|&", _normal(text)):
        part = _LEAD.sub("", part.strip()).strip()
        for candidate in (part, part.replace("'", ""), part.replace("'s", "").replace("'", "")):
            found = ALIASES.get(candidate) or ((candidate,) if candidate in RULES else None)
            if found:
                names.extend(n for n in found if n not in names)
                break
    return tuple(names)


def _annotation_rules(text: str) -> tuple[str, ...]:
    """Rules of an annotation cell; symelbo's own ``by \\textsf{rule}, ...`` marks read exactly.

    What symelbo's output adds after them (``\\textit{misjustified}``, ``\\textit{found:}``
    and the checker's reasons) is the checker's, not the author's, and is not read.
    """
    from symelbo.core.rules import RULES
    own = re.search(r"(?<![A-Za-z])by(\s*\})?\s*(?=\\(textsf|mathsf)\s*\{)", text)
    if own:  # LaTeX output: by \textsf{rule}, ...; Markdown output: \text{by }\mathsf{rule}, ...
        tail = re.split(r"\\textit|;", text[own.end():])[0]   # the checker's own words follow
        named = (n.replace("\\_", "_") for n in re.findall(r"\\(?:textsf|mathsf)\s*\{([^{}]*)\}", tail))
        return tuple(dict.fromkeys(n for n in named if n in RULES))
    if re.search(r"\\textit\s*\{\s*(found|refuted|unknown|misjustified|tested)|(?<![A-Za-z])found:", text):
        return ()
    return rules_from_text(text)


# ---------------------------------------------------------------------------
# cutting a block into a chain
# ---------------------------------------------------------------------------

def _depths(text: str) -> list:
    """The group depth before each character: braces (not escaped ones) and inner environments."""
    depths, depth, i = [0] * (len(text) + 1), 0, 0
    while i < len(text):
        depths[i] = depth
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            depths[i + 1] = depth
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        i += 1
    depths[len(text)] = depth
    # an inner environment (array, cases, matrix) is a group too: its \\ and & are its own
    level, previous = 0, 0
    for match in re.finditer(r"\\(begin|end)\s*\{[^{}]*\}", text):
        if level:
            for i in range(previous, match.start()):
                depths[i] += level
        if match.group(1) == "begin":
            for i in range(match.start(), match.end()):
                depths[i] += level
            level += 1
        else:
            level = max(0, level - 1)
            for i in range(match.start(), match.end()):
                depths[i] += level + 1
        previous = match.end()
    return depths


def _blank(chars: list, start: int, end: int) -> None:
    for i in range(start, min(end, len(chars))):
        if chars[i] != "\n":
            chars[i] = " "


def _cut_block(block: Math, comments_of, is_eqnarray: bool):
    """The block's relations and sides, with the justification notes of each relation."""
    text = block.text
    chars = list(text)
    depths = _depths(text)
    row_notes: list[tuple[int, int, list]] = []  # (start, end, notes) per row
    # rows at top-level \\ (with an optional [skip]) and \cr
    rows, start = [], 0
    for match in re.finditer(r"\\\\(\s*\[[^\]]*\])?|\\cr(?![A-Za-z])", text):
        if depths[match.start()] == 0:
            rows.append((start, match.start()))
            _blank(chars, match.start(), match.end())
            start = match.end()
    rows.append((start, len(text)))
    math_cells = 3 if is_eqnarray else 2
    for row_start, row_end in rows:
        notes: list[str] = []
        amps = [i for i in range(row_start, row_end)
                if text[i] == "&" and depths[i] == 0 and (i == 0 or text[i - 1] != "\\")]
        for amp in amps:
            chars[amp] = " "
        if len(amps) >= math_cells:
            cut = amps[math_cells - 1]
            notes.append(text[cut + 1:row_end])
            _blank(chars, cut, row_end)
        row_notes.append((row_start, row_end, notes))
    body = "".join(chars)
    # marks without meaning, blanked
    for match in _BLANKED.finditer(body):
        end = match.end()
        if match.group(1):
            close = matching_brace(body, end - 1)
            end = close if close > 0 else end
        _blank(chars, match.start(), end)
    body = "".join(chars)
    # justifications written in the math: \text{...} at top level, \tag{...}, \because ...
    noted: list[tuple[int, str]] = []
    for match in _JUSTIFYING.finditer(body):
        if depths[match.start()] != 0 or chars[match.start()] == " ":
            continue
        back = match.start() - 1
        while back >= 0 and body[back].isspace():
            back -= 1
        if back >= 0 and body[back] in "_^":  # D_\text{KL}: notation, not a justification
            continue
        if match.group(0).startswith("\\because"):
            row_end = next(e for s, e, _ in row_notes if s <= match.start() <= e)
            noted.append((match.start(), body[match.end():row_end]))
            _blank(chars, match.start(), row_end)
            continue
        close = matching_brace(body, match.end() - 1)
        if close < 0:
            continue
        inside = body[match.end():close - 1]
        if match.group(1) == "mathrm" or _normal(inside) in _NOTATION_WORDS:
            continue
        noted.append((match.start(), inside))
        _blank(chars, match.start(), close)
    body = "".join(chars)
    for match in re.finditer(r"\{\s*\}", body):  # {} before a relation, as in {}=
        _blank(chars, match.start(), match.end())
    body = "".join(chars)
    depths = _depths(body)
    links: list[_Link] = []
    cuts: list[tuple[int, int]] = []
    for match in _RELATION.finditer(body):
        if depths[match.start()] != 0 or any(s <= match.start() < e for s, e in cuts):
            continue
        if match.start() > 0 and body[match.start() - 1] == "\\":
            continue
        end, symbol, notes = match.end(), match.group(0), []
        if match.group(1):  # \overset{note}{REL}
            first_open = body.find("{", end)
            first_close = matching_brace(body, first_open) if first_open >= 0 else -1
            second_close = matching_brace(body, body.find("{", first_close)) if first_close > 0 else -1
            if second_close < 0:
                continue
            notes.append(body[first_open + 1:first_close - 1])
            symbol = body[body.find("{", first_close) + 1:second_close - 1].strip()
            end = second_close
        if match.group(0) in ("<", ">") and body[match.end():match.end() + 1] == "=":
            continue
        links.append(_Link(symbol, match.start(), notes))
        cuts.append((match.start(), end))
    if not links:
        return None, "no relation"
    optimum = _OPTIMUM.search(text)
    if optimum:
        return None, f"an optimisation ({optimum.group(0)}), not a chain of steps"
    odd = next((l.relation for l in links if l.relation in _NOT_A_STEP), None)
    if odd:
        return None, f"not a chain of =, <, >, \\leq, \\geq (it uses {odd})"
    terms, previous = [], 0
    for start, end in cuts:
        terms.append(_Term(body[previous:start], previous))
        previous = end
    terms.append(_Term(body[previous:], previous))
    for term in terms:  # a sentence's full stop or comma after the math
        stripped = term.text.rstrip()
        if stripped.endswith((".", ",", ";")):
            term.text = stripped[:-1] + " " * (len(term.text) - len(stripped) + 1)
    for index, link in enumerate(links):
        rhs = terms[index + 1]
        link.notes.extend(t for at, t in noted if rhs.start <= at < rhs.start + len(rhs.text))
        for row_start, row_end, notes in row_notes:
            if row_start <= link.offset <= row_end:
                link.notes.extend(notes)
                first = block.offsets[row_start] if row_start < len(block.offsets) else block.start
                last = block.offsets[min(row_end, len(block.offsets) - 1)] if block.offsets else first
                link.notes.extend(comments_of(first, last))
        if link.relation == "\\propto":
            link.unread = "\\propto is not read yet: write the chain with = and + const in a .calc file"
        elif link.relation not in _REL_CALC:
            link.unread = f"the relation {link.relation} is not read"
        else:
            link.relation = _REL_CALC[link.relation]
    return _Chain(block, terms, links), ""


# ---------------------------------------------------------------------------
# sides: parse, then write as .calc
# ---------------------------------------------------------------------------

def _nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "({[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")}]":
            depth -= 1
    return deepest


def _parse_term(term: _Term, place) -> None:
    if not term.text.strip():
        term.problem = place(term.start, "nothing to read between two relations")
        return
    if _nesting(term.text) > MAX_TERM_NESTING:
        term.problem = place(term.start, f"the expression is nested more than {MAX_TERM_NESTING} "
                                         "levels deep")
        return
    try:
        term.tree = load_parser("tex_term").parse(term.text)
    except UnexpectedInput as error:
        position = getattr(error, "pos_in_stream", None)
        if isinstance(error, UnexpectedToken) and error.token.type != "$END":
            position = error.token.start_pos
            message = f"cannot read {str(error.token)[:40]!r} here"
        elif isinstance(error, UnexpectedCharacters):
            word = re.match(r"\\[A-Za-z]+|.", term.text[error.pos_in_stream:], re.S)
            shown = word.group(0) if word else ""
            message = (f"cannot read {shown!r} here" if len(shown) > 1
                       else f"unexpected character {describe(shown)}")
        else:
            position = len(term.text.rstrip())
            message = "the expression ends too early"
        if position is None or isinstance(error, UnexpectedEOF):
            position = len(term.text.rstrip())
        term.problem = place(term.start + position, message)


class _NotRead(Exception):
    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.message, self.position = message, position


_GREEK_PREFIX = re.compile(r"^\\")


def _name_text(token: str) -> str:
    styled = (re.match(r"\\[A-Za-z]+\s*\{\s*\\?([A-Za-z]+)\s*\}", token)
              or re.match(r"\\(?:boldsymbol|bm|mathbf)\s*\\([A-Za-z]+)$", token))
    if styled:
        return styled.group(1)
    name = _GREEK_PREFIX.sub("", token)
    return {"varphi": "phi", "vartheta": "theta", "varepsilon": "epsilon"}.get(name, name)


class _Writer:
    """Writes one parsed side in ``.calc`` notation, knowing the file's densities."""

    def __init__(self, densities: dict, applications=(), forms=()):
        self.densities = densities   # calc name -> set of variable names
        self.applications = list(applications)   # (calc name, variable names) as written
        self.forms = list(forms)     # (calc name, (variables, given variables)) as written

    def related(self, name: str, variables: set) -> set:
        """The variables ``name`` is applied to together with any of ``variables``: a file
        about two models (X, Z and x, theta) gives each ELBO its own model's joint."""
        out = set(variables)
        for other, applied in self.applications:
            if other == name and applied & variables:
                out |= applied
        return out

    # -- names ----------------------------------------------------------------
    def vname(self, node: Tree) -> str:
        base = _name_text(str(node.children[0]))
        if len(node.children) > 1:
            return f"{base}_{self.sub(node.children[1])}"
        return base

    def sub(self, node: Tree) -> str:
        child = node.children[0]
        if isinstance(child, Token):
            return _name_text(str(child))
        if child.data == "vname":
            return self.vname(child)
        if child.data == "subbody_num":
            return "".join(str(t) for t in child.children)
        if child.data == "subbody_word":
            return "".join(_name_text(str(t)) for t in child.children)
        raise _NotRead("a subscript here must be a name or a number", _pos(child))

    def density_text(self, node: Tree) -> str:
        name = self.density_name(node)
        groups = [[self.vname(v) for v in g.children] for g in node.children[1:]
                  if isinstance(g, Tree) and g.data == "names"]
        inside = ", ".join(groups[0]) + (" | " + ", ".join(groups[1]) if len(groups) > 1 else "")
        return f"{name}({inside})"

    def density_name(self, node: Tree) -> str:
        """``q(z; \\nu)`` is ``q_nu(z)``: one parameter after a semicolon is a subscript."""
        name = self.vname(node.children[0])
        params = [g for g in node.children[1:] if isinstance(g, Tree) and g.data == "params"]
        if params:
            names = [self.vname(v) for v in params[0].children[0].children]
            if len(names) != 1 or "_" in name:
                raise _NotRead("a density takes one parameter after ';' (q(z; phi) is q_phi(z))",
                               _pos(params[0]))
            name = f"{name}_{names[0]}"
        return name

    def full(self, name: str, node) -> str:
        """The density ``name`` over every variable it is applied to in the file."""
        if name not in self.densities:
            known = ", ".join(sorted(self.densities)) or "none"
            raise _NotRead(f"'{name}' is not a density of this file (its densities: {known})", _pos(node))
        return f"{name}({', '.join(sorted(self.densities[name]))})"

    def variational(self, node) -> str:
        names = sorted(n for n in self.densities if n.startswith("q"))
        if "q" in names:  # q itself before q_phi or q1: the usual name of the variational density
            names = ["q"]
        if len(names) != 1:
            raise _NotRead("an expectation without a subscript needs one density named q in the file; "
                           "write \\mathbb{E}_{q}[...]" if not names else
                           f"an expectation without a subscript is ambiguous here ({', '.join(names)}); "
                           "write \\mathbb{E}_{q}[...]", _pos(node))
        return names[0]

    def joint(self, variational: str, node) -> str:
        others = sorted(n for n in self.densities if not n.startswith("q"))
        name = "p" if "p" in others else (others[0] if len(others) == 1 else None)
        if name is None:
            raise _NotRead("the ELBO needs the model's joint density p in the file", _pos(node))
        own = self.densities.get(variational, set())
        return f"{name}({', '.join(sorted(self.related(name, own)))})"

    # -- expressions ----------------------------------------------------------
    def write(self, node) -> tuple[str, int]:
        """``(text, precedence)``: 1 sum, 2 product, 3 sign, 4 power, 5 atom."""
        kind = node.data
        method = getattr(self, "w_" + kind, None)
        if method is None:
            raise _NotRead(f"cannot read this ({kind})", _pos(node))
        return method(node)

    def at(self, node, least: int) -> str:
        text, prec = self.write(node)
        return text if prec >= least else f"({text})"

    def w_start(self, node):
        return self.write(node.children[0])

    def w_number(self, node):
        return str(node.children[0]), 5

    def w_name(self, node):
        return self.vname(node.children[0]), 5

    def w_density(self, node):
        return self.density_text(node), 5

    def w_add(self, node):
        return self.run(node, ("add", "sub"), 1)

    w_sub = w_add

    def w_neg(self, node):
        return f"-{self.at(node.children[0], 2)}", 3

    def w_mul(self, node):
        return self.run(node, ("mul", "div"), 2)

    w_div = w_mul

    def run(self, node, kinds, prec):
        """A run ``a + b - c`` (or ``a b / c``) walked along its left spine without recursion,
        so that a long flat sum cannot exhaust the stack."""
        pieces = []
        while isinstance(node, Tree) and node.data in kinds:
            operands = [c for c in node.children if isinstance(c, Tree)]
            sign = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[node.data]
            pieces.append(f" {sign} {self.at(operands[1], prec + 1)}")
            node = operands[0]
        return self.at(node, prec) + "".join(reversed(pieces)), prec

    def w_frac(self, node):
        num, den = node.children[1], node.children[2]
        return f"{self.group(num, 2)} / {self.group(den, 3)}", 2

    def group(self, node, least):
        child = node.children[0]
        if isinstance(child, Token):
            return str(child)
        if child.data == "vname":
            return self.vname(child)
        return self.at(child, least)

    def w_pow(self, node):
        base, sup = node.children[0], node.children[1]
        exponent = self.at(sup.children[0], 5) if sup.data == "sup" else self.at(sup, 5)
        if base.data == "name" and self.vname(base.children[0]) == "e":
            return f"exp({self.write(sup.children[0] if sup.data == 'sup' else sup)[0]})", 5
        return f"{self.at(base, 5)}^{exponent}", 4

    def w_log(self, node):
        return f"log({self.write(node.children[1])[0]})", 5

    def w_exp(self, node):
        return f"exp({self.write(node.children[1])[0]})", 5

    def w_expectation(self, node):
        parts = [c for c in node.children if isinstance(c, Tree)]
        esub = parts[0] if parts and parts[0].data == "esub" else None
        body = parts[-1]
        return f"{self.expectation_head(esub, node)}[{self.write(body)[0]}]", 5

    w_expectation_bare = w_expectation

    def w_expectation_angle(self, node):
        """``\\langle f \\rangle_{q(Z)}``: the expectation of f under q(Z)."""
        parts = [c for c in node.children if isinstance(c, Tree)]
        esub = parts[-1] if parts[-1].data == "esub" else None
        return f"{self.expectation_head(esub, node)}[{self.write(parts[0])[0]}]", 5

    def expectation_head(self, esub, node) -> str:
        if esub is None:
            return f"E_{self.variational(node)}"
        inner = [c for c in esub.children if isinstance(c, (Tree, Token)) and
                 not (isinstance(c, Token) and c.type == "SIM")]
        target = inner[-1]  # z \sim q(z): the density is what follows \sim
        if isinstance(target, Token):
            name = _name_text(str(target))
        elif target.data == "density":
            return f"E_{{{self.density_text(target)}}}"
        else:
            name = self.vname(target)
        if name not in self.densities:
            owner = [n for n in self.densities if n.partition("_")[2] == name]
            if len(owner) == 1:  # E_phi: the expectation under q_phi
                name = owner[0]
            else:
                self.full(name, target)
        return f"E_{{{name}}}" if "_" in name else f"E_{name}"

    def side(self, node: Tree, other: str | None = None) -> str:
        child = node.children[0]
        if child.data == "density":
            return self.density_text(child)
        name = self.vname(child)
        if other is None:
            return self.full(name, child)
        # KL(q || p): p over q's variables, given the rest of p's
        first = set(re.search(r"\((.*)\)", other).group(1).split(", "))
        if name not in self.densities:
            self.full(name, child)
        given = sorted(self.related(name, first) - first)
        over = ", ".join(sorted(first))
        return f"{name}({over}{' | ' + ', '.join(given) if given else ''})"

    def w_kl(self, node):
        sides = [c for c in node.children if isinstance(c, Tree)]
        first = self.side(sides[0])
        return f"KL({first} || {self.side(sides[1], first)})", 5

    def w_entropy(self, node):
        return f"H[{self.side(node.children[1])}]", 5

    def w_elbo(self, node):
        args = [c for c in node.children if isinstance(c, Tree)]
        if not args:
            q = self.variational(node)
        else:
            target = args[0].children[0]
            if target.data == "density":
                q = self.density_name(target)
            else:
                names = [self.vname(v) for v in target.children]
                # L(theta, phi; x): the first name that is a density, or the parameter of one
                q = next((n for n in names if n in self.densities and n.startswith("q")), None) or \
                    next((n for n in names if any(d.startswith("q") and d.partition("_")[2] == n
                                                  for d in self.densities)), None) or names[0]
                if q not in self.densities:
                    owners = [n for n in self.densities if n.partition("_")[2] == q]
                    owners = [n for n in owners if n.startswith("q")] or owners
                    if len(owners) != 1:
                        known = ", ".join(sorted(self.densities)) or "none"
                        raise _NotRead(f"'{q}' is not a density of this file (its densities: {known}); "
                                       "the ELBO is written \\mathcal{L}(q)", _pos(target.children[0]))
                    q = owners[0]
        if q not in self.densities:
            self.full(q, node)
        forms = {form for name, form in self.forms if name == q}
        if len(forms) == 1 and next(iter(forms))[1]:  # an amortised q(z | x), as written
            over, given = next(iter(forms))
            variational = f"{q}({', '.join(over)} | {', '.join(given)})"
            joint = self.joint(q, node)
        else:
            variational, joint = self.full(q, node), self.joint(q, node)
        return f"ELBO({variational}, {joint})", 5

    def w_sum(self, node):
        variable = self.sub(node.children[1])
        return f"sum_{variable}[{self.write(node.children[2])[0]}]", 5

    def w_integral(self, node):
        parts = node.children[1:]
        diff = parts[-1] if isinstance(parts[-1], Token) and parts[-1].type == "DIFF" else None
        sub = parts[0] if isinstance(parts[0], Tree) and parts[0].data == "sub" else None
        body = next(p for p in parts if isinstance(p, Tree) and p.data != "sub")
        if diff is not None:
            variable = _name_text(re.sub(r"^(\\[A-Za-z]+\s*\{\s*d\s*\}|\\,\s*d|d)\s*", "", str(diff)))
        elif sub is not None:
            variable = self.sub(sub)
        else:
            raise _NotRead("an integral needs its variable, as in \\int ... \\,dZ", _pos(node))
        return f"int_{variable}[{self.write(body)[0]}]", 5

    def w_grad(self, node):
        return f"grad_{self.sub(node.children[1])}[{self.write(node.children[2])[0]}]", 5

    def w_grad_frac(self, node):
        token = str(node.children[0])
        name = re.search(r"\\partial\s*(\\[A-Za-z]+|[A-Za-z])(_\{?[A-Za-z0-9]+\}?)?\s*\}\s*$", token)
        suffix = re.sub(r"[_{}]", "", name.group(2) or "")
        variable = _name_text(name.group(1)) + ("_" + suffix if suffix else "")
        return f"grad_{variable}[{self.write(node.children[1])[0]}]", 5


def _pos(node) -> int:
    if isinstance(node, Token):
        return node.start_pos or 0
    return getattr(node.meta, "start_pos", 0) if not getattr(node.meta, "empty", True) else 0


def _applied(tree: Tree) -> list:
    """``(calc name, variable names)`` of every density applied in a side."""
    writer = _Writer({})
    out = []
    for node in tree.iter_subtrees():
        if node.data == "density":
            groups = [g for g in node.children[1:] if isinstance(g, Tree)]
            try:
                name = writer.density_name(node)
            except _NotRead:
                continue
            lists = [tuple(writer.vname(v) for v in g.children) for g in groups if g.data == "names"]
            out.append((name, {v for names in lists for v in names},
                        (lists[0], lists[1] if len(lists) > 1 else ())))
    return out


# ---------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------

def read_tex(path: str, kind: str) -> TexReading:
    """Read a ``.tex``, ``.md`` or ``.ipynb`` file; bad bytes raise InputError, the rest is reported."""
    return read_source_chains(read_source(path, kind))


def read_tex_text(text: str, kind: str = "tex", path: str = "<tex>") -> TexReading:
    """Read TeX or Markdown given as text (``path`` only names it)."""
    return read_source_chains(Source(path, text, kind))


def read_source_chains(source: Source) -> TexReading:
    blocks, skipped = scan(source)
    skipped = list(skipped)

    def place(block: Math, index: int, message: str) -> Unread:
        offset = block.offsets[min(index, len(block.offsets) - 1)] if block.offsets else block.start
        line, column = source.place(offset)
        return Unread(line, column, message)

    def comments_of(block: Math, first: int, last: int) -> list:
        lines = range(source.text_line(first), source.text_line(last) + 1)
        return [text for n, text in block.comments.items() if n in lines][:1]

    chains: list[_Chain] = []
    for block in blocks:
        line, column = source.place(block.problem_offset or block.start)
        if block.problem:
            skipped.append(Skip(line, column, block.problem))
            continue
        chain, why = _cut_block(block, lambda a, b, m=block: comments_of(m, a, b),
                                block.env.startswith("eqnarray"))
        if chain is None:
            if why != "no relation" or _DENSITY_HINT.search(block.text):
                skipped.append(Skip(line, column, f"{why}; skipped"))
            continue
        for term in chain.terms:
            _parse_term(term, lambda index, message, b=block: place(b, index, message))
        chains.append(chain)
    # which chains are about densities: they apply p or q (or a density such a chain applies)
    about = [bool(_DENSITY_HINT.search(c.block.text)) for c in chains]
    applied = [[a for t in c.terms if t.tree is not None for a in _applied(t.tree)] for c in chains]
    names = {n for flag, a in zip(about, applied) if flag for n, _, _ in a}
    about = [flag or any(n in names for n, _, _ in a) for flag, a in zip(about, applied)]
    kept = []
    for flag, chain in zip(about, chains):
        if flag:
            kept.append(chain)
        else:
            line, column = source.place(chain.block.start)
            skipped.append(Skip(line, column, "not about the file's densities; skipped"))
    densities: dict[str, set] = {}
    for flag, a in zip(about, applied):
        if flag:
            for name, variables, _ in a:
                densities.setdefault(name, set()).update(variables)
    found = [a for flag, each in zip(about, applied) if flag for a in each]
    writer = _Writer(densities, [(n, v) for n, v, _ in found], [(n, f) for n, _, f in found])
    for chain in kept:
        for term in chain.terms:
            if term.tree is None:
                continue
            try:
                term.calc = writer.write(term.tree)[0]
            except _NotRead as why:
                term.problem = place(chain.block, term.start + why.position, why.message)
    derivation, calc_text, results = _build(kept, source, place)
    skipped.sort(key=lambda s: (s.line, s.column))
    return TexReading(source, derivation, calc_text, results, skipped)


def _segments(chain: _Chain):
    """Runs of consecutive readable sides joined by readable relations: ``[(first, last)]``."""
    runs, start = [], None

    def close(end):
        if start is not None and end > start:
            runs.append((start, end))

    for index, term in enumerate(chain.terms):
        if term.problem is not None:
            close(index - 1)
            start = None
        elif start is not None and chain.links[index - 1].unread:
            close(index - 1)
            start = index
        elif start is None:
            start = index
    close(len(chain.terms) - 1)
    return runs


def _build(chains: list, source: Source, place):
    """The ``.calc`` text of the readable runs, parsed; a side the parser refuses is unread."""
    from symelbo.core.rules import RULES
    for _ in range(sum(len(c.terms) for c in chains) + 1):
        lines, where = [], {}
        for c_index, chain in enumerate(chains):
            for first, last in _segments(chain):
                head = chain.terms[first]
                at = head.start + len(head.text) - len(head.text.lstrip())
                line, column = source.place(chain.block.offsets[min(at, len(chain.block.offsets) - 1)])
                lines.append(f"# {source.path}:{line}:{column}")
                where[len(lines) + 1] = (c_index, first)
                lines.append(f"    {chain.terms[first].calc}")
                for index in range(first + 1, last + 1):
                    link = chain.links[index - 1]
                    rules = []
                    for note in link.notes:
                        rules.extend(r for r in _annotation_rules(note) if r in RULES and r not in rules)
                    by = f"    by {', '.join(rules)}" if rules else ""
                    where[len(lines) + 1] = (c_index, index)
                    lines.append(f" {link.relation:>2} {chain.terms[index].calc}{by}")
                lines.append("")
        calc_text = "\n".join(lines)
        if not where:
            break
        try:
            parsed = parse_text(calc_text, source.path)
            break
        except InputError as error:
            spot = where.get(error.line)
            if spot is None:
                raise
            chain = chains[spot[0]]
            term = chain.terms[spot[1]]
            term.problem = place(chain.block, term.start + len(term.text) - len(term.text.lstrip()),
                                 error.message)
    else:  # pragma: no cover - each round removes a side
        raise InputError("the file cannot be read", source.path)
    if not where:
        parsed, calc_text = Derivation((), {}, source.path), ""
    return _placed(chains, parsed, source), calc_text, chains


def _placed(chains: list, parsed: Derivation, source: Source) -> Derivation:
    """The parsed chains with every step at its relation's line and column in the user's file."""
    out, runs = [], iter(parsed.chains)
    for chain in chains:
        block = chain.block
        for first, last in _segments(chain):
            calc_chain = next(runs)
            steps = []
            for index, step in zip(range(first + 1, last + 1), calc_chain.steps):
                link = chain.links[index - 1]
                line, column = source.place(block.offsets[min(link.offset, len(block.offsets) - 1)])
                steps.append(replace(step, line=line, column=column))
            line, _ = source.place(block.offsets[chain.terms[first].start + len(chain.terms[first].text)
                                                 - len(chain.terms[first].text.lstrip())])
            out.append(Chain(calc_chain.first, tuple(steps), line))
    return Derivation(tuple(out), {}, source.path)


# ---------------------------------------------------------------------------
# checking
# ---------------------------------------------------------------------------

def check_reading(reading: TexReading, options=None):
    """Check a reading: the readable runs as one derivation, the unread steps ``unknown``.

    Returns a :class:`~symelbo.core.checker.CheckResult` with one chain per TeX
    chain, in the order of the file.
    """
    from symelbo.core.checker import ChainResult, CheckOptions, CheckResult, StepResult, check_derivation
    checked = check_derivation(reading.derivation, options or CheckOptions())
    results = iter(checked.chains)
    chains_out = []
    source = reading.source
    for chain in reading.chains:
        block = chain.block
        by_index: dict[int, object] = {}
        expressions: dict[int, sp.Expr] = {}
        for first, last in _segments(chain):
            result = next(results)
            expressions[first] = result.chain.first
            for index, step_result in zip(range(first + 1, last + 1), result.steps):
                by_index[index] = step_result
                expressions[index] = step_result.step.rhs
        for index, term in enumerate(chain.terms):
            if index not in expressions and term.problem is None and term.calc:
                expressions[index] = _lone_side(term.calc, reading.calc_text)
        steps = []
        for index in range(1, len(chain.terms)):
            if index in by_index:
                steps.append(by_index[index])
                continue
            link = chain.links[index - 1]
            line, column = source.place(block.offsets[min(link.offset, len(block.offsets) - 1)])
            problem = _step_problem(chain, index, source)
            message = f"not read: {source.path}:{problem.line}:{problem.column}: {problem.message}"
            relation = link.relation if link.relation in ("=", "<=", ">=", "<", ">") else "="
            step = Step(expressions.get(index - 1, UNREAD), relation, expressions.get(index, UNREAD),
                        (), line, column)
            steps.append(StepResult(step, "unknown", message=message))
        head = chain.terms[0]
        first_at = head.start + len(head.text) - len(head.text.lstrip())
        first_line, _ = source.place(block.offsets[min(first_at, len(block.offsets) - 1)]
                                     if block.offsets else block.start)
        rebuilt = Chain(expressions.get(0, UNREAD), tuple(s.step for s in steps), first_line)
        chains_out.append(ChainResult(rebuilt, tuple(steps)))
    derivation = Derivation(tuple(c.chain for c in chains_out), {}, source.path)
    return CheckResult(derivation, tuple(chains_out))


def _step_problem(chain: _Chain, index: int, source: Source) -> Unread:
    """Why step ``index`` of a chain (between sides index-1 and index) was not read."""
    link = chain.links[index - 1]
    if link.unread:
        line, column = source.place(chain.block.offsets[min(link.offset, len(chain.block.offsets) - 1)])
        return Unread(line, column, link.unread)
    return chain.terms[index].problem or chain.terms[index - 1].problem


def unread_steps(reading: TexReading) -> list:
    """``(line, column, message)`` of every step that could not be read, in file order."""
    out = []
    for chain in reading.chains:
        readable = {i for first, last in _segments(chain) for i in range(first + 1, last + 1)}
        for index in range(1, len(chain.terms)):
            if index not in readable:
                problem = _step_problem(chain, index, reading.source)
                out.append((problem.line, problem.column, problem.message))
    return out


def _lone_side(calc: str, context: str) -> sp.Expr:
    """A readable side between two unread ones, for the report; :data:`UNREAD` if it fails."""
    from symelbo.io.parser import parse_expression
    try:
        return parse_expression(calc, context)
    except InputError:
        return UNREAD


def skipped_lines(reading: TexReading) -> list:
    """``file:line:column: reason`` for each skipped part, in the order of the file."""
    return [f"{reading.source.path}:{s.line}:{s.column}: {s.reason}" for s in reading.skipped]


def unread_lines(reading: TexReading) -> list:
    """``file:line:column: message`` for each side or relation that could not be read."""
    out = []
    for chain in reading.chains:
        for term in chain.terms:
            if term.problem:
                out.append(f"{reading.source.path}:{term.problem.line}:{term.problem.column}: "
                           f"{term.problem.message}")
    return out
