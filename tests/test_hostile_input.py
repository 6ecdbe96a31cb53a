"""Hostile input to the readers: caches, devices, line breaks, look-alike characters, size.

Each test pins one class of attack or accident: no pickle is ever loaded
(lark's cache is replaced by parse tables shipped in the package), nothing
but a regular file is read, lines are counted as editors count them, a
character that looks like another is named, and long flat input is read
while absurd nesting is refused with the real limit.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap

import pytest
from lark import Lark

from symelbo.io import grammars
from symelbo.io.characters import describe
from symelbo.core.errors import InputError
from symelbo.io.parser import MAX_NESTING, parse_file, parse_text
from symelbo.io.userfiles import source_lines
from symelbo.io.userfiles import read_user_bytes

from .conftest import DERIVATIONS, REPO, SHARED_EXAMPLES

MODEL = REPO / "examples" / "beta_bernoulli.toml"


# ---------------------------------------------------------------------------
# 1. no code from caches
# ---------------------------------------------------------------------------

class _Payload:
    """Unpickling this writes a marker file: proof that a planted pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(folder, marker, monkeypatch):
    """Pickle payloads at the exact paths lark's ``cache=True`` reads, and a few more names.

    lark itself is asked to write its cache for each of the package's grammars
    (old and new option sets) into ``folder``; each file is then replaced by a payload.
    """
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    for file, options in grammars.GRAMMARS.values():
        text = (REPO / "symelbo" / "io" / file).read_text(encoding="utf-8")
        Lark(text, cache=True, **options)
    planted = sorted(folder.glob(".lark_*"))
    assert len(planted) >= 2
    payload = pickle.dumps(_Payload(marker))
    for path in [*planted, folder / "symelbo.pickle", folder / "symelbo-cache.pkl"]:
        path.write_bytes(payload)


_AUDIT = textwrap.dedent("""
    import sys, json
    events = []
    def hook(event, args):
        if event == "pickle.find_class":
            events.append(["pickle", str(args[0]), str(args[1])])
        elif event == "open" and isinstance(args[0], str):
            events.append(["open", args[0]])
    sys.addaudithook(hook)
    from symelbo.cli.commands import main
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
    sys.__stderr__.write("AUDIT" + json.dumps(events) + "\\n")
""")


@pytest.mark.parametrize("argv", [
    ["check", str(DERIVATIONS / "jensen.calc")],
    ["model", str(MODEL)],
    ["derive", "gradient", "--json"],
    ["list"],
])
def test_no_pickle_is_loaded_and_no_file_is_read_from_shared_folders(tmp_path, argv, monkeypatch):
    shared = tmp_path / "tmp"
    shared.mkdir()
    marker = tmp_path / "PAYLOAD-RAN"
    _plant(shared, marker, monkeypatch)
    env = dict(os.environ, TMPDIR=str(shared), TEMP=str(shared), TMP=str(shared),
               HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(shared), MPLCONFIGDIR=str(shared))
    run = subprocess.run([sys.executable, "-c", _AUDIT, *argv], capture_output=True, text=True,
                         env=env, timeout=300)
    assert not marker.exists()
    line = next(l for l in run.stderr.splitlines() if l.startswith("AUDIT"))
    events = json.loads(line[len("AUDIT"):])
    assert [e for e in events if e[0] == "pickle"] == []
    opened = {e[1] for e in events if e[0] == "open"}
    assert [p for p in opened if p.startswith(str(shared)) or p.startswith(str(tmp_path))] == []


def test_parse_tables_are_fresh_and_parse_as_the_grammars_do():
    assert grammars.stale() == []
    fresh = {name: Lark((REPO / "symelbo" / "io" / file).read_text(encoding="utf-8"), **options)
             for name, (file, options) in grammars.GRAMMARS.items()}
    lines = [line.split("#")[0] for folder in (DERIVATIONS, SHARED_EXAMPLES) if folder.is_dir()
             for path in sorted(folder.glob("*.calc"))
             for line in path.read_text(encoding="utf-8").split("\n")]
    lines = [line for line in lines if line.strip() and ":" not in line]
    assert len(lines) > 30
    for line in lines:
        assert grammars.load_parser("calc_line").parse(line) == fresh["calc_line"].parse(line)
    for text in ("Normal(mu0, 1/sqrt(lambda0*tau))", "Gamma(a + 1, b ** 2)", "Beta(1, 2)"):
        assert grammars.load_parser("model_dist").parse(text) == fresh["model_dist"].parse(text)
    assert grammars.load_parser("model_expr").parse("-a^2/3") == fresh["model_expr"].parse("-a^2/3")


def test_a_stale_table_is_not_used(monkeypatch):
    monkeypatch.setitem(grammars.GRAMMARS, "calc_line",
                        ("grammar.lark", {**grammars.GRAMMARS["calc_line"][1], "debug": False}))
    grammars.load_parser.cache_clear()
    try:
        assert grammars.stale() == ["calc_line"]
        assert grammars.load_parser("calc_line").parse("p(X) = 1").data == "expr_line"
    finally:
        grammars.load_parser.cache_clear()


# ---------------------------------------------------------------------------
# 3. devices, FIFOs, directories, size
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["check", "model"])
@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"),
                                        ("/dev/null", "a character device"),
                                        ("/", "a directory")])
def test_devices_and_directories_are_refused_at_once(command, path, kind):
    run = subprocess.run([sys.executable, "-m", "symelbo", command, path], capture_output=True,
                         text=True, timeout=60)
    what = {"check": "file", "model": "model file"}[command]
    assert run.returncode == 2
    assert run.stderr == f"symelbo: {path}: not a regular file ({kind}); give a {what}\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.calc"
    os.mkfifo(fifo)
    run = subprocess.run([sys.executable, "-m", "symelbo", "check", str(fifo)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.endswith("pipe.calc: not a regular file (a FIFO); give a file\n")


def test_a_file_over_the_cap_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.calc"
    with open(big, "wb") as handle:
        handle.truncate(60 * 1024 * 1024)  # sparse: costs no disk
    with pytest.raises(InputError, match=r"big.calc: the file is 62,914,560 bytes, over the limit "
                                         r"of 52,428,800 bytes"):
        parse_file(big)
    with pytest.raises(InputError, match="over the limit of 10 bytes"):
        read_user_bytes(DERIVATIONS / "jensen.calc", limit=10)


# ---------------------------------------------------------------------------
# 9. lines and characters
# ---------------------------------------------------------------------------

def test_lines_split_at_line_feeds_only():
    assert source_lines("a\fb\u2028c\r\nd\n") == ["a\fb\u2028c", "d", ""]
    text = "# a comment\u2028 p(X) = 2\fstill comment\n\nlog p(X)\r\n = log p(X)\n"
    derivation = parse_text(text, "f.calc")
    assert len(derivation.chains) == 1
    assert derivation.chains[0].steps[0].line == 4


def test_a_form_feed_in_an_expression_is_named():
    with pytest.raises(InputError) as info:
        parse_text("p(X)\f = p(X)\n", "f.calc")
    assert str(info.value) == "f.calc:1:5: unexpected character U+000C FORM FEED"


@pytest.mark.parametrize("text, message", [
    ("log \u0440(X) = 1\n", "f.calc:1:5: unexpected character U+0440 CYRILLIC SMALL LETTER ER, "
                            "which looks like 'p'"),
    ("p(X) \u2264 1\n", "f.calc:1:6: unexpected character U+2264 LESS-THAN OR EQUAL TO, "
                        "which looks like '<='; write <= (the .calc notation is ASCII)"),
    ("p(X) = 1 \u2212 p(X)\n", "f.calc:1:10: unexpected character U+2212 MINUS SIGN, "
                               "which looks like '-'"),
    ("p(X)\u00a0= 1\n", "f.calc:1:5: unexpected character U+00A0 NO-BREAK SPACE, "
                        "which looks like a space"),
    ("p(X) = 1\u200b\n", "f.calc:1:9: unexpected character U+200B ZERO WIDTH SPACE, "
                         "which looks like nothing (a zero-width space)"),
    ("p(X) = \x1b[31m1\n", "f.calc:1:8: unexpected character U+001B ESCAPE"),
    ("p(X) = @\n", "f.calc:1:8: unexpected character '@'"),
])
def test_a_confusable_character_is_named_by_code_point(text, message):
    with pytest.raises(InputError) as info:
        parse_text(text, "f.calc")
    assert str(info.value) == message


def test_describe_handles_every_kind_of_character():
    assert describe("\uff08") == "U+FF08 FULLWIDTH LEFT PARENTHESIS, which looks like '('"
    assert describe("\u4e2d") == "U+4E2D CJK UNIFIED IDEOGRAPH-4E2D"
    assert describe("") == "the end of the line"


# ---------------------------------------------------------------------------
# 8, 14. size of what is echoed; long flat input; deep input
# ---------------------------------------------------------------------------

def test_a_huge_token_is_not_echoed_whole():
    token = "x" * 90_000
    with pytest.raises(InputError) as info:
        parse_text(f"p(X) = 1 {token}\n", "f.calc")
    assert len(str(info.value)) < 120
    assert str(info.value).startswith("f.calc:1:10: unexpected 'xxxx")


def test_a_long_flat_sum_is_read_as_one_flat_node():
    text = " + ".join(["p(X)"] * 8000) + " = 8000 * p(X)\n"
    step = parse_text(text, "f.calc").chains[0].steps[0]
    assert len(step.lhs.args) == 8000
    product = parse_text(" * ".join(["q(Z)"] * 3000) + " / p(X) = 1\n", "f.calc").chains[0].steps[0]
    assert len(product.lhs.args) == 3001


def test_runs_keep_their_written_order_and_grouping():
    step = parse_text("(a + b) - c + (d + e) = a * b / c * d\n", "f.calc").chains[0].steps[0]
    assert str(step.lhs) == "a + b - c + (d + e)"
    assert len(step.lhs.args) == 4
    assert len(step.rhs.args) == 4


def test_nesting_beyond_the_limit_is_refused_with_the_limit():
    assert MAX_NESTING == 1000
    deep = "-(" * 1200 + "p(X)" + ")" * 1200
    with pytest.raises(InputError) as info:
        parse_text(f"{deep} = p(X)\n", "f.calc")
    assert str(info.value) == ("f.calc:1:1: the expression is nested more than 1000 levels deep "
                               "(parentheses, powers, operators); a long flat sum or product has "
                               "no such limit")
    shallow = "-(" * 900 + "p(X)" + ")" * 900
    assert parse_text(f"{shallow} = p(X)\n", "f.calc").chains[0].steps[0].line == 1


def test_a_resolved_data_path_is_opened_without_following_any_link(tmp_path):
    inside = tmp_path / "model"
    inside.mkdir()
    (inside / "x.csv").write_text("1\n2\n", encoding="utf-8")
    secret = tmp_path / "secret.csv"
    secret.write_text("hunter2\n", encoding="utf-8")
    real = (inside / "x.csv").resolve()
    assert read_user_bytes(real, resolved=True) == b"1\n2\n"
    # the checked name swapped for a link after the check: the open follows no link
    (inside / "x.csv").unlink()
    (inside / "x.csv").symlink_to(secret)
    with pytest.raises(InputError, match="cannot read the data file"):
        read_user_bytes(real, what="data file", resolved=True)
    # a folder on the way swapped for a link: the descriptor does not lead to the checked path
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "y.csv").write_text("3\n", encoding="utf-8")
    link = tmp_path / "hop"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="moved while it was opened"):
        read_user_bytes(link / "y.csv", what="data file", resolved=True)


def test_a_line_or_a_file_past_what_can_be_checked_is_refused_with_the_limit():
    with pytest.raises(InputError) as info:
        parse_text(" + ".join(["p(X)"] * 30_000) + " = 30000 * p(X)\n", "f.calc")
    assert str(info.value) == ("f.calc:1:100001: the line is 210,012 characters long; at most "
                               "100,000 are read (a formula longer than that would take minutes "
                               "to check)")
    with pytest.raises(InputError) as info:
        parse_text("\n\n".join(["log p(X) = log p(X)"] * 2001) + "\n", "f.calc")
    assert str(info.value) == ("f.calc:4001:1: the file holds 2,001 lines of derivation; at most "
                               "2,000 are checked in one file (split it)")


def test_python_m_does_not_import_modules_from_the_current_folder(tmp_path):
    marker = tmp_path / "RAN"
    (tmp_path / "sympy.py").write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    (tmp_path / "a.calc").write_text("log p(X) = log p(X)\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "symelbo", "check", "a.calc"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert not marker.exists()


def test_a_certificate_file_cannot_send_replay_outside_its_folder(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.calc").write_text("log p(X) = log p(X) by TOPSECRET\n",
                                                      encoding="utf-8")
    (tmp_path / "in").mkdir()
    record = {"chain": 1, "step": 1, "line": 1, "lhs": "a", "relation": "=", "rhs": "a",
              "certificate": {"kind": "identical"}}
    for source in ("../outside/secret.calc", str(tmp_path / "outside" / "secret.calc"), "/etc/passwd"):
        path = tmp_path / "in" / "c.json"
        path.write_text(json.dumps({"format": "symelbo-certificates/1", "source": source,
                                    "steps": [record]}), encoding="utf-8")
        run = subprocess.run([sys.executable, "-m", "symelbo", "replay", str(path)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2
        assert "TOPSECRET" not in run.stderr + run.stdout and "root:" not in run.stderr
        assert run.stderr.count("\n") == 1
    path.write_text('{"format": "symelbo-certificates/1", "steps": [{"line": ' + "9" * 5000 + "}]}",
                    encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "symelbo", "replay", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr) == (2, f"symelbo: {path}: holds a number too long to read\n")
