"""Where a study's trials live: the storage URL, its password kept out of sight, and opening it.

The URL comes from ``--storage``, else the environment variable ``CODESIGN_STORAGE``, else the
study file's ``storage:``, else a journal file under ``results/<study>/``:

- ``journal:PATH``: Optuna's journal file (:class:`~optuna.storages.JournalStorage`), for workers on
  one machine (or on a shared file system that supports its lock). It is opened by its absolute
  path, under :class:`JournalLock`, through :class:`JournalFile`.
- ``postgresql://user[:password]@host[:port]/database`` (or ``postgresql+psycopg2://``), and any
  other SQLAlchemy URL: Optuna's RDB storage, for workers on many machines. It is opened with
  Optuna's heartbeat (``heartbeat_s``) and its retry of trials whose heartbeat stopped.

A password is never printed: :func:`mask` replaces it in every URL shown, errors included. Leave it
out of the URL altogether and libpq reads ``PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from codesign.errors import CodesignError

__all__ = ["ENV_VAR", "resolve_url", "mask", "redact", "open_storage", "is_journal", "RetryCallback",
           "JournalLock", "JournalFile"]

#: The environment variable that names the storage when ``--storage`` is not given.
ENV_VAR = "CODESIGN_STORAGE"

# A password in the URL's user part runs from the first ':' after the user name to the LAST '@'
# (greedy), so that one holding '@' (or ':', '/', '?', '#') is hidden whole; a URL whose database or
# query holds an '@' is masked past its host, which hides more than needed but nothing secret.
# A password in the query (``?password=``) runs to the next '&' and is masked first, so that its '@'
# is not taken for the end of a user part.
_USER_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/]*):(?P<password>.*)@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&]*)")
#: Every password this process opened a storage with, to blank out of error messages wherever they come from.
_SECRETS: set[str] = set()


def resolve_url(study_storage: str | None, default: str, override: str | None = None) -> tuple[str, str]:
    """The storage URL and where it came from: ``--storage``, ``$CODESIGN_STORAGE``, the file, or the default."""
    if override:
        return override, "--storage"
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR], ENV_VAR
    if study_storage:
        return study_storage, "storage"
    return default, "storage"


def _user_password(url: str) -> str | None:
    """The password of the URL's user part, as written (None if it has none)."""
    user = _USER_PASSWORD.match(_QUERY_PASSWORD.sub(r"\g<head>***", url))
    return user.group("password") if user else None


def _passwords(url: str) -> list[str]:
    """The passwords in ``url`` (user part and query), each as written and percent-decoded."""
    from urllib.parse import unquote

    found = [m.group("password") for m in _QUERY_PASSWORD.finditer(url)] + [_user_password(url)]
    return [p for raw in found if raw for p in {raw, unquote(raw)}]


def mask(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` query) replaced by ``***``."""
    url = _QUERY_PASSWORD.sub(r"\g<head>***", url)
    return _USER_PASSWORD.sub(r"\g<head>:***@", url)


def redact(text: str, url: str | None = None) -> str:
    """``text`` (an error message, say) with ``url`` masked, and every password of ``url`` and of the
    storages opened so far blanked wherever it appears (as written or percent-decoded)."""
    if url:
        text = text.replace(url, mask(url))
    for password in sorted({*_SECRETS, *(_passwords(url) if url else ())}, key=len, reverse=True):
        text = text.replace(password, "***")
    return text


def is_journal(url: str) -> bool:
    return url.startswith("journal:")


class RetryCallback(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a failed trial, as a clean copy: its parameters and retry history only.

    Optuna's callback copies every system attribute of the failed trial, which would carry the dead
    worker's name and the sampler's state of that moment (CMA-ES's generation and optimizer) into
    the retry. The retry is a new trial of whichever generation is current when it is asked.
    """

    _KEEP = ("failed_trial", "retry_history", "fixed_params")

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        clean = copy.copy(trial)
        clean.user_attrs = {}
        clean.system_attrs = {k: v for k, v in trial.system_attrs.items() if k in self._KEEP}
        super().__call__(study, clean)


def _identity(path: str) -> tuple[int, int, int] | None:
    """Which link ``path`` is (device, inode, time made), or None if there is none.

    Renaming or linking a file keeps these three, so a link moved aside can be told from another.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


#: How long a worker first waits for the journal's lock held by another. The lock is held for a write
#: into the page cache (0.05-0.1 ms); the workers of a CMA-ES generation tell their results at about
#: the same time, and a first wait of 1 ms (Optuna's) made the later one's tell 1 ms longer, and the
#: whole generation with it.
FIRST_RETRY_S = 0.00005


class JournalLock:
    """The journal's lock file as Optuna makes it, with a stale lock released after ``grace_s``.

    The lock is Optuna's (:class:`optuna.storages.journal.JournalFileSymlinkLock`): a symbolic link
    ``PATH.lock`` to the journal, made to take the lock and removed to give it back, so other Optuna
    programs on the same journal still share it. Only a stale one is handled differently. Optuna
    times a lock by ``stat``-ing the link, which follows it; a link to a relative path (what Optuna
    makes of a relative journal path, as codesign's default was before journals were opened by
    absolute path) resolves against the link's own folder, is never found, and every later worker
    spins at full CPU for ever. This lock times the link itself (``lstat``): one link that stays
    for ``grace_s`` belongs to a process that died holding it, whatever it points to. And a
    process only ever removes its own link: one whose lock was taken as stale leaves its
    successor's in place.
    """

    def __init__(self, journal: Path, grace_s: float) -> None:
        self.target = str(journal)
        self.link = self.target + ".lock"
        self.grace_s = grace_s
        self._mine: tuple[int, int, int] | None = None

    def acquire(self) -> bool:
        delay, seen, since = FIRST_RETRY_S, None, time.monotonic()
        while True:
            try:
                os.symlink(self.target, self.link)
                self._mine = _identity(self.link)
                return True
            except FileExistsError:
                pass
            held = _identity(self.link)
            if held is None:
                continue  # given back meanwhile
            if held != seen:
                seen, since = held, time.monotonic()
            elif time.monotonic() - since > self.grace_s:
                if self._remove(held):
                    print(f"codesign: took over the journal lock {self.link}: held for over {self.grace_s:g} s, "
                          "by a process that died (or hung) while writing", file=sys.stderr)
                delay = FIRST_RETRY_S
                continue
            # Back off from FIRST_RETRY_S up to 50 ms: a lock is held for one append (a write into
            # the page cache, 0.05-0.1 ms), so waiting longer between tries would only slow the workers down.
            time.sleep(delay)
            delay = min(2 * delay, 0.05)

    def release(self) -> None:
        self._remove(self._mine)
        self._mine = None

    def _remove(self, link: tuple[int, int, int] | None) -> bool:
        """Remove the lock link if it is still ``link``; False if it is gone or another's."""
        aside = f"{self.link}.{uuid.uuid4().hex}.rename"
        try:
            os.rename(self.link, aside)  # atomic: of several processes, one takes a given link
        except FileNotFoundError:
            return False
        ours = _identity(aside) == link
        if not ours:  # another process's, made after ``link`` was removed: put it back
            try:
                os.link(aside, self.link, follow_symlinks=False)
            except FileExistsError:
                pass
        os.unlink(aside)
        return ours


class JournalFile(optuna.storages.journal.JournalFileBackend):
    """Optuna's journal file, with each append made durable after its lock is given back, not while held.

    Optuna's ``append_logs`` writes and fsyncs under the lock. An fsync takes 1.6 ms here while
    simulations write their own files (0.1-0.25 ms on a quiet disk), and every other worker's append
    waits for it: with 2 workers, each batch's two appends (creating, then telling) queued behind
    the other worker's two. Here the lock covers only the write, into the page cache, which every
    process sees at once and which a killed process cannot lose; the fsync follows, and the call
    still returns only once the lines are on disk, as Optuna's does. An fsync flushes the whole
    file, other workers' earlier lines with it.
    """

    def __init__(self, path: Path, lock: JournalLock) -> None:
        super().__init__(str(path), lock)
        self.path, self.lock = str(path), lock

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        with open(self.path, "ab") as f:
            self.lock.acquire()
            try:
                f.write(data)
                f.flush()
            finally:
                self.lock.release()
            os.fsync(f.fileno())


def _quiet(fn, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():  # heartbeats and the retry callback are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return fn(*args, **kwargs)


def _lock_grace_s(heartbeat_s: float) -> float:
    """How long a journal lock may be held before it is taken as a dead process's.

    A lock is held for one append's write (:class:`JournalFile`: its fsync comes after), well under
    a millisecond, so half a heartbeat interval (5 s by default; Optuna's own default is 30 s) is ample. Shorter than the interval, the
    wait cannot make the waiting workers' own running trials look dead: their last heartbeat is then
    at most 1.5 intervals old, and a trial is failed at 2.
    """
    return heartbeat_s / 2


def open_storage(url: str, heartbeat_s: int, retries: int, *, file: str | None = None,
                 key: str = "storage") -> optuna.storages.BaseStorage:
    """Open the storage of ``url``: a journal file, or Optuna's RDB storage with its heartbeat on.

    ``file`` and ``key`` say where the URL came from, for the one-line error if it cannot be opened.
    """
    if is_journal(url):
        return _open_journal(url, heartbeat_s, file, key)
    _SECRETS.update(_passwords(url))
    if "@" in (_user_password(url) or ""):
        # SQLAlchemy ends the password at its first '@' and takes the rest for the host name.
        raise CodesignError(f"storage URL {mask(url)} has an '@' in its password, where SQLAlchemy would end it",
                            file=file, key=key, fix="percent-encode each '@' of the password as %40, or leave the "
                                                    "password out of the URL and set PGPASSWORD or use ~/.pgpass")
    return _open_rdb(url, heartbeat_s, retries, file, key)


def _open_journal(url: str, heartbeat_s: int, file: str | None, key: str) -> optuna.storages.BaseStorage:
    path = Path(url[len("journal:"):])
    if not path.name:
        raise CodesignError(f"journal storage {url!r} names no file", file=file, key=key,
                            fix="write journal:results/NAME/journal.log")
    path = path.resolve()  # the lock link points at the journal: relative, it would point nowhere
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = JournalLock(path, _lock_grace_s(heartbeat_s))
        backend = JournalFile(path, lock)
    except OSError as exc:
        raise CodesignError(f"cannot open journal {url!r}: {exc.strerror}", file=file, key=key,
                            fix="give a writable path") from exc
    return optuna.storages.JournalStorage(backend)


def _open_rdb(url: str, heartbeat_s: int, retries: int, file: str | None, key: str) -> optuna.storages.BaseStorage:
    shown = mask(url)
    fix = "check the URL (journal:PATH or postgresql://user@host/database) and that the server is up"
    if url.startswith("postgres://"):  # the spelling of Heroku and others; SQLAlchemy wants postgresql://
        url = "postgresql://" + url[len("postgres://"):]
    if "://" not in url:
        raise CodesignError(f"{shown!r} is not a storage URL", file=file, key=key, fix=fix)
    import sqlalchemy.exc

    # Workers that start together on a new database race to create Optuna's tables; the losers retry.
    for attempt in range(6):
        try:
            return _quiet(optuna.storages.RDBStorage, url, engine_kwargs={"pool_pre_ping": True},
                          heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s,
                          heartbeat_stale_trial_callback=_quiet(RetryCallback, max_retry=retries))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            if attempt == 5:
                raise CodesignError(f"cannot set up storage {shown}: {redact(str(exc).splitlines()[0], url)}",
                                    file=file, key=key, fix=fix) from None
            time.sleep(0.2 + random.random())
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            message = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, url)
            raise CodesignError(f"cannot open storage {shown}: {message}", file=file, key=key, fix=fix) from None
    raise AssertionError("unreachable")
