"""Processes of this host: whether one still runs (to take over, or clear away, what a killed one left), and
work shared out over forked ones."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

__all__ = ["alive", "in_processes"]


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (another user's counts: it cannot be signalled)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: The function the forked processes of :func:`in_processes` call: inherited, never pickled.
_forked_function: Callable[[Any], Any] | None = None


def in_processes(function: Callable[[Any], Any], items: Sequence[Any], workers: int,
                 at_exit: Callable[[], None] | None = None) -> list[Any]:
    """``[function(item) for item in items]``, up to ``workers`` items at a time, each in a forked process.

    A simulation uses one core: long ones (minutes) on several cores go faster side by side than in one
    network. The children inherit ``function`` and what it holds (a study, a candidate), so nothing but the
    items and the results is pickled. An exception in a child is raised here. A pool's process ends
    without atexit handlers: ``at_exit`` is called as it ends instead.
    """
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _forked_function
    _forked_function = function
    try:
        with ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("fork"),
                                 initializer=_call_at_exit, initargs=(at_exit,)) as pool:
            return list(pool.map(_call_forked, items))
    finally:
        _forked_function = None


def _call_forked(item: Any) -> Any:
    return _forked_function(item)  # type: ignore[misc]  # set before the pool forks


def _call_at_exit(function: Callable[[], None] | None) -> None:
    from multiprocessing.util import Finalize

    if function is not None:
        Finalize(None, function, exitpriority=0)
