"""The command line contract: formats, JSON shapes, exit statuses, one-line errors."""

import json
import subprocess
import sys

import pytest

from symelbo.cli.commands import main
from symelbo.core.generate import BUILTIN
from symelbo.core.rules import RULES

from .conftest import REPO

# the design card's keys, and the kernel's certificate of a proved step (null otherwise)
STEP_KEYS = {"line", "relation", "lhs", "rhs", "by", "found_by", "verdict", "counterexample", "message",
             "certificate"}


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_list_names_every_derivation_and_rule(capsys):
    status, out, _ = run(capsys, "list")
    assert status == 0
    for name in list(BUILTIN) + list(RULES):
        assert name in out


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_derive_proves_every_step(capsys, name):
    status, out, _ = run(capsys, "derive", name, "--format", "json")
    data = json.loads(out)
    assert status == 0 and data["verdict"] == "proved"
    assert all(s["verdict"] == "proved" for c in data["chains"] for s in c["steps"])


def test_derive_text_is_aligned_and_readable(capsys):
    status, out, _ = run(capsys, "derive", "jensen")
    assert status == 0
    lines = [l for l in out.splitlines() if " by " in l and l.lstrip(" 0123456789")[:1] in "=<>"]
    assert len(lines) == 5
    assert len({l.index(" by ") for l in lines}) == 1       # justifications in one column
    assert all(l.endswith("proved") for l in lines)


@pytest.mark.parametrize("name", ["kl_shuffle", "jensen", "gradient"])
def test_good_examples_are_proved(capsys, shared_examples, name):
    status, out, _ = run(capsys, "check", str(shared_examples / f"{name}.calc"), "--json")
    data = json.loads(out)
    assert status == 0
    assert set(data) == {"verdict", "title", "chains"}  # the examples have titles
    for chain in data["chains"]:
        assert set(chain) == {"claim", "verdict", "steps"}
        for step in chain["steps"]:
            assert set(step) == STEP_KEYS
            assert step["verdict"] == "proved" and step["counterexample"] is None


def _verdicts(data):
    return {s["line"]: s["verdict"] for c in data["chains"] for s in c["steps"]}


def test_wrong_steps_refuted_at_lines_6_10_14(capsys, shared_examples):
    status, out, _ = run(capsys, "check", str(shared_examples / "wrong_steps.calc"), "--format", "json")
    data = json.loads(out)
    assert status == 1 and data["verdict"] == "refuted"
    verdicts = _verdicts(data)
    assert sorted(l for l, v in verdicts.items() if v == "refuted") == [6, 10, 14]
    assert all(v in ("proved", "tested") for l, v in verdicts.items() if l not in (6, 10, 14))
    for step in (s for c in data["chains"] for s in c["steps"] if s["verdict"] == "refuted"):
        cx = step["counterexample"]
        assert cx["support"] and cx["densities"] and cx["lhs"] != cx["rhs"]


def test_misjustified_at_lines_6_and_9(capsys, shared_examples):
    status, out, _ = run(capsys, "check", str(shared_examples / "misjustified.calc"), "--json")
    data = json.loads(out)
    assert status == 1
    assert _verdicts(data) == {6: "misjustified", 9: "misjustified"}


def test_output_file_and_determinism(tmp_path, capsys, shared_examples):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for out in (first, second):
        run(capsys, "check", str(shared_examples / "wrong_steps.calc"), "--json", "-o", str(out))
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("content, expected", [
    (b"log p(X)\n  = log(sum_Z[p(X, Z)])   by nonsense\n", ":2:30: unknown rule 'nonsense'"),
    (b"log p(X)\n  = log(sum_Z[p(X, Z)\n", ":2:14: this '[' is never closed"),
    (b"a\n  <= b\n  >= c\n", ":3:3: a chain cannot mix <= and >="),
    (b"log p(X)\n  = \xff\n", ":2:5: the file is not UTF-8 text"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.calc"
    path.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "symelbo", "check", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and f"{path}{expected}" in lines[0]
    assert "Traceback" not in proc.stderr


def test_unknown_derivation_exits_2(capsys):
    status, _, err = run(capsys, "derive", "nope")
    assert status == 2 and "unknown derivation 'nope'" in err


def test_the_mean_field_derivation_is_not_instantiated_on_a_model(capsys):
    status, out, err = run(capsys, "derive", "mean-field", "--model", str(REPO / "examples" / "normal_gamma.toml"))
    assert status == 2 and out == ""
    assert err == ("symelbo: <command line>: 'mean-field' is a derivation under assumptions and "
                   "definitions (a mean-field family); it is not instantiated on a model: use "
                   "symelbo cavi for a model's mean-field updates\n")


def test_budget_gives_unknown_not_a_hang(tmp_path, capsys):
    # a deep chain of nested expectations is slow to evaluate; a tiny budget must stop it
    body = "log p(X, Z)"
    for _ in range(12):
        body = f"E_q[{body} + log q(Z)]"
    path = tmp_path / "slow.calc"
    path.write_text(f"q(Z) = q(Z)\n\n{body} = {body} + 1\n")
    status, out, _ = run(capsys, "check", str(path), "--json", "--budget", "0.05")
    data = json.loads(out)
    assert status == 1
    assert data["chains"][-1]["steps"][0]["verdict"] in ("unknown", "refuted")
