"""A time budget per step: past it, work stops and the step is ``unknown``.

The budget counts the processor time this process spends, not the time on
the wall clock: a verdict must not depend on how busy the machine is (a
step that takes 4 s alone takes 12 s beside two other jobs). It is enforced
two ways: cooperatively (the normalizer and the evaluator call
:func:`check_deadline` in their loops) and, in the main thread on POSIX, by
a profiling timer (``SIGPROF``, which counts processor time) that interrupts
a long SymPy call. Either way :class:`BudgetExceeded` is raised; nothing
hangs and nothing passes by default.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

__all__ = ["BudgetExceeded", "time_budget", "check_deadline"]

_deadline: list[float] = []
#: The clock a budget is measured on: this process's processor time.
_clock = time.process_time
_TIMER = getattr(signal, "ITIMER_PROF", None)
_SIGNAL = getattr(signal, "SIGPROF", None)


class BudgetExceeded(Exception):
    """The time budget of the current step ran out."""


def check_deadline() -> None:
    """Raise BudgetExceeded when the innermost budget has run out."""
    if _deadline and _clock() > _deadline[-1]:
        raise BudgetExceeded()


def _on_alarm(signum, frame):
    raise BudgetExceeded()


@contextmanager
def time_budget(seconds: float | None):
    """Run the block under a budget of ``seconds`` (None: no budget)."""
    if seconds is None or seconds <= 0:
        yield
        return
    end = _clock() + seconds
    _deadline.append(min(end, _deadline[-1]) if _deadline else end)
    use_alarm = (threading.current_thread() is threading.main_thread()
                 and hasattr(signal, "setitimer") and _TIMER is not None and len(_deadline) == 1)
    previous = None
    if use_alarm:
        previous = signal.signal(_SIGNAL, _on_alarm)
        signal.setitimer(_TIMER, seconds + 0.05)
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(_TIMER, 0)
            signal.signal(_SIGNAL, previous)
        _deadline.pop()
