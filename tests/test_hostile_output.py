"""Output under hostile conditions: signals, failing writes, control characters, PDFs from odd input.

Each test pins one way the output side once failed: SIGTERM while pdflatex
runs, a full disk or a closed pipe, an escape sequence in a title, a Greek
title, a script-letter variable, a counterexample table too long for TeX.
Tests that run the real pdflatex skip when it is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from symelbo.cli.commands import MAX_MESSAGE_CHARS, main
from symelbo.io.report import terminal_line, terminal_text

SYMELBO = [sys.executable, "-m", "symelbo"]


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def need_pdflatex() -> None:
    if shutil.which("pdflatex") is None:
        if os.environ.get("SYMELBO_REQUIRE_TEX") == "1":
            pytest.fail("pdflatex is not installed but SYMELBO_REQUIRE_TEX=1")
        pytest.skip("pdflatex is not installed")


# ---------------------------------------------------------------------------
# 1. signals, pdflatex's options, failing writes
# ---------------------------------------------------------------------------

FAKE_PDFLATEX = """\
#!/bin/sh
# a pdflatex that records how it was called, starts a helper and never finishes
echo "$@" > "{record}/argv"
sleep 600 &
echo $! > "{record}/helper"
echo $$ > "{record}/pid"
wait
"""


@pytest.fixture
def slow_pdflatex(tmp_path, monkeypatch):
    """A fake pdflatex first on PATH; returns the folder where it leaves argv and its pids."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    fake = bin_dir / "pdflatex"
    fake.write_text(FAKE_PDFLATEX.format(record=record))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(path: Path, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > end:
            pytest.fail(f"{path.name} never appeared")
        time.sleep(0.05)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
@pytest.mark.parametrize("signum, status, words", [
    (signal.SIGTERM, 143, "terminated by SIGTERM"),
    (signal.SIGINT, 130, "interrupted"),
])
def test_a_signal_during_pdflatex_kills_it_and_removes_the_temporary_folder(
        tmp_path, slow_pdflatex, signum, status, words):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.Popen(SYMELBO + ["derive", "jensen", "--pdf", "-o", str(tmp_path / "j.pdf")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(slow_pdflatex / "helper")
        assert list(scratch.iterdir()), "pdflatex runs in a temporary folder"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status
    assert err == f"symelbo: {words}\n" and out == ""
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "j.pdf").exists()
    pids = [int((slow_pdflatex / name).read_text()) for name in ("pid", "helper")]
    end = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), "pdflatex or its helper was left running"


def test_pdflatex_never_runs_shell_commands_and_never_hangs(slow_pdflatex):
    from symelbo.core.errors import SymelboError
    from symelbo.io.pdf import compile_latex
    start = time.monotonic()
    with pytest.raises(SymelboError, match=r"^pdflatex did not finish within 0\.5 s$"):
        compile_latex("\\documentclass{article}\\begin{document}x\\end{document}\n", timeout=0.5)
    assert time.monotonic() - start < 30
    argv = (slow_pdflatex / "argv").read_text().split()
    assert "-no-shell-escape" in argv and "-interaction=nonstopmode" in argv
    assert "-shell-escape" not in argv
    helper = int((slow_pdflatex / "helper").read_text())
    end = time.monotonic() + 10
    while alive(helper) and time.monotonic() < end:
        time.sleep(0.05)
    assert not alive(helper), "the timeout kills pdflatex's whole process group"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_exit_2_with_one_line_naming_the_output():
    with open("/dev/full", "w") as full:
        proc = subprocess.run(SYMELBO + ["derive", "jensen"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr == ("symelbo: <standard output>: cannot write the output "
                           "(No space left on device)\n")


def test_a_closed_pipe_is_exit_2_with_one_line():
    proc = subprocess.Popen(SYMELBO + ["derive", "jensen"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first byte, as with `| head -1` on a long output
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert proc.returncode == 2
    assert err == "symelbo: <standard output>: cannot write the output (Broken pipe)\n"


def test_output_into_a_folder_or_an_unwritable_place_is_exit_2(tmp_path, capsys):
    status, out, err = run(capsys, "derive", "jensen", "-o", str(tmp_path))
    assert status == 2 and out == ""
    assert err == f"symelbo: {tmp_path}: cannot write the output (Is a directory)\n"
    missing = tmp_path / "no" / "such" / "x.txt"
    status, _, err = run(capsys, "derive", "jensen", "-o", str(missing))
    assert status == 2
    assert err == f"symelbo: {missing}: cannot write the output (No such file or directory)\n"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            status, _, err = run(capsys, "derive", "jensen", "-o", str(locked / "x.txt"))
        finally:
            locked.chmod(0o700)
        assert status == 2 and err == (f"symelbo: {locked / 'x.txt'}: cannot write the output "
                                       "(Permission denied)\n")


def test_a_pdf_into_a_folder_is_exit_2(tmp_path, capsys):
    need_pdflatex()
    status, _, err = run(capsys, "derive", "jensen", "--pdf", "-o", str(tmp_path))
    assert status == 2
    assert err == f"symelbo: {tmp_path}: cannot write the PDF (Is a directory)\n"


# ---------------------------------------------------------------------------
# 2. what reaches the terminal
# ---------------------------------------------------------------------------

CONTROLS = "\x1b]0;pwn\x07 \x1b[31mred\x1b[0m \r over \u202eevil \x9b1m \x7f\u2066x\u2069"
CONTROLS_SHOWN = ("\\u001b]0;pwn\\u0007 \\u001b[31mred\\u001b[0m \\u000d over \\u202eevil "
                  "\\u009b1m \\u007f\\u2066x\\u2069")


def is_safe(text: str) -> bool:
    return all(ch == "\n" or ch.isprintable() for ch in text)


def test_terminal_text_escapes_controls_and_keeps_line_breaks():
    assert terminal_text(CONTROLS) == CONTROLS_SHOWN
    assert terminal_text("Ελληνικά 中文\nnext") == "Ελληνικά 中文\nnext"
    assert terminal_text("\U000e0001") == "\\udb40\\udc01"  # beyond the BMP: a valid JSON escape
    assert terminal_line("a\nb\tc") == "a\\nb\\u0009c"
    assert terminal_line("x" * 1000, 50) == "x" * 49 + "\u2026"


@pytest.fixture
def control_title(tmp_path):
    path = tmp_path / "evil.calc"
    path.write_text(f"title: {CONTROLS}\n\nlog p(X) = log p(X)\n", encoding="utf-8")
    return path


def test_a_title_with_controls_prints_escaped_in_every_format(capsys, control_title):
    status, out, _ = run(capsys, "check", str(control_title))
    assert status == 0 and is_safe(out)
    assert out.splitlines()[0] == f"{CONTROLS_SHOWN}  (evil.calc)"
    for fmt in ("json", "markdown", "latex"):
        status, out, _ = run(capsys, "check", str(control_title), "--format", fmt)
        assert status == 0 and is_safe(out), fmt
    status, out, _ = run(capsys, "check", str(control_title), "--json")
    assert json.loads(out)["verdict"] == "proved"  # escaped, the JSON still parses


def test_a_model_name_with_controls_prints_escaped(tmp_path, capsys):
    model = tmp_path / "m.toml"
    name = CONTROLS.replace("\\", "")
    model.write_text(textwrap.dedent(f"""\
        name = {json.dumps(name)}
        [latent]
        theta = "Beta(2, 2)"
        [observed]
        x = {{ dist = "Bernoulli(theta)", data = [1, 0, 1] }}
        [variational]
        theta = "Beta(alpha, beta)"
        [values]
        alpha = 3
        beta = 2
        """), encoding="utf-8")
    for argv in (["model", str(model)], ["derive", "jensen", "--model", str(model)]):
        status, out, err = run(capsys, *argv)
        assert status in (0, 1), err
        assert is_safe(out) and "]0;pwn" in out  # shown, and shown escaped


def test_an_error_line_escapes_controls_and_is_cut(tmp_path):
    path = tmp_path / "bad.calc"
    path.write_text("log p(X) = log p(X)  by " + "r" * 90_000 + "\n")   # under the line limit
    proc = subprocess.run(SYMELBO + ["check", str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    line = proc.stderr[:-1]
    assert proc.stderr.endswith("\n") and "\n" not in line
    assert line.startswith(f"symelbo: {path}:1:25: unknown rule 'rrr")
    assert len(line) == len("symelbo: ") + MAX_MESSAGE_CHARS and line.endswith("\u2026")


def test_a_control_character_in_an_error_message_is_escaped(capsys, monkeypatch):
    from symelbo.core.errors import InputError

    def fail(args):
        raise InputError("unknown name '\x1b[2J\rboom'", "evil\u202e.calc", 3, 4)
    monkeypatch.setitem(__import__("importlib").import_module("symelbo.cli.commands").COMMANDS, "list", fail)
    status, out, err = run(capsys, "list")
    assert status == 2
    assert err == "symelbo: evil\\u202e.calc:3:4: unknown name '\\u001b[2J\\u000dboom'\n"


# ---------------------------------------------------------------------------
# 3. a PDF from any valid input
# ---------------------------------------------------------------------------

def compile_cli(capsys, tmp_path, source: str, name: str = "odd.calc"):
    """Check ``source`` and compile it to a PDF through the command line; return the PDF's text."""
    need_pdflatex()
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    out = tmp_path / "odd.pdf"
    status, _, err = run(capsys, "check", str(path), "--pdf", "-o", str(out))
    assert status in (0, 1), err
    assert out.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        return ""
    return subprocess.run(["pdftotext", str(out), "-"], capture_output=True, check=True,
                          text=True).stdout


def test_tex_escape_of_unicode_and_specials():
    from symelbo.io.render import tex_escape
    assert tex_escape("θ-model Ω") == r"\ensuremath{\theta}-model \ensuremath{\Omega}"
    assert tex_escape("Café Œuvre – “ok”") == "Café Œuvre – “ok”"          # T1 has these
    assert tex_escape("中文") == r"\texttt{[U+4E2D]}\allowbreak{}\texttt{[U+6587]}\allowbreak{}"
    assert tex_escape("ﬁne ǹ") == "fine n"                                 # transliterated
    assert tex_escape(r"\immediate\write18{rm -rf ~} 100% #$^_&") == (
        r"\textbackslash{}immediate\textbackslash{}write18\{rm -rf \textasciitilde{}\} "
        r"100\% \#\$\textasciicircum{}\_\&")


def test_the_printer_emits_only_commands_of_amsmath_and_amssymb():
    import sympy as sp
    from symelbo.core.printing import latex_str
    assert latex_str(sp.Symbol("Xscr")) == r"\mathcal{X}"
    assert latex_str(sp.Symbol("θ_1")) == r"\theta _{1}"
    assert latex_str(sp.Symbol("Ωmega")) == r"\Omega mega"
    assert latex_str(sp.Symbol("é")) == r"\text{é}"
    assert latex_str(sp.Symbol("中")) == r"\text{\texttt{[U+4E2D]}}"


def test_greek_cjk_and_tex_specials_in_a_title_give_a_pdf(capsys, tmp_path):
    text = compile_cli(capsys, tmp_path,
                       "title: Ελληνικά 中文 ü — 100% & $ ^ _ ~ { } \\input{/etc/passwd} "
                       "\\immediate\\write18{touch pwned}\n\nlog p(X) = log p(X)\n")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    if text:
        assert "[U+4E2D][U+6587]" in text and "ü" in text
        assert "\\input{/etc/passwd}" in text and "100% & $ ^ _ ~ { }" in text


def test_odd_variable_names_give_a_pdf(capsys, tmp_path):
    names = "Xscr, X_end, theta_1_2, x1, Xbm, Xfrak, Xcal, Xbb, end, input, Xhat_2, alpha_beta"
    text = compile_cli(capsys, tmp_path, f"log p({names}) = log p({names})\n\n"
                                         f"E_q[log p(X, Z)] >= E_q[log q(Z)] + 1\n")
    if text:
        assert "checked step by step" in text and "θ" in text


def test_a_very_long_title_and_a_very_long_name_give_a_pdf(capsys, tmp_path):
    from symelbo.io.render import MAX_TITLE_CHARS, TEX_LINE_LIMIT, render
    from symelbo.core.checker import check_derivation
    from symelbo.io.parser import parse_text
    # each line just under the reader's limit of 100,000 characters
    source = "title: " + "word " * 19_000 + "\n\nlog p(X) = log p(X) + " + "a" * 90_000 + "\n"
    tex = render(check_derivation(parse_text(source, "long.calc")), "latex", name="long.calc")
    assert max(len(line) for line in tex.splitlines()) <= TEX_LINE_LIMIT + 1
    assert ("word " * (MAX_TITLE_CHARS // 5))[:MAX_TITLE_CHARS - 1].rstrip() + "\u2026" in tex
    compile_cli(capsys, tmp_path, source)


def test_folded_lines_read_the_same_to_tex():
    from symelbo.io.render import fold_tex_lines
    folded = fold_tex_lines("\\alpha\\beta xyz", 9)  # never inside a command's name
    assert folded == "\\alpha%\n\\beta xyz"
    assert fold_tex_lines("% " + "c" * 30, 12) == "% cccccccccc\n% cccccccccc\n% cccccccccc"
    assert fold_tex_lines("ab cd", 1000) == "ab cd"


MANY = "A, B, C, D, E, F, G, H, I, J, K, L"


def test_a_counterexample_over_12_variables_shows_32_rows_and_says_how_many_it_left_out(
        capsys, tmp_path):
    from symelbo.io.report import MAX_TABLE_ROWS
    path = tmp_path / "many.calc"
    path.write_text(f"sum_A[p({MANY})] = 2 * sum_A[p({MANY})]\n")
    status, out, _ = run(capsys, "check", str(path), "--json")
    cx = json.loads(out)["chains"][0]["steps"][0]["counterexample"]
    assert status == 1 and len(cx["densities"]["p"]) == 4096      # the JSON has every row
    note = (f"32 of 4,096 rows shown: those at the held values, then the most probable; "
            f"4,064 left out (the JSON report has every row)")
    status, out, _ = run(capsys, "check", str(path))
    assert f"({note})" in out
    assert sum(1 for line in out.splitlines() if line.rstrip().endswith("1/4096")) == MAX_TABLE_ROWS
    status, out, _ = run(capsys, "check", str(path), "--format", "latex")
    assert out.count("$1/4096$ \\\\") == MAX_TABLE_ROWS and f"{note}." in out
    status, out, _ = run(capsys, "check", str(path), "--format", "markdown")
    assert out.count("| $1/4096$ |") == MAX_TABLE_ROWS
    text = compile_cli(capsys, tmp_path, path.read_text(), "many.calc")
    if text:
        assert "32 of 4,096 rows shown" in text


def test_the_rows_that_matter_are_those_at_the_held_values_then_the_most_probable():
    from symelbo.io.report import rows_that_matter
    rows = [{"at": {"A": str(a), "B": str(b)}, "value": f"{a + b}/100"}
            for a in range(1, 11) for b in range(1, 11)]
    shown = rows_that_matter(rows, {"B": "1"}, limit=12)
    assert len(shown) == 12 and shown == sorted(shown, key=rows.index)      # in table order
    assert {r["at"]["A"] for r in shown if r["at"]["B"] == "1"} == {str(a) for a in range(1, 11)}
    assert [r["at"] for r in shown if r["at"]["B"] != "1"] == [{"A": "9", "B": "10"}, {"A": "10", "B": "10"}]
    assert rows_that_matter(rows[:5], {}, limit=12) == rows[:5]


def test_a_greek_model_name_gives_an_instantiated_pdf(tmp_path, capsys):
    need_pdflatex()
    model = tmp_path / "m.toml"
    model.write_text(textwrap.dedent("""\
        name = "Βήτα–Bernoulli 硬币 \\u001b[31m"
        [latent]
        theta = "Beta(2, 2)"
        [observed]
        x = { dist = "Bernoulli(theta)", data = [1, 0, 1] }
        [variational]
        theta = "Beta(alpha, beta)"
        [values]
        alpha = 3
        beta = 2
        """), encoding="utf-8")
    out = tmp_path / "m.pdf"
    status, _, err = run(capsys, "derive", "jensen", "--model", str(model), "--pdf", "-o", str(out))
    assert status in (0, 1), err
    assert out.read_bytes().startswith(b"%PDF")
