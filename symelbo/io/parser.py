"""The ``.calc`` derivation-file reader: a lark grammar, never ``eval``.

File structure (headers, chains separated by blank lines, ``#`` comments) is
read line by line here; each line's content is parsed by ``grammar.lark`` and
turned into SymPy notation node by node. Expressions are built with
``evaluate=False`` so they print as written; the checker evaluates them.

Every problem raises :class:`~symelbo.core.errors.InputError` located at
``file:line:column``.
"""

from __future__ import annotations

import difflib
import re
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import sympy as sp
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from symelbo.core.derivation import Chain, Derivation, Step, check_chain_relations
from symelbo.io.characters import advice, describe
from symelbo.core.errors import InputError
from symelbo.io.grammars import load_parser
from symelbo.io.mistakes import bracket_fault, spelling_fault, tex_advice
from symelbo.io.userfiles import (MAX_LINE_CHARS, MAX_SOURCE_BYTES, decode_user_text, excerpt,
                                  read_user_text, source_lines)
from symelbo.core.hypotheses import (Captured, Definition, Factorisation, Hypotheses, bound_variables,
                                     factorisation_problem, renamed)
from symelbo.core.notation import (ELBO, KL, Const, Defined, Density, Entropy, Expectation, Gradient, Marginal,
                                   known_positive, parameter, split_const, variable)

__all__ = ["parse_file", "parse_stream", "parse_text", "parse_expression", "parse_step", "HeaderWarning",
           "ReadingWarning", "KNOWN_HEADERS", "did_you_mean"]

_BUILD_RECURSION = 6000
_MAX_DIGITS = 1000
#: Deepest nesting a line may have; deeper input is refused before it is built.
MAX_NESTING = 1000
#: The most expression lines (first expressions and steps) one file may hold: each is
#: checked under its own time budget, so this bounds the time a file may take.
MAX_LINES_CHECKED = 2000
_MAX_EXPONENT = 1000
_HEADER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*:(.*)$")
_OPERATORS = {"E": "expectation", "sum": "marginal", "int": "marginal", "grad": "gradient"}
_RESERVED = {"log", "exp", "KL", "ELBO", "H", "E", "by", "sum", "int", "grad", "abs", "sqrt", "const",
             "propto"}
_TOKEN_NAMES = {
    "REL": "a relation (=, <=, >=, <, >)", "IDENT": "a name", "NUMBER": "a number",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
    "COMMA": "','", "VBAR": "'|'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'",
    "POW": "'^'", "LOG": "'log'", "EXP": "'exp'", "KL": "'KL'", "ELBO": "'ELBO'", "BY": "'by'",
    "ABS": "'abs'", "SQRT": "'sqrt'", "PROPTO": "'propto_{'", "CONST": "'const_{'",
    "$END": "the end of the line",
}


#: Headers the tool reads; any other header is kept as the document's metadata.
KNOWN_HEADERS = ("title", "assume", "define")
#: Names other notations use for a function, refused as density names with the spelling here.
_FOREIGN_FUNCTIONS = {"ln": "the natural logarithm is written log, as in log p(X) or log(x)"}
#: Headers that may be given any number of times: each is one hypothesis.
_HYPOTHESIS_HEADERS = ("assume", "define")


class HeaderWarning(UserWarning):
    """A header that looks like a misspelling of one the tool reads (``titel:`` for ``title:``)."""


class ReadingWarning(UserWarning):
    """A line whose meaning changed with the language's version 2 (``E_{q(Z1)}`` now
    averages over Z1 alone, not over every variable q is applied to)."""


def did_you_mean(word: str, choices) -> str:
    """``"; did you mean NAME?"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def _line_parser() -> Lark:
    return load_parser("calc_line")


# ---------------------------------------------------------------------------
# file structure
# ---------------------------------------------------------------------------

def parse_file(path: str | Path) -> Derivation:
    """Read and parse a ``.calc`` file; bad bytes and bad syntax raise InputError."""
    path = str(path)
    text = read_user_text(path)
    return parse_text(text, path)


def parse_stream(stream, name: str = "<stdin>", limit: int = MAX_SOURCE_BYTES) -> Derivation:
    """Parse a derivation read from a binary stream (standard input), capped like a file."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"the input is over the limit of {limit:,} bytes", name)
    return parse_text(decode_user_text(data, name, "input"), name)


def _strip_comment(line: str) -> str:
    index = line.find("#")
    return line if index < 0 else line[:index]


def parse_text(text: str, path: str | None = None) -> Derivation:
    """Parse the text of a derivation file (``path`` only names it in errors)."""
    if text.startswith("\ufeff"):  # a byte-order mark is not content
        text = text[1:]
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError("the file holds a NUL byte; it is not a text file", path, line)
    headers: dict[str, str] = {}
    hypotheses_raw: list = []    # (kind, lineno, tree)
    chains_raw: list[list] = []  # each: [(lineno, tree), ...]
    current: list | None = None
    seen_expression = False
    for lineno, raw in enumerate(source_lines(text), start=1):
        content = _strip_comment(raw)
        if len(content) > MAX_LINE_CHARS:
            raise InputError(f"the line is {len(content):,} characters long; at most "
                             f"{MAX_LINE_CHARS:,} are read (a formula longer than that would "
                             "take minutes to check)", path, lineno, MAX_LINE_CHARS + 1)
        if not content.strip():
            if current is not None:
                chains_raw.append(current)
                current = None
            continue
        header = _HEADER.match(content)
        if header and not seen_expression:
            key = header.group(1)
            if key in _HYPOTHESIS_HEADERS:
                # the header's name blanked out, so that columns stay the line's own
                body = " " * header.start(2) + content[header.start(2):]
                hypotheses_raw.append((key, lineno, _parse_line(body, path, lineno),
                                       header.group(2).strip()))
                continue
            if key in headers:
                raise InputError(f"the header '{key}' is given twice", path, lineno, 1)
            _warn_unknown_header(key, path, lineno, content)
            headers[key] = header.group(2).strip()
            continue
        tree = _parse_line(content, path, lineno)
        seen_expression = True
        if tree.data == "step_line":
            if current is None:
                raise InputError("a line that starts with a relation must follow an expression",
                                 path, lineno, _first_column(content))
            current.append((lineno, tree))
        else:
            if current is not None:
                raise InputError("a chain continues with a line that starts with =, <=, >=, < or >;"
                                 " leave a blank line before a new chain",
                                 path, lineno, _first_column(content))
            if len(tree.children) > 1:  # a one-line claim: a chain of one step
                chains_raw.append([(lineno, tree)])
            else:
                current = [(lineno, tree)]
    if current is not None:
        chains_raw.append(current)
    if not chains_raw:
        raise InputError("no derivation found: write an expression, then lines starting with "
                         "a relation", path, max(1, text.count("\n")), 1)
    for chain in chains_raw:
        for lineno, tree in chain:
            if nesting_depth(tree) > MAX_NESTING:
                raise InputError(f"the expression is nested more than {MAX_NESTING} levels deep "
                                 "(parentheses, powers, operators); a long flat sum or product "
                                 "has no such limit", path, lineno, getattr(tree.meta, "column", 1))
    steps = sum(len(chain) for chain in chains_raw)
    if steps > MAX_LINES_CHECKED:
        first_over = [lineno for chain in chains_raw for lineno, _ in chain][MAX_LINES_CHECKED]
        raise InputError(f"the file holds {steps:,} lines of derivation; at most "
                         f"{MAX_LINES_CHECKED:,} are checked in one file (split it)",
                         path, first_over, 1)
    builder = _Builder(path, [tree for chain in chains_raw for _, tree in chain]
                       + [tree for _, _, tree, _ in hypotheses_raw])
    chains = []
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, _BUILD_RECURSION))  # a sum of a thousand terms nests deeply
    try:
        hypotheses = builder.hypotheses(hypotheses_raw)
        for chain in chains_raw:
            try:
                chains.append(builder.chain(chain))
            except RecursionError:  # pragma: no cover - MAX_NESTING keeps the build shallow
                raise InputError(f"the expression is nested more than {MAX_NESTING} levels deep",
                                 path, chain[0][0]) from None
    finally:
        sys.setrecursionlimit(limit)
    return Derivation(tuple(chains), headers, path, hypotheses)


def _warn_unknown_header(key: str, path, lineno: int, content: str) -> None:
    """Warn about a header one letter or two from a known one: it is most likely a typo."""
    hint = did_you_mean(key.lower(), KNOWN_HEADERS) if key not in KNOWN_HEADERS else ""
    if hint:
        located = InputError(f"warning: the header '{key}' is not one symelbo reads{hint} "
                             "(it is kept as metadata)", path, lineno, _first_column(content))
        warnings.warn(HeaderWarning(str(located)), stacklevel=3)


def nesting_depth(tree: Tree) -> int:
    """How deeply a line's tree nests, a run of one operation (a + b + c) counting as one level."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        run = _RUNS.get(node.data, (None, ()))[1]
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth if child.data in run else depth + 1))
    return deepest


def _first_column(content: str) -> int:
    return len(content) - len(content.lstrip()) + 1


def _parse_line(content: str, path, lineno: int) -> Tree:
    try:
        return _line_parser().parse(content)
    except UnexpectedInput as error:
        column, message = _syntax_fault(error, content)
        raise InputError(message, path, lineno, column) from None


def _syntax_fault(error: UnexpectedInput, content: str) -> tuple[int | None, str]:
    """Where a line's fault is and what it is: a character, a bracket, a spelling from elsewhere.

    lark reports where it stopped; the cause is often to the left (an
    unclosed '(' read until ``by``), so brackets and known spellings are
    looked for first (see :mod:`symelbo.io.mistakes`).
    """
    column = getattr(error, "column", None)
    stop = getattr(error, "pos_in_stream", None)
    stop = len(content) if stop is None or stop < 0 else stop
    char = content[stop] if isinstance(error, UnexpectedCharacters) and stop < len(content) else ""
    tex = tex_advice(content, stop) if char == "\\" else None
    if tex:
        return column, tex
    hint = advice(char) if char else None
    if hint or not (char.isascii() and char.isprintable()):
        return column, f"unexpected character {describe(char)}" + (f"; {hint}" if hint else "")
    for fault in (bracket_fault(content), spelling_fault(content, stop)):
        if fault:
            return fault
    if char:
        return column, f"unexpected character {describe(char)}"
    return column, _describe_syntax_error(error, content)


def _describe_syntax_error(error: UnexpectedInput, content: str) -> str:
    if isinstance(error, UnexpectedEOF):
        return "the expression ends too early"
    if isinstance(error, UnexpectedToken):
        if error.token.type == "$END":
            expected = sorted(_TOKEN_NAMES.get(t, t) for t in error.expected)
            return "the expression ends too early; expected " + _one_of(expected)
        return f"unexpected {excerpt(str(error.token.value))!r}"
    return "syntax error"


def _one_of(items) -> str:
    items = list(dict.fromkeys(items))
    return items[0] if len(items) == 1 else "one of " + ", ".join(items)


def parse_expression(text: str, context: str = "") -> sp.Expr:
    """Parse one expression in ``.calc`` notation (``context``: other text fixing densities).

    ``context`` lets ``E_q`` find the variables of ``q`` when the expression
    itself does not apply ``q`` anywhere.
    """
    # the claim's right-hand side on a line of its own, so a comment in ``text`` ends harmlessly
    derivation = parse_text(_with_context(f"{text.strip()}\n = 0", context), "<expression>")
    return derivation.chains[-1].first


def _with_context(line: str, context: str) -> str:
    return (context.strip() + "\n\n" if context.strip() else "") + line


def breaks_claim(side: str) -> bool:
    """True when a claim's side holds a line break or a comment: spliced into a claim's
    line, it would change what the claim says."""
    return any(mark in side for mark in ("\n", "\r", "#"))


def parse_step(lhs: str, relation: str, rhs: str, by=(), context: str = "") -> Step:
    """Parse one claim ``lhs relation rhs`` (for assertion helpers).

    Each side must be one expression: a line break, a comment or a ``by`` inside
    a side would change what the claim says, so they are refused.
    """
    for side in (lhs, rhs):
        if breaks_claim(side):
            raise InputError(f"{side!r}: a side of a claim is one expression on one line, "
                             "without comments", "<claim>")
    line = f"{lhs} {relation} {rhs}"
    if by:
        line += " by " + ", ".join(by)
    step = parse_text(_with_context(line, context), "<claim>").chains[-1].steps[0]
    if step.by != tuple(by):
        raise InputError(f"{rhs!r} names rules; pass them as by=[...]", "<claim>")
    return step


# ---------------------------------------------------------------------------
# trees to notation
# ---------------------------------------------------------------------------

#: A run of one operation: the SymPy node it builds and the tree kinds it continues through.
_RUNS = {"add": (sp.Add, ("add", "sub")), "sub": (sp.Add, ("add", "sub")),
         "mul": (sp.Mul, ("mul", "div")), "div": (sp.Mul, ("mul", "div"))}


def _reciprocal(expr: sp.Expr) -> sp.Expr:
    return sp.Pow(expr, -1, evaluate=False)


def _split_density_name(name: str) -> tuple[str, tuple[str, ...]]:
    """``q_phi`` is the density q with parameter phi; ``p_1`` is just a name."""
    base, _, sub = name.partition("_")
    if not sub or not base or sub[0].isdigit():
        return name, ()
    return base, (sub,)


class _Builder:
    """Turns line trees into notation; knows every density's variables in the file."""

    def __init__(self, path, trees):
        self.path = path
        self.density_vars: dict[str, set] = {}
        self.density_names: set[str] = set()
        self.variable_names: set[str] = set()
        self.parameter_names: set[str] = set()   # phi of q_phi
        self.summed_names: set[str] = set()      # Z of sum_Z[...]
        self.functions: dict[str, Definition] = {}    # names a define: ... = ... gives
        self.defined_densities: dict[str, Definition] = {}   # names a define: ... propto_{..} gives
        self.assumed: set[str] = set()            # density keys an assume: header factorises
        self._allowed_const = None                # the one const node a side may end in
        for tree in trees:
            for node in tree.iter_subtrees():
                if node.data == "density":
                    self._collect_density(node)
                elif node.data in ("operator", "operator_braced"):
                    self._collect_sum(node)

    # -- errors ----------------------------------------------------------------
    def error(self, message, node, lineno) -> InputError:
        column = None
        if isinstance(node, Token):
            column = node.column
        elif isinstance(node, Tree) and getattr(node.meta, "column", None) is not None:
            column = node.meta.column
        return InputError(message, self.path, lineno, column)

    # -- first pass ------------------------------------------------------------
    def _collect_density(self, node: Tree):
        name_token, *groups = node.children
        names = [str(tok) for group in groups for tok in group.children]
        self.density_names.add(str(name_token))
        self.density_vars.setdefault(str(name_token), set()).update(names)
        self.variable_names.update(names)
        self.parameter_names.update(_split_density_name(str(name_token))[1])

    def _collect_sum(self, node: Tree):
        head = str(node.children[0])
        if node.data == "operator" and head.startswith("sum_"):
            self.summed_names.add(head[len("sum_"):])
        elif node.data == "operator_braced" and head == "sum_":
            sub = node.children[1]
            if isinstance(sub, Tree) and sub.data == "subscript_name":
                self.summed_names.add(str(sub.children[0]))

    # -- chains ------------------------------------------------------------------
    def chain(self, lines) -> Chain:
        first_lineno, first_tree = lines[0]
        first = self.side(first_tree.children[0], first_lineno)
        links = []   # (rel node, rhs, just, lineno)
        if len(first_tree.children) > 1:  # one-line claim
            rel, rhs_tree, *just = first_tree.children[1:]
            links.append((rel, self.side(rhs_tree, first_lineno), just, first_lineno))
        for lineno, tree in lines[1:]:
            rel, rhs_tree, *just = tree.children
            links.append((rel, self.side(rhs_tree, lineno), just, lineno))
        if not links:
            raise InputError("a chain needs at least one step (a line starting with a relation)",
                             self.path, first_lineno, 1)
        steps, lhs, places = [], first, []
        reading = _ChainReading(self)
        for rel, rhs, just, lineno in links:
            symbol, column, constant_in = reading.step(rel, lhs, rhs, lineno)
            places.append((symbol, lineno, column))
            steps.append(Step(lhs, symbol, rhs, self.rules(just, lineno), lineno, column, constant_in))
            lhs = rhs
        check_chain_relations(places, self.path)
        return Chain(first, tuple(steps), first_lineno)

    def side(self, tree, lineno) -> sp.Expr:
        """One side of a step: an expression that may end in ``+ const_{...}``."""
        self._allowed_const = None
        if isinstance(tree, Tree) and tree.data == "const":
            self._allowed_const = tree
        elif isinstance(tree, Tree) and tree.data == "add" and isinstance(tree.children[1], Tree) \
                and tree.children[1].data == "const":
            self._allowed_const = tree.children[1]
        elif isinstance(tree, Tree) and tree.data == "sub" and isinstance(tree.children[1], Tree) \
                and tree.children[1].data == "const":
            # a constant has no sign of its own: - const_{V} is + const_{V}
            raise self.error("write + const_{...}, not - const_{...}: a term constant in the "
                             "variables may have either sign", tree.children[1], lineno)
        try:
            return self.expr(tree, lineno)
        finally:
            self._allowed_const = None

    # -- headers: assume and define --------------------------------------------
    def hypotheses(self, entries) -> Hypotheses:
        """The assume: and define: headers, in order, each checked against those before it."""
        factorisations, definitions = [], []
        used_so_far: dict[str, int] = {}   # density names met in earlier headers -> line
        for kind, lineno, tree, text in entries:
            if tree.data != "expr_line" or len(tree.children) < 2:
                raise self.error(f"{kind}: needs a claim, as in "
                                 + ("q(Z1, Z2) = q1(Z1) * q2(Z2)" if kind == "assume" else
                                    "qstar(Z1) propto_{Z1} exp(E_{q2(Z2)}[log p(X, Z1, Z2)])"),
                                 tree, lineno)
            head_tree, rel, body_tree, *just = tree.children
            if just:
                raise self.error(f"{kind}: a header takes no 'by'", just[0], lineno)
            if kind == "assume":
                factorisations.append(self.factorisation(head_tree, rel, body_tree, lineno, text))
            else:
                definitions.append(self.definition(head_tree, rel, body_tree, lineno, text, used_so_far))
            for node in tree.iter_subtrees():
                if node.data == "density":
                    used_so_far.setdefault(str(node.children[0]), lineno)
        return Hypotheses(tuple(factorisations), tuple(definitions))

    def factorisation(self, head_tree, rel, body_tree, lineno, text) -> Factorisation:
        if isinstance(rel, Tree) or str(rel) != "=":
            raise self.error("assume: states a factorisation with '='", rel, lineno)
        if not (isinstance(head_tree, Tree) and head_tree.data == "density"):
            raise self.error("assume: the left side must be one density, as in q(Z1, Z2)",
                             head_tree, lineno)
        left = self.density(head_tree, lineno)
        if left.name in self.defined_densities:
            raise self.error(f"'{left.name}' is defined by a define: header (line "
                             f"{self.defined_densities[left.name].line}); an assume: header cannot "
                             "also factorise it", head_tree.children[0], lineno)
        factor_trees = _product_operands(body_tree)
        if factor_trees is None or not all(t.data == "density" for t in factor_trees):
            raise self.error("assume: the right side must be a product of densities, as in "
                             "q1(Z1) * q2(Z2)", body_tree, lineno)
        factors = tuple(self.density(t, lineno) for t in factor_trees)
        if left.key in self.assumed:
            raise self.error(f"{left.name} is factorised by two assume: headers", head_tree, lineno)
        applied = {name: set(vs) for name, vs in self.density_vars.items()}
        problem = factorisation_problem(left, factors, applied)
        if problem is not None:
            index, message = problem
            where = head_tree if index < 0 else factor_trees[index]
            raise self.error(f"assume: not a directed factorisation: {message}", where, lineno)
        self.assumed.add(left.key)
        return Factorisation(left, factors, text, lineno)

    def definition(self, head_tree, rel, body_tree, lineno, text, used_so_far) -> Definition:
        if not (isinstance(head_tree, Tree) and head_tree.data == "density") or len(head_tree.children) > 2:
            raise self.error("define: the left side must be a name applied to variables, as in "
                             "qstar(Z1)", head_tree, lineno)
        name_token = head_tree.children[0]
        name = str(name_token)
        if name in self.functions or name in self.defined_densities:
            raise self.error(f"'{name}' is defined twice", name_token, lineno)
        if name in used_so_far:
            raise self.error(f"'{name}' is used before its definition (line {used_so_far[name]})",
                             name_token, lineno)
        if name in self.assumed or any(name == key for key in self.assumed):
            raise self.error(f"'{name}' is defined and also used as a free density in an assume: header",
                             name_token, lineno)
        if _split_density_name(name)[1]:
            raise self.error(f"'{name}': a defined name takes no parameter subscript", name_token, lineno)
        if name in _RESERVED:
            raise self.error(f"'{name}' is reserved and cannot be defined", name_token, lineno)
        variables = [variable(str(tok)) for tok in head_tree.children[1].children]
        if len({v.name for v in variables}) != len(variables):
            raise self.error(f"a variable appears twice in {name}(...)", head_tree, lineno)
        itself = next((node for node in body_tree.iter_subtrees_topdown()
                       if node.data == "density" and str(node.children[0]) == name), None) \
            if isinstance(body_tree, Tree) else None
        if itself is not None:
            raise self.error(f"'{name}' is used in its own definition", itself, lineno)
        body = self.expr(body_tree, lineno)
        if isinstance(rel, Tree):   # propto_{...}: a normalised density
            over = [str(tok) for tok in rel.children[1].children]
            if sorted(over) != sorted(v.name for v in variables):
                raise self.error(f"define: {name} is normalised over its own variables: write "
                                 f"propto_{{{', '.join(v.name for v in variables)}}}", rel, lineno)
            if not known_positive(sp.sympify(body)):
                raise self.error("define: the right side of a density defined by propto must be "
                                 "positive by its form (exp(...), a density, a product of such)",
                                 body_tree, lineno)
            definition = Definition(Density(name, variables, evaluate=False), body, True, text, lineno)
            self.defined_densities[name] = definition
            return definition
        if str(rel) != "=":
            raise self.error("define: uses '=' (a function) or propto_{...} (a normalised density)",
                             rel, lineno)
        definition = Definition(Defined(name, variables, body), body, False, text, lineno)
        self.functions[name] = definition
        return definition

    def applied_function(self, node: Tree, lineno) -> sp.Expr:
        """``ptilde(X, Z1)`` for a name a ``define: ... = ...`` header gives."""
        name_token, *groups = node.children
        definition = self.functions[str(name_token)]
        if len(groups) > 1:
            raise self.error(f"{name_token} is a function of {len(definition.variables)} "
                             "variable(s); it takes no '|'", node, lineno)
        actual = [variable(str(tok)) for tok in groups[0].children]
        if len(actual) != len(definition.variables):
            raise self.error(f"{name_token} is defined on {len(definition.variables)} variable(s) "
                             f"({', '.join(v.name for v in definition.variables)}), not {len(actual)}",
                             node, lineno)
        body = definition.body
        if tuple(actual) != definition.variables:
            self._check_renaming(definition, actual, node, lineno)
            body = renamed(body, dict(zip(definition.variables, actual)))
        return Defined(str(name_token), actual, body)

    def _check_renaming(self, definition: Definition, actual, node, lineno) -> None:
        """A definition applied to other variables than its own: refused where a new
        name is one its body sums or averages over (it would be captured), or where
        the body cannot be renamed."""
        written = f"{definition.name}({', '.join(v.name for v in actual)})"
        bound = bound_variables(definition.body)
        new_names = [new for old, new in zip(definition.variables, actual) if old != new]
        captured = sorted(v.name for v in set(new_names) & bound)
        if captured:
            raise self.error(f"{written}: {captured[0]} is summed or averaged over inside the "
                             f"definition of {definition.name} (line {definition.line}); apply it "
                             "to another variable", node, lineno)
        try:
            renamed(definition.body, dict(zip(definition.variables, actual)))
        except Captured as why:
            raise self.error(f"{written}: {why} (the definition of {definition.name}, line "
                             f"{definition.line}); apply it to other variables", node, lineno) from None

    def rules(self, just, lineno) -> tuple[str, ...]:
        from symelbo.core.rules import RULES  # the registry is the one place that knows rule names
        if not just:
            return ()
        names = []
        for node in just[0].children:
            token = node.children[0]
            if str(token) not in RULES:
                raise self.error(f"unknown rule '{token}'{did_you_mean(str(token), RULES)} "
                                 "(`symelbo list` shows the rules)", token, lineno)
            if str(token) in names:
                raise self.error(f"the rule '{token}' is named twice", token, lineno)
            names.append(str(token))
        return tuple(names)

    # -- expressions -------------------------------------------------------------
    def expr(self, node, lineno) -> sp.Expr:
        if isinstance(node, Token):  # pragma: no cover - the grammar wraps every token
            raise self.error(f"unexpected {node!r}", node, lineno)
        kind = node.data
        build = lambda child: self.expr(child, lineno)
        if kind == "number":
            return self.number(node.children[0], lineno)
        if kind == "name":
            return self.name(node.children[0], lineno)
        if kind in _RUNS:
            return self.run(node, lineno)
        if kind == "neg":
            return _negate(build(node.children[0]))
        if kind == "factor":  # unary plus
            return build(node.children[0])
        if kind == "pow":
            return sp.Pow(build(node.children[0]), build(node.children[2]), evaluate=False)
        if kind == "log_density":
            return sp.log(self.applied(node.children[1], lineno), evaluate=False)
        if kind == "log":
            return sp.log(build(node.children[1]), evaluate=False)
        if kind == "exp":
            return sp.exp(build(node.children[1]), evaluate=False)
        if kind == "abs":
            return sp.Abs(build(node.children[1]), evaluate=False)
        if kind == "sqrt":
            return sp.Pow(build(node.children[1]), sp.Rational(1, 2), evaluate=False)
        if kind == "const":
            return self.const(node, lineno)
        if kind == "kl":
            first = self.density(node.children[1], lineno)
            second = self.density(node.children[2], lineno)
            if set(first.variables) != set(second.variables):
                raise self.error("KL compares two densities over the same variables", node, lineno)
            return KL(first, second)
        if kind == "elbo":
            variational = self.density(node.children[1], lineno)
            joint = self.density(node.children[2], lineno)
            if not set(variational.variables) <= set(joint.variables) or joint.given:
                raise self.error("ELBO(q(Z), p(X, Z)) needs a joint density over q's variables",
                                 node, lineno)
            return ELBO(variational, joint)
        if kind == "density":
            return self.applied(node, lineno)
        if kind in ("operator", "operator_braced"):
            return self.operator(node, lineno)
        raise self.error(f"unsupported expression '{kind}'", node, lineno)  # pragma: no cover

    def run(self, node: Tree, lineno) -> sp.Expr:
        """A run ``a + b - c`` (or ``a * b / c``) as one flat node, read without recursion.

        The grammar is left-recursive, so a sum of n terms is a left spine n
        nodes deep; walking the spine in a loop keeps a long flat sum flat.
        """
        op, kinds = _RUNS[node.data]
        operands = []
        while isinstance(node, Tree) and node.data in kinds:
            right = self.expr(node.children[1], lineno)
            operands.append(_INVERSE[node.data](right))
            node = node.children[0]
        first = self.expr(node, lineno)
        operands.extend(reversed(first.args) if isinstance(first, op) else (first,))
        return op(*reversed(operands), evaluate=False)

    def number(self, token: Token, lineno) -> sp.Rational:
        """An exact rational from a literal; absurdly long or large literals are refused."""
        text = str(token)
        mantissa, _, exponent = text.lower().partition("e")
        if len(mantissa) > _MAX_DIGITS or (exponent and abs(int(exponent)) > _MAX_EXPONENT):
            raise self.error(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is too long "
                             f"(at most {_MAX_DIGITS} digits and an exponent within "
                             f"±{_MAX_EXPONENT}; write 10^k for larger powers)", token, lineno)
        value = Fraction(text)
        return sp.Rational(value.numerator, value.denominator)

    def name(self, token: Token, lineno) -> sp.Symbol:
        text = str(token)
        if text in self.functions:
            written = ", ".join(v.name for v in self.functions[text].variables)
            raise self.error(f"'{text}' is a function defined with '='; apply it to its variables, "
                             f"as in {text}({written})", token, lineno)
        if text in self.density_names:
            raise self.error(f"'{text}' is a density; apply it to variables, as in {text}(Z)",
                             token, lineno)
        if text == "const":
            raise self.error("write const_{Z1}: say what the term is constant in (variables or "
                             "densities)", token, lineno)
        if text == "propto":
            raise self.error("write propto_{Z1} at the start of a step: say in which variables the "
                             "ratio is constant", token, lineno)
        if text in _RESERVED:
            raise self.error(f"'{text}' needs an argument", token, lineno)
        if text in self.variable_names:
            return variable(text)
        return parameter(text)

    def applied(self, node: Tree, lineno) -> sp.Expr:
        """A name applied to variables where a value stands: a density or a defined function."""
        if str(node.children[0]) in self.functions:
            return self.applied_function(node, lineno)
        return self.density(node, lineno)

    def const(self, node: Tree, lineno) -> Const:
        names = [str(tok) for tok in node.children[1].children]
        if node is not self._allowed_const:
            raise self.error("const_{...} may only be the last term of a side, after a '+' "
                             "(as in log q(Z1) = E_{q2(Z2)}[log p(X, Z1, Z2)] + const_{Z1})",
                             node, lineno)
        for name in names:
            if name not in self.variable_names and name not in self.density_names:
                raise self.error(f"const_{{{name}}}: '{name}' is neither a variable nor a density "
                                 "of this file", node, lineno)
        if len(set(names)) != len(names):
            raise self.error("const_{...} names a variable twice", node, lineno)
        return Const(names)

    def density(self, node: Tree, lineno, evaluate=False) -> Density:
        name_token, *groups = node.children
        name = str(name_token)
        if name in self.functions:
            raise self.error(f"'{name}' is a function defined with '='; only a density defined "
                             f"with propto_{{...}} may stand where a density must (KL, H, E_{{...}}, "
                             "ELBO, assume:)", name_token, lineno)
        if name in _RESERVED:
            raise self.error(f"'{name}' is reserved and cannot name a density", name_token, lineno)
        if name in _FOREIGN_FUNCTIONS:
            raise self.error(_FOREIGN_FUNCTIONS[name], name_token, lineno)
        variables = [variable(str(tok)) for tok in groups[0].children]
        given = [variable(str(tok)) for tok in groups[1].children] if len(groups) > 1 else []
        all_names = [v.name for v in variables + given]
        duplicate = next((n for n in all_names if all_names.count(n) > 1), None)
        if duplicate:
            raise self.error(f"the variable '{duplicate}' appears twice in {name}(...)",
                             node, lineno)
        base, params = _split_density_name(name)
        clash = [p for p in params if p in self.variable_names]
        if clash:
            raise self.error(f"'{clash[0]}' is a random variable and cannot be the parameter of {name}",
                             name_token, lineno)
        definition = self.defined_densities.get(name)
        if definition is not None and (given or len(variables) != len(definition.variables)):
            raise self.error(f"{name} is a density over {len(definition.variables)} variable(s) "
                             f"({', '.join(v.name for v in definition.variables)}), defined with "
                             "propto: apply it to as many, with no '|'", node, lineno)
        if definition is not None and tuple(variables) != definition.variables:
            self._check_renaming(definition, variables, node, lineno)
        return Density(base, variables, given, [parameter(p) for p in params], evaluate=evaluate)

    def full_density(self, name: str, token, lineno) -> Density:
        """The density ``name`` over every variable it is applied to in the file."""
        if name in self.functions:
            raise self.error(f"E_{name}: '{name}' is a function defined with '='; only a density "
                             "defined with propto_{...} may stand where a density must (KL, H, "
                             "E_{...}, ELBO, assume:)", token, lineno)
        if name not in self.density_vars:
            raise self.error(f"E_{name}: the density '{name}' is never applied to variables "
                             f"in this file, so its variables are unknown; write E_{{{name}(Z)}}",
                             token, lineno)
        base, params = _split_density_name(name)
        return Density(base, [variable(v) for v in sorted(self.density_vars[name])], (),
                       [parameter(p) for p in params])

    def operator(self, node: Tree, lineno) -> sp.Expr:
        head_token = node.children[0]
        head = str(head_token)
        body_tree = node.children[-1]
        if node.data == "operator_braced":
            if not head.endswith("_"):
                raise self.error(f"'{head}{{...}}' is not an operator; use E_{{q}}, sum_{{Z}} or "
                                 "grad_{phi}", head_token, lineno)
            op, sub_node = head[:-1], node.children[1]
        else:
            if head == "H":
                return self.entropy(node, lineno)
            op, _, sub = head.partition("_")
            sub_node = None
            if not sub:
                raise self.error(f"'{head}[...]' is not an operator; use E_q[...], sum_Z[...], "
                                 "grad_phi[...] or H[q(Z)]", head_token, lineno)
        if op not in _OPERATORS:
            raise self.error(f"'{op}' is not an operator; use E_q[...], sum_Z[...], "
                             "grad_phi[...] or H[q(Z)]", head_token, lineno)
        kind = _OPERATORS[op]
        body = self.expr(body_tree, lineno)
        if sub_node is None:
            sub_name = head.partition("_")[2]
            if kind == "expectation":
                return Expectation(self.full_density(sub_name, head_token, lineno), body)
            return self.bound_operator(kind, sub_name, head_token, body, lineno)
        if isinstance(sub_node, Tree) and sub_node.data == "density":
            if kind != "expectation":
                raise self.error(f"{op}_{{...}} takes a name, not a density", sub_node, lineno)
            written = self.density(sub_node, lineno, evaluate=True)
            # version 2: the expectation averages over the variables written, and no others
            full = set(self.density_vars.get(str(sub_node.children[0]), ()))
            if not written.given and full - {v.name for v in written.variables} and not self._v2:
                self._warn_reading(written, full, sub_node, lineno)
            return Expectation(written, body)
        sub_token = sub_node.children[0]
        if kind == "expectation":
            return Expectation(self.full_density(str(sub_token), sub_token, lineno), body)
        return self.bound_operator(kind, str(sub_token), sub_token, body, lineno)

    @property
    def _v2(self) -> bool:
        """A file with assume: or define: headers is written in version 2 of the language."""
        return bool(self.functions or self.defined_densities or self.assumed)

    def _warn_reading(self, written: Density, full: set, node, lineno) -> None:
        located = self.error(
            f"warning: E_{{{written}}} averages over {', '.join(v.name for v in written.variables)} "
            f"only; {written.name} is also applied to {', '.join(sorted(full - {v.name for v in written.variables}))}, "
            f"and before version 2 this expectation was over all of them (write E_{written.name}[...] "
            "for that)", node, lineno)
        warnings.warn(ReadingWarning(str(located)), stacklevel=2)

    def bound_operator(self, kind, name, token, body, lineno):
        if kind == "marginal":
            if name in self.density_names:
                raise self.error(f"sum_{name}: '{name}' is a density, not a variable", token, lineno)
            if name in self.parameter_names:
                raise self.error(f"sum_{name}: '{name}' is a parameter (as in q_{name}), not a "
                                 "variable to sum over", token, lineno)
            return Marginal(variable(name), body)
        if name in self.variable_names or name in self.summed_names:
            raise self.error(f"grad_{name}: '{name}' is a random variable; gradients are taken "
                             "with respect to parameters such as phi in q_phi", token, lineno)
        return Gradient(parameter(name), body)

    def entropy(self, node, lineno) -> Entropy:
        body = node.children[-1]
        if not (isinstance(body, Tree) and body.data == "density"):
            raise self.error("H[...] takes a density, as in H[q(Z)]", node, lineno)
        return Entropy(self.density(body, lineno))


class _ChainReading:
    """What each step of a chain claims: its relation, and what it holds up to.

    ``+ const_{V}`` on either side makes an ``=`` step hold up to a term constant in V,
    and every later ``=`` step of the chain keeps that reading; ``propto_{V}`` steps
    compose with ``=``. Mixing either with an inequality, or the two with each
    other, or two different V, is an input error.
    """

    def __init__(self, builder: "_Builder"):
        self.builder = builder
        self.constant: tuple[str, ...] = ()
        self.propto: tuple[str, ...] = ()
        self.inequality = False

    def step(self, rel, lhs, rhs, lineno) -> tuple[str, int, tuple]:
        error = lambda message: self.builder.error(message, rel, lineno)
        names = tuple(sorted(set(split_const(lhs)[1]) | set(split_const(rhs)[1])))
        if isinstance(rel, Tree):   # propto_{...}
            over = tuple(sorted(str(tok) for tok in rel.children[1].children))
            column = rel.children[0].column
            for name in over:
                if name not in self.builder.variable_names:
                    raise error(f"propto_{{{name}}}: '{name}' is not a variable of this file")
            if self.inequality:
                raise error("propto cannot be mixed with an inequality in one chain")
            if names or self.constant:
                raise error("propto and + const cannot be mixed in one chain (divide, or take logs)")
            if self.propto and self.propto != over:
                raise error(f"this chain is proportional in {', '.join(self.propto)}, not "
                            f"{', '.join(over)}")
            self.propto = over
            return "propto", column, over
        symbol, column = str(rel), rel.column
        if symbol != "=":
            if names or self.constant:
                raise error(f"'{symbol}' with + const: a term known only up to a constant has no "
                            "order (const composes with = only)")
            if self.propto:
                raise error(f"'{symbol}' cannot be mixed with propto in one chain")
            self.inequality = True
            return symbol, column, ()
        if names:
            if self.propto:
                raise error("propto and + const cannot be mixed in one chain (divide, or take logs)")
            if self.constant and self.constant != names:
                raise error(f"this chain holds up to a term constant in {', '.join(self.constant)}, "
                            f"not in {', '.join(names)}")
            self.constant = names
        return "=", column, self.constant


def _product_operands(tree):
    """The factors of ``a * b * c`` as trees (a lone factor: itself); None for a quotient."""
    if not isinstance(tree, Tree):
        return None
    if tree.data != "mul":
        return None if tree.data == "div" else [tree]
    operands = []
    while isinstance(tree, Tree) and tree.data in ("mul", "div"):
        if tree.data == "div":
            return None
        operands.append(tree.children[1])
        tree = tree.children[0]
    operands.append(tree)
    return list(reversed(operands))


def _negate(expr: sp.Expr) -> sp.Expr:
    if expr.is_Number:
        return -expr
    return sp.Mul(sp.S.NegativeOne, expr, evaluate=False)


#: How the right operand of each run node enters the run.
_INVERSE = {"add": lambda e: e, "sub": _negate, "mul": lambda e: e, "div": _reciprocal}
