"""Workers that die or hang lose nothing: owners and heartbeats of running trials, and time limits.

Each trial a worker asks is marked with its owner (system attribute ``codesign_worker``:
``host:pid``), and while its batch is evaluated a background thread records heartbeats:

- on an RDB storage (PostgreSQL) with Optuna's own ``record_heartbeat``, the table that
  ``optuna.storages.fail_stale_trials`` reads; Optuna's heartbeat thread only runs inside
  ``Study.optimize``, which evaluates one trial at a time, so codesign runs the equivalent for a
  batch. The first heartbeat is recorded as soon as the trial is asked.
- on the journal file, which has no heartbeat in Optuna, as a time stamp in the trial's system
  attribute ``codesign_heartbeat`` (the trial's start counts as its first heartbeat).

:func:`reclaim_dead_trials` fails the RUNNING trials whose worker is gone: on the journal (one
machine) at once when the owner is a process of this host that no longer exists, and on both
storages when the last heartbeat is older than the grace period (twice the heartbeat interval;
on RDB Optuna's ``fail_stale_trials`` decides, by the database server's clock). Process ids are
not checked on RDB storages: their workers run on many machines, whose host names may repeat
(containers). Each failed trial is retried through Optuna's
``RetryHeartbeatStaleTrialCallback`` (see :class:`codesign.storage.RetryCallback`): a WAITING copy
with the same parameters, which the next ``ask`` of any worker takes, up to ``retries`` times.
Failing is atomic in both storages (a row lock in PostgreSQL, the log order in the journal), so a
trial is failed and retried once even when several workers sweep at the same time, and a result
told after its trial was failed is dropped rather than counted twice.

:class:`BatchGuard` also enforces the study's ``trial_timeout_s``: see its docstring.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from typing import Callable, Sequence

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from codesign.processes import alive

__all__ = ["WORKER_ATTR", "HEARTBEAT_ATTR", "TIMEOUT_ATTR", "TrialTimeout", "BatchGuard", "claim",
           "reclaim_dead_trials", "sweep_interval", "this_worker", "fail_trial"]

WORKER_ATTR = "codesign_worker"
HEARTBEAT_ATTR = "codesign_heartbeat"
#: User attribute of a trial failed because its batch ran past ``trial_timeout_s`` (the limit, s).
TIMEOUT_ATTR = "timed_out_s"
#: A RUNNING trial on an RDB storage with no owner after this long was never claimed (client clocks).
_ORPHAN_S = 120.0


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(study: optuna.Study, trials: Sequence[optuna.Trial | FrozenTrial]) -> None:
    """Mark trials of the storage as this worker's, with their first heartbeat (RDB), one write each.

    New trials are created owned, in one write for a batch (:mod:`codesign.search.batches`); this is
    for the waiting retries a worker takes.
    """
    storage, me = study._storage, this_worker()
    rdb = is_heartbeat_enabled(storage)
    for trial in trials:
        if rdb:
            storage.record_heartbeat(trial._trial_id)
        storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, me)


def _beat(study: optuna.Study, trial_ids: Sequence[int]) -> None:
    """One heartbeat for every trial of a batch, in one write (:func:`codesign.search.batches.beat`)."""
    from codesign.search.batches import beat

    beat(study._storage, trial_ids, HEARTBEAT_ATTR, time.time())


def fail_trial(study: optuna.Study, trial_id: int, retry: Callable[[optuna.Study, FrozenTrial], None] | None,
               user_attrs: dict | None = None) -> bool:
    """Fail a RUNNING trial and hand it to ``retry``; False if it had finished (or was failed) already."""
    storage = study._storage
    try:
        for key, value in (user_attrs or {}).items():
            storage.set_trial_user_attr(trial_id, key, value)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    if retry is not None:
        retry(study, copy.deepcopy(storage.get_trial(trial_id)))
    return True


def _dead(trial: FrozenTrial, host: str, grace_s: float, journal: bool, now: float) -> bool:
    start = trial.datetime_start.timestamp() if trial.datetime_start else now
    if not journal:
        # RDB: Optuna's heartbeat decides (fail_stale_trials). A trial never claimed (its worker died
        # between asking and recording the first heartbeat) has no heartbeat at all: an orphan.
        return WORKER_ATTR not in trial.system_attrs and now - start > max(_ORPHAN_S, 5 * grace_s)
    owner_host, _, pid = trial.system_attrs.get(WORKER_ATTR, "").rpartition(":")
    if owner_host == host and pid.isdigit() and not alive(int(pid)):
        return True  # the journal is for one machine, whose process table says at once
    last = max(start, float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)))
    return now - last > grace_s


def sweep_interval(storage: optuna.storages.BaseStorage, heartbeat_s: float) -> float:
    """How often a worker reclaims dead workers' trials (seconds).

    On the journal each second: a worker of this host that is gone is seen at once. On an RDB
    storage a trial is dead only when its heartbeat is two intervals old, so sweeping more often
    than once an interval finds nothing sooner, and with many workers each sweep (reading every
    running trial) is a load on the database.
    """
    return float(heartbeat_s) if is_heartbeat_enabled(storage) else min(1.0, float(heartbeat_s))


def reclaim_dead_trials(study: optuna.Study, grace_s: float,
                        retry: Callable[[optuna.Study, FrozenTrial], None] | None) -> int:
    """Fail the RUNNING trials of workers that are gone and queue their retries; returns how many.

    ``retry`` is used for the trials codesign's own checks find; on an RDB storage Optuna's
    ``fail_stale_trials`` handles stale heartbeats with the storage's own callback.
    """
    from codesign.search.batches import live

    storage = study._storage
    journal = not is_heartbeat_enabled(storage)
    read = lambda: live(study, (TrialState.RUNNING,), (WORKER_ATTR, HEARTBEAT_ATTR))  # noqa: E731
    before = {t._trial_id for t in read()}
    if not before:
        return 0
    reclaimed = 0
    if not journal:
        with warnings.catch_warnings():  # marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    host, now = socket.gethostname(), time.time()
    running = read()
    if not journal:
        still = {t._trial_id for t in running}
        reclaimed += sum(storage.get_trial(i).state == TrialState.FAIL for i in before - still)
    for trial in running:
        if _dead(trial, host, grace_s, journal, now):
            reclaimed += fail_trial(study, trial._trial_id, retry)
    return reclaimed


class TrialTimeout(BaseException):
    """Raised in the main thread when its batch ran past the study's time limit (trials already failed).

    A BaseException, so that no ``except Exception`` in the simulation code swallows it.
    """


class BatchGuard:
    """While one batch is evaluated: heartbeats for its trials, its time limit, and sweeps.

    A background thread records a heartbeat for every trial of the batch each ``heartbeat_s``, and
    calls ``sweep`` (reclaiming dead workers' trials) each ``sweep_s``, so that a trial of a dead
    worker is retried within the grace period even while every live worker is busy with a long batch.
    With ``timeout_s``, when the batch has simulated for longer (network builds and compiling do
    not count; the batch's trials run side by side, so this is each trial's time), the thread
    fails the batch's trials with the user attribute ``timed_out_s`` (they are not retried: the
    same candidates would hang again) and sends SIGUSR1 to its own process. In the main thread the
    signal raises :class:`TrialTimeout` (caught around the ``with`` block): a C++ standalone binary is killed by ``subprocess`` on the
    way out, a runtime simulation stops at its next Python step, and the worker goes on with the
    next batch. (A worker stuck in native code that never returns to Python stays stuck, but its
    trials are failed all the same. Outside the main thread there is no signal: the trials are
    failed and the evaluation runs to its end, its results then dropped.)
    """

    def __init__(self, study: optuna.Study, trials: Sequence[optuna.Trial], heartbeat_s: float,
                 timeout_s: float | None = None, build_seconds: Callable[[], float] = lambda: 0.0,
                 sweep: Callable[[], object] | None = None, sweep_s: float = 1.0) -> None:
        self.study = study
        self.sweep = sweep
        self.sweep_s = sweep_s
        self.trial_ids = [t._trial_id for t in trials]
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.build_seconds = build_seconds
        self.timed_out = False
        self._lock = threading.Lock()
        self._active = False
        self._raised = False
        self._previous_handler = None
        self._signal = threading.current_thread() is threading.main_thread()

    def _on_signal(self, signum, frame) -> None:
        if self.timed_out and not self._raised:
            self._raised = True
            raise TrialTimeout(f"batch ran past trial_timeout_s = {self.timeout_s:g} s")

    def __enter__(self) -> BatchGuard:
        if self._signal and self.timeout_s is not None:
            self._previous_handler = signal.signal(signal.SIGUSR1, self._on_signal)
        self._start = time.monotonic()
        self._build0 = self.build_seconds()
        self._next_beat = self._start + self.heartbeat_s
        self._next_sweep = self._start + self.sweep_s if self.sweep is not None else float("inf")
        self._active = True
        _WATCHER.arm(self)
        return self

    def _simulated(self) -> float:
        return time.monotonic() - self._start - (self.build_seconds() - self._build0)

    def due(self) -> float:
        """When (``time.monotonic``) this batch next needs the watcher: a heartbeat, a sweep or its time limit.
        Never, once it has timed out or ended (it may end past its limit, before it is disarmed)."""
        if self.timed_out or not self._active:
            return math.inf
        due = min(self._next_beat, self._next_sweep)
        if self.timeout_s is not None:
            due = min(due, time.monotonic() + self.timeout_s - self._simulated())
        return due

    def tick(self) -> None:
        """What is due now (run by the watcher thread)."""
        if self.timeout_s is not None and self._simulated() > self.timeout_s:
            self._expire()
            return
        now = time.monotonic()
        for due, action, what in ((self._next_beat, lambda: _beat(self.study, self.trial_ids), "heartbeat"),
                                  (self._next_sweep, self.sweep, "reclaiming dead workers' trials")):
            if now >= due:
                try:
                    action()
                except Exception as exc:  # a storage hiccup: the next try may succeed
                    print(f"codesign: {what} failed: {type(exc).__name__}", file=sys.stderr)
        if now >= self._next_beat:
            self._next_beat += self.heartbeat_s
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_s

    def _expire(self) -> None:
        with self._lock:
            if not self._active:
                return
            self.timed_out = True
            for trial_id in self.trial_ids:
                fail_trial(self.study, trial_id, None, {TIMEOUT_ATTR: self.timeout_s})
            if self._signal:  # to the main thread itself, so that a blocking wait there is interrupted
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    def __exit__(self, exc_type, exc, tb) -> bool:
        # The signal may still raise TrialTimeout in here (once); the caller catches it around the block.
        try:
            with self._lock:
                self._active = False
        finally:
            _WATCHER.disarm(self)
            if self._previous_handler is not None:
                signal.signal(signal.SIGUSR1, self._previous_handler)
        return exc_type is TrialTimeout


class _Watcher:
    """The one thread per process that does, for every batch in progress, what it needs when it needs it.

    Waking another thread is what costs on a busy machine, where the waker may lose its core until
    the scheduler comes back to it: a thread started and joined for each batch cost 2-5 ms a batch,
    and so did waking this one at each batch (1.4 ms). So a batch armed wakes the watcher only when
    its first need comes before the watcher's next wake, which is about once a second (a sweep on
    the journal), and disarming never does. Heartbeats, sweeps and time limits run under the
    watcher's lock, so a batch disarmed returns only once none of them is under way (its results
    are told next, from the main thread, on the same storage).
    """

    #: With no batch in progress, the watcher still wakes this often (s), so that arming need not wake it.
    idle_s = 1.0

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._guards: list[BatchGuard] = []
        self._thread: threading.Thread | None = None
        self._wake_at = -math.inf

    def arm(self, guard: BatchGuard) -> None:
        if self._pid != os.getpid():  # a forked child has the state but not the thread
            self.__init__()
        with self._cond:
            self._guards.append(guard)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="codesign-heartbeat", daemon=True)
                self._thread.start()
            elif guard.due() < self._wake_at:
                self._cond.notify()

    def disarm(self, guard: BatchGuard) -> None:
        with self._cond:
            if guard in self._guards:
                self._guards.remove(guard)

    def _run(self) -> None:
        with self._cond:
            while True:
                self._guards = [g for g in self._guards if g.due() < math.inf]  # nothing more to do for the others
                now = time.monotonic()
                due = min((g.due() for g in self._guards), default=now + self.idle_s)
                if due > now:
                    self._wake_at = due
                    self._cond.wait(timeout=due - now + 0.01)  # 10 ms late rather than early
                    continue
                for guard in [g for g in self._guards if g.due() <= time.monotonic()]:
                    try:
                        guard.tick()
                    except Exception as exc:  # failing a timed-out batch's trials: this thread serves the next batches
                        print(f"codesign: the heartbeat thread failed: {type(exc).__name__}: {exc}", file=sys.stderr)


_WATCHER = _Watcher()
