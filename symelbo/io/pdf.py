"""LaTeX source to a PDF with pdflatex: reproducible, sandboxed, bounded, cleaned up.

pdflatex runs in a temporary folder of its own with ``-no-shell-escape``, in
nonstopmode, its input from ``/dev/null``, file access restricted to that
folder and TeX's tree, fixed dates (``SOURCE_DATE_EPOCH``) and a timeout; on
any exit (a signal included) its process group is killed and the folder
removed. A missing pdflatex is a :class:`~symelbo.core.errors.ToolMissingError`
saying how to install it; a TeX error is one line with the log's first error.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from symelbo.core.errors import SymelboError, ToolMissingError

__all__ = ["compile_latex", "compile_pdf", "PDFLATEX_OPTIONS", "PDFLATEX_TIMEOUT"]



_INSTALL_HINT = ("pdflatex not found; install TeX Live, e.g. "
                 "`apt-get install texlive-latex-base texlive-latex-recommended`")


def _tex_environment() -> dict:
    env = dict(os.environ)
    env.update({
        "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1",
        # the document never needs a file outside its directory or TeX's own tree
        "openin_any": "p", "openout_any": "p", "shell_escape": "f",
    })
    return env


def _first_error(log: str) -> str:
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("! "):
            where = next((l.split(" ", 1)[0] for l in lines[index + 1:index + 12] if l.startswith("l.")), "")
            return line[2:].strip() + (f" (document {where.replace('l.', 'line ')})" if where else "")
    return "pdflatex stopped without a TeX error message"


#: pdflatex's options: never a shell command (``\\write18``), never a question on
#: the terminal, stop at the first error.
PDFLATEX_OPTIONS = ("-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error")
#: Seconds one pdflatex run may take before it is killed.
PDFLATEX_TIMEOUT = 120.0


def _run_tex(command: list[str], cwd: str, timeout: float) -> None:
    """Run pdflatex in a process group of its own; kill the whole group if it does not finish.

    pdflatex may start helpers (``mktexpk`` and METAFONT for a missing
    font); killing only pdflatex would leave them running. The group is
    killed on the timeout and on any exception on the way out (Ctrl-C,
    SIGTERM raised by the command line), before the temporary folder is
    removed.
    """
    process = subprocess.Popen(command, cwd=cwd, env=_tex_environment(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise SymelboError(f"pdflatex did not finish within {timeout:g} s") from None
    except BaseException:
        _kill_group(process)
        raise


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # already gone
        pass
    process.wait()


def compile_latex(tex: str, timeout: float = PDFLATEX_TIMEOUT) -> tuple[bytes, str]:
    """Run pdflatex on ``tex``: (the PDF bytes, the log of the last run)."""
    program = shutil.which("pdflatex")
    if program is None:
        raise ToolMissingError(_INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="symelbo-tex-") as tmp:
        source = Path(tmp) / "derivation.tex"
        source.write_text(tex, encoding="utf-8")
        log = ""
        for _ in range(3):
            _run_tex([program, *PDFLATEX_OPTIONS, "-jobname=derivation", "derivation.tex"],
                     tmp, timeout)
            log_path = Path(tmp) / "derivation.log"
            log = log_path.read_text(encoding="latin-1") if log_path.exists() else ""
            pdf = Path(tmp) / "derivation.pdf"
            if "\n! " in "\n" + log or not pdf.exists():
                raise SymelboError(f"pdflatex failed: {_first_error(log)}")
            if "Rerun to get" not in log and "Label(s) may have changed" not in log:
                break
        return pdf.read_bytes(), log


def compile_pdf(tex: str, out_path: str) -> None:
    """Compile LaTeX source with pdflatex into ``out_path``; the same source gives the same bytes.

    Raises :class:`~symelbo.core.errors.ToolMissingError` when pdflatex is not
    installed and :class:`~symelbo.core.errors.SymelboError` with the first TeX
    error when the document does not compile.
    """
    data, _ = compile_latex(tex)
    try:
        Path(out_path).write_bytes(data)
    except OSError as error:
        raise SymelboError(f"{out_path}: cannot write the PDF ({error.strerror or error})") from None
