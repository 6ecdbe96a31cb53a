"""The notebook display in a real browser: nbconvert's HTML, MathJax as Jupyter ships it, Chromium.

A notebook is built with nbformat, run with nbclient (``import symelbo``, a
proved built-in derivation, a refuted file) and converted to HTML by
nbconvert with a local MathJax 2; headless Chromium loads it, and a script
added to the page measures the typeset math once MathJax has finished, into
a ``<pre>`` that ``--dump-dom`` hands back. The checks: no MathJax error and
no untypeset math; every display block sits in a box inside its output that
scrolls sideways; every law in the rules used stays on one line inside the
output. A last cell shows the plain Markdown document (``--format markdown``)
as a control: there an aligned block runs off the output's right edge, and
under nbconvert's own MathJax configuration (CommonHTML, automatic line
breaks) a law in the rules table is broken one token a line, which is what
the notebook display exists to avoid.

Two MathJax builds are tried, each where it is installed: Debian's
``libjs-mathjax`` with nbconvert's default configuration
(``TeX-AMS_CHTML-full,Safe``) and the PyPI package ``jupyter-server-mathjax``
with the classic Notebook's (``TeX-AMS-MML_HTMLorMML-full,Safe``). Without
Chromium, nbconvert, nbclient, ipykernel or any MathJax the tests skip, saying
what is missing; with ``SYMELBO_REQUIRE_BROWSER=1`` (as in CI) they fail instead.
The last tests hold the notebook's Markdown itself, with no browser.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFUTED = ROOT / "examples" / "wrong_steps.calc"
#: The browser window: a notebook beside a file browser on a laptop, where the
#: wide blocks of a refuted file do not fit.
WINDOW = (800, 4000)
#: MathJax runs on Chromium's virtual clock: this many virtual milliseconds at most.
VIRTUAL_TIME_MS = 60000

DEBIAN_MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")


def _required() -> bool:
    return os.environ.get("SYMELBO_REQUIRE_BROWSER") == "1"


def _missing(reason: str):
    """Skip for ``reason``, or fail when the browser test is required."""
    if _required():
        pytest.fail(f"SYMELBO_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    _missing("no chromium on PATH (Debian: apt-get install chromium)")


def _server_mathjax() -> Path | None:
    """The MathJax of the PyPI package jupyter-server-mathjax, found without importing it
    (its package imports jupyter_server, which a --no-deps install leaves out)."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "static" / "MathJax.js"
    return path if path.is_file() else None


#: label: (where the MathJax.js is, the configuration the page loads it with)
MATHJAX = {
    "debian-libjs-mathjax-chtml": (lambda: DEBIAN_MATHJAX if DEBIAN_MATHJAX.is_file() else None,
                                   "TeX-AMS_CHTML-full,Safe"),
    "jupyter-server-mathjax-htmlcss": (_server_mathjax, "TeX-AMS-MML_HTMLorMML-full,Safe"),
}

#: Run in the page after MathJax's last typesetting: measures every output and
#: writes the figures as JSON into <pre id="symelbo-measure">.
MEASURE_JS = r"""
<script>
(function () {
  function rect(e) { return e.getBoundingClientRect(); }
  // how far right a formula reaches: the union of its parts (HTML-CSS sets them in
  // an inline span whose own box is one text line whatever it holds)
  function extent(e) {
    var right = rect(e).right;
    Array.prototype.forEach.call(e.querySelectorAll('*'), function (part) {
      var p = rect(part);
      if (p.width > 0 && p.height > 0) right = Math.max(right, p.right);
    });
    return {right: right};
  }
  function frames(root) {
    return Array.prototype.slice.call(
      root.querySelectorAll('span[id^="MathJax-Element-"][id$="-Frame"], div[id^="MathJax-Element-"][id$="-Frame"]'));
  }
  function measure(hasMathJax) {
    var outputs = [];
    var areas = document.querySelectorAll('.jp-OutputArea-output, .output_subarea');
    Array.prototype.forEach.call(areas, function (area) {
      var right = rect(area).right, out = {right: right, displays: [], laws: [], text: ''};
      out.text = area.textContent.slice(0, 60);
      frames(area).forEach(function (frame) {
        var display = frame.closest('.MathJax_Display, .MathJax_SVG_Display, .MJXc-display');
        if (!display) return;
        var box = frame.closest('.symelbo-display');
        out.displays.push({
          frame_right: extent(frame).right,
          boxed: !!box,
          box_right: box ? rect(box).right : null,
          overflow_x: box ? getComputedStyle(box).overflowX : null,
          scrolls: box ? box.scrollWidth > box.clientWidth : false
        });
      });
      var heads = area.querySelectorAll('h2');
      Array.prototype.forEach.call(heads, function (h) {
        if (h.textContent.indexOf('Rules used') < 0) return;
        var next = h.nextElementSibling;
        var cells = [];
        if (next && next.tagName === 'UL') {
          cells = Array.prototype.map.call(next.children, function (li) { return li; });
        } else if (next && next.tagName === 'TABLE') {
          cells = Array.prototype.map.call(next.querySelectorAll('tbody tr'),
                                           function (tr) { return tr.children[1]; });
        } else if (next && next.querySelector && next.querySelector('table')) {
          cells = Array.prototype.map.call(next.querySelectorAll('tbody tr'),
                                           function (tr) { return tr.children[1]; });
        }
        cells.forEach(function (cell) {
          var law = frames(cell)[0];
          if (!law) { out.laws.push({typeset: false}); return; }
          // HTML-CSS: the inline-block span.math holds the formula and its strut
          var size = rect(law.querySelector('span.math') || law);
          out.laws.push({typeset: true, height: size.height, right: size.right,
                         font: parseFloat(getComputedStyle(cell).fontSize)});
        });
      });
      outputs.push(out);
    });
    var errors = document.querySelectorAll(
      '.MathJax_Error, .mjx-merror, merror, .noError, [data-mjx-error]');
    var texts = Array.prototype.map.call(
      document.querySelectorAll('.jp-RenderedMarkdown, .rendered_html'),
      function (e) { return e.innerText; }).join('\n');
    var result = {
      mathjax: hasMathJax, errors: errors.length,
      scripts: document.querySelectorAll('script[type^="math/tex"]').length,
      frames: frames(document).length,
      untypeset: /\$\$|\\begin\{aligned\}/.test(texts),
      outputs: outputs
    };
    var pre = document.createElement('pre');
    pre.id = 'symelbo-measure';
    pre.textContent = JSON.stringify(result);
    document.body.appendChild(pre);
  }
  window.addEventListener('load', function () {
    if (window.MathJax && MathJax.Hub) {
      MathJax.Hub.Register.StartupHook('End', function () {
        MathJax.Hub.Queue(function () { measure(true); });
      });
    } else {
      measure(false);
    }
  });
})();
</script>
"""

NOTEBOOK_CELLS = [
    "import symelbo\nfrom symelbo import check_derivation, generate, parse_file",
    "check_derivation(generate('jensen'))",
    f"check_derivation(parse_file({str(REFUTED)!r}))",
    # the control: the plain Markdown document, as --format markdown writes it
    "from IPython.display import Markdown\nfrom symelbo.io.render import render\n"
    f"Markdown(render(check_derivation(parse_file({str(REFUTED)!r})), 'markdown'))",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser, looked for before the notebook is run (which takes seconds)."""
    return _chromium()


@pytest.fixture(scope="module")
def executed_notebook():
    """The notebook, run: its outputs are what a user's kernel displays."""
    missing = [name for name in ("nbformat", "nbclient", "nbconvert", "ipykernel")
               if importlib.util.find_spec(name) is None]
    if missing:
        _missing(f"{', '.join(missing)} not installed (pip install '.[notebook]')")
    import nbformat
    from nbclient import NotebookClient
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS]
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    return notebook


def _measured(notebook, chromium: str, mathjax: Path, config: str, folder: Path) -> dict:
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(mathjax_url=f"{mathjax.as_uri()}?config={config}")
    html, _ = exporter.from_notebook_node(notebook)
    assert mathjax.as_uri() in html
    page = folder / "notebook.html"
    page.write_text(html.replace("</body>", MEASURE_JS + "</body>"), encoding="utf-8")
    run = subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--virtual-time-budget={VIRTUAL_TIME_MS}",
         "--allow-file-access-from-files", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    found = re.search(r'<pre id="symelbo-measure">(.*?)</pre>', run.stdout, re.S)
    assert found, "the page's measuring script never ran (MathJax did not finish): " + run.stderr[-2000:]
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    (folder / "measured.json").write_text(text, encoding="utf-8")
    return json.loads(text.replace("&amp;", "&"))


@pytest.mark.parametrize("label", sorted(MATHJAX))
def test_notebook_display_in_chromium(label, chromium, executed_notebook, tmp_path):
    locate, config = MATHJAX[label]
    mathjax = locate()
    if mathjax is None:
        if any(find() for find, _ in MATHJAX.values()):
            pytest.skip(f"{label}: this MathJax is not installed (another one is tested)")
        _missing("no local MathJax (Debian: apt-get install libjs-mathjax; "
                 "PyPI: pip install --no-deps jupyter-server-mathjax)")
    figures = _measured(executed_notebook, chromium, mathjax, config, tmp_path)

    assert figures["mathjax"], "MathJax did not load"
    assert figures["errors"] == 0
    assert not figures["untypeset"], "math left as TeX source"
    assert figures["scripts"] > 0 and figures["frames"] == figures["scripts"]
    outputs = [o for o in figures["outputs"] if o["displays"]]
    assert len(outputs) == 3, [o["text"] for o in figures["outputs"]]
    *shown, control = outputs

    for out in shown:  # the notebook display: boxed blocks, laws on one line, all inside
        assert out["displays"] and out["laws"]
        for display in out["displays"]:
            assert display["boxed"] and display["overflow_x"] == "auto"
            assert display["box_right"] <= out["right"] + 1
        for law in out["laws"]:
            assert law["typeset"]
            assert law["height"] <= 3 * law["font"], law
            assert law["right"] <= out["right"] + 1, law
    refuted = shown[1]
    assert any(d["scrolls"] for d in refuted["displays"]), \
        "the test no longer meets a block wider than the output: widen the derivation or narrow WINDOW"

    # the control, the plain Markdown document: a block runs off the output's edge
    assert not any(d["boxed"] for d in control["displays"])
    assert any(d["frame_right"] > control["right"] + 1 for d in control["displays"])
    if "CHTML" in config:  # nbconvert's configuration breaks lines: the table's laws come apart
        assert any(law["height"] > 3 * law["font"] for law in control["laws"] if law["typeset"])


# ---------------------------------------------------------------------------
# the notebook's Markdown itself (no browser needed)
# ---------------------------------------------------------------------------

def test_notebook_markdown_boxes_every_display_block_and_lists_the_rules():
    from symelbo import check_derivation, parse_file
    from symelbo.io.notebook import DISPLAY_CLASS, notebook_markdown
    from symelbo.io.render import markdown_repr
    result = check_derivation(parse_file(str(REFUTED)))
    plain, shown = markdown_repr(result), notebook_markdown(result)
    opening = f'<div class="{DISPLAY_CLASS}" style="overflow-x: auto; overflow-y: hidden">\n\n$$\n'
    assert shown.count(opening) == plain.count("\n$$\n\\begin{aligned}\n") == 3
    assert shown.count("$$\n\n</div>") == 3
    assert "| rule | law |" in plain and "| rule | law |" not in shown
    assert ("- `bayes_rule`: $p(Z \\mid X) = \\frac{p(X, Z)}{p(X)}$; side conditions: $p(X) > 0$.\n"
            in shown)
    # nothing else changes: without the boxes, the document up to its rules is the plain one
    unboxed = shown.replace(opening, "$$\n").replace("$$\n\n</div>", "$$")
    head = plain[:plain.index("## Rules used")]
    assert unboxed.startswith(head) and unboxed[len(head):].startswith("## Rules used\n\n- `")


def test_every_rule_used_is_one_item_ending_the_document():
    from symelbo import check_derivation, generate
    from symelbo.io.notebook import notebook_markdown
    from symelbo.io.render import document_view
    result = check_derivation(generate("jensen"))
    rules = notebook_markdown(result).split("## Rules used\n\n")[1]
    assert rules.endswith(".\n")
    assert [line.split("`")[1] for line in rules.splitlines()] == [
        rule.name for rule in document_view(result).rules]


class _Formatter:
    def __init__(self):
        self.types = {}

    def for_type(self, cls, function):
        self.types[cls] = function


def test_register_shows_the_notebook_markdown_and_the_aligned_latex():
    from types import SimpleNamespace
    from symelbo.core.checker import CheckResult
    from symelbo.io.notebook import notebook_markdown, register
    from symelbo.io.render import latex_repr
    formatters = {"text/latex": _Formatter(), "text/markdown": _Formatter()}
    shell = SimpleNamespace(display_formatter=SimpleNamespace(formatters=formatters))
    assert register(shell) is True
    assert formatters["text/markdown"].types == {CheckResult: notebook_markdown}
    assert formatters["text/latex"].types == {CheckResult: latex_repr}
