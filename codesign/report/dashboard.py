"""A live view of a study: optuna-dashboard on the study's own storage, codesign's metrics as columns.

Each trial keeps its metrics in one user attribute, ``metrics`` (a dictionary). optuna-dashboard shows
a dictionary as a line of JSON that cannot be sorted or plotted, so the dashboard reads the storage
through :class:`MetricsView`, which shows each numeric metric as a user attribute of its own,
``metric:NAME``. The view is made when the dashboard reads, not stored: writing the same numbers
again as separate attributes would cost one more storage write per metric and trial (1.6 ms per
trial for the four metrics of the Oja study on the journal, measured), on the path every trial takes.
"""

from __future__ import annotations

import abc
import copy
import errno
import numbers
import socketserver
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from codesign.errors import CodesignError
from codesign.search.storage import is_journal, mask, open_storage, redact
from codesign.spec import StudySpec

__all__ = ["METRIC_PREFIX", "flat_metrics", "MetricsView", "Dashboard", "open_dashboard"]

#: The prefix of the user attributes the dashboard shows for each metric.
METRIC_PREFIX = "metric:"


def flat_metrics(user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The trial's numeric metrics as ``metric:NAME`` attributes, which the dashboard sorts and plots; text
    (``diverged_reason``, an attribute of its own already) and lists stay in ``metrics`` only."""
    metrics = user_attrs.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    return {METRIC_PREFIX + name: value for name, value in metrics.items()
            if isinstance(value, numbers.Real)}


def _with_flat_metrics(trial: FrozenTrial) -> FrozenTrial:
    flat = flat_metrics(trial.user_attrs)
    if not flat:
        return trial
    shown = copy.copy(trial)  # shallow: the storage's own trial (read without a deep copy) stays as it is
    shown.user_attrs = {**trial.user_attrs, **flat}
    return shown


class MetricsView(BaseStorage):
    """A storage seen through codesign's eyes: every call goes to ``storage``; trials read from it show
    their scalar metrics as ``metric:NAME`` user attributes (:func:`flat_metrics`)."""

    def __init__(self, storage: BaseStorage) -> None:
        self.storage = storage

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return _with_flat_metrics(self.storage.get_trial(trial_id))

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [_with_flat_metrics(t) for t in self.storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)]


def _delegate(name: str):
    def method(self: MetricsView, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.storage, name)(*args, **kwargs)

    method.__name__ = name
    return method


# Every other method of Optuna's storage interface goes to the wrapped storage unchanged.
for _name in BaseStorage.__abstractmethods__ - {"get_trial", "get_all_trials"}:
    setattr(MetricsView, _name, _delegate(_name))
abc.update_abstractmethods(MetricsView)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the standard library's name)
        pass  # the page polls the API every few seconds: a line per request would bury the terminal


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request, as the page asks for several things at once; a slow database query
    (PostgreSQL) then holds up only its own request."""

    daemon_threads = True


class Dashboard:
    """optuna-dashboard on a study's storage, listening; :meth:`serve` until interrupted."""

    def __init__(self, server: WSGIServer, studies: dict[str, int]) -> None:
        self.server = server
        self.studies = studies

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def study_urls(self) -> dict[str, str]:
        """Each round's study (``NAME``, ``NAME/refine-K``) and its page."""
        return {name: f"{self.url}/dashboard/studies/{study_id}" for name, study_id in self.studies.items()}

    def serve(self) -> None:
        try:
            self.server.serve_forever()
        finally:
            self.server.server_close()


def open_dashboard(spec: StudySpec, storage_url: str | None = None, host: str = "127.0.0.1",
                   port: int = 8080) -> Dashboard:
    """Open the study's storage (resolved as ``codesign run`` resolves it) and listen on ``host:port``
    (0: any free port) with optuna-dashboard on it; the study must have run already."""
    from optuna_dashboard import wsgi

    storage, studies = _open_finished(spec, storage_url)
    return Dashboard(_listen(host, port, wsgi(MetricsView(storage))), studies)


def _open_finished(spec: StudySpec, storage_url: str | None) -> tuple[BaseStorage, dict[str, int]]:
    """The study's storage, and its rounds' study ids by name; an error where it has not run yet
    (without creating the journal: looking must not start a study)."""
    url, file, key = spec.storage_source(storage_url)
    same_storage = "" if key == "storage" else f" with the same {key}"
    not_yet = dict(file=file, key=key, fix=f"run: codesign run {spec.file}{same_storage}")
    if is_journal(url) and not Path(url[len("journal:"):]).is_file():
        raise CodesignError(f"no results yet for study {spec.name!r} ({url[len('journal:'):]} is missing)", **not_yet)
    storage = open_storage(url, spec.heartbeat_s, spec.retries, file=file, key=key)
    try:
        studies = {name: storage.get_study_id_from_name(name) for name in optuna.get_all_study_names(storage)
                   if name == spec.name or name.startswith(spec.name + "/refine-")}
    except (optuna.exceptions.StorageInternalError, ValueError) as exc:
        raise CodesignError(f"cannot read storage {mask(url)}: {redact(str(exc), url)}", file=file, key=key) from None
    if spec.name not in studies:
        raise CodesignError(f"no study {spec.name!r} in storage {mask(url)} yet", **not_yet)
    return storage, studies


def _listen(host: str, port: int, app: Any) -> WSGIServer:
    if not 0 <= port <= 65535:
        raise CodesignError(f"port {port} is not one: ports run from 0 to 65535", key="--port",
                            fix="give another --port (0: any free one)")
    try:
        return make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):  # the port is taken, or reserved for root
            raise CodesignError(f"cannot listen on {host}:{port}: {exc.strerror}", key="--port",
                                fix="give another --port (0: any free one), or stop what listens there") from None
        raise CodesignError(f"cannot listen on {host}:{port}: {exc.strerror}", key="--host",
                            fix="give an address of this machine: 127.0.0.1, or 0.0.0.0 for all of them") from None
