"""Fuzzing the readers: any input gives a result or one located InputError, never a crash.

Derivation text is drawn from the grammar's own tokens (so that inputs get
deep into the parser) mixed with arbitrary characters; model files from TOML
fragments with hostile values. A generous deadline catches hangs.
"""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symelbo.core.errors import InputError
from symelbo.models.model import load_model
from symelbo.io.parser import parse_text

TOKENS = ["log", "exp", "KL", "H", "E_q", "E_{q(Z)}", "sum_Z", "grad_phi", "ELBO", "p", "q", "q_phi",
          "X", "Z", "theta", "(", ")", "[", "]", "{", "}", "|", "||", ",", "+", "-", "*", "/", "^", "**",
          "=", "<=", ">=", "<", ">", "by", "jensen", "bayes_rule", "1", "0.5", "1e3", " ", " ", "\n",
          "\n\n", "#", "title:", "__import__", "'os'", "\x00", "\ufeff", "\t"]

calc_text = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=60).map("".join),
    st.text(alphabet=string.printable + "λ∑\u00e9", max_size=200),
)

SETTINGS = settings(max_examples=300, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(text=calc_text)
def test_calc_parser_never_crashes(text):
    try:
        derivation = parse_text(text, "fuzz.calc")
    except InputError as error:
        message = str(error)
        assert message.startswith("fuzz.calc") and "\n" not in message
    else:
        assert derivation.chains


FAMILIES = ["Normal", "Beta", "Gamma", "Exponential", "Poisson", "Bernoulli", "Categorical", "Foo"]
ARGS = ["0", "1", "-1", "a", "b", "x", "z", "1e400", "__import__('os')", "sqrt(-1)", "1/0", "(", "", "2^2^2^99"]


def dist():
    return st.builds(lambda f, args: f"{f}({', '.join(args)})", st.sampled_from(FAMILIES),
                     st.lists(st.sampled_from(ARGS), max_size=3))


model_text = st.builds(
    lambda latent, obs, data, q, values, junk: (
        f'name = "fuzz"\n[latent]\nz = "{latent}"\n[observed]\nx = {{ dist = "{obs}", data = {data} }}\n'
        f'[variational]\nz = "{q}"\n[values]\n{values}\n{junk}'),
    dist(), dist(), st.sampled_from(["[1, 0, 1]", "[]", "[2.5, -1]", "['a']", "[1e400]", "1"]),
    dist(), st.sampled_from(["a = 1", "a = -2\nb = 0", "", "a = 'x'"]),
    st.sampled_from(["", "[latent", "x = = 1", "[values]\na = 1"]),
)


@settings(max_examples=120, deadline=5000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(text=model_text)
def test_model_reader_never_crashes(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "model.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_model(path)
    except InputError as error:
        assert "\n" not in str(error) and "model.toml" in str(error)
