"""A batch's bookkeeping in one write each: its trials created together, its results told together.

Optuna asks and tells one trial at a time, and every attribute is a write of its own: on the
journal one fsync'd append under the lock file, on PostgreSQL one transaction (about 14 and 20 per
trial). A batch of trials is evaluated together anyway, so codesign writes it together:

- **Asking** (:class:`BatchView`): the sampler proposes the batch's trials against the study as read
  once at the start of the batch, and the new trials (parameters, the sampler's attributes, the
  owner) are kept in memory. Then they are created in the storage in one write, already RUNNING,
  with their owner and (PostgreSQL) their first heartbeat. A worker killed before that write leaves
  nothing behind; after it, its trials are complete and owned, and reclaimed as any others
  (:mod:`codesign.search.liveness`). Other workers' trials created meanwhile are not seen by the
  sampler during the batch; the check after creating (:mod:`codesign.search.generations`) still
  decides, on a fresh read, which trials fit the study's target and the CMA-ES generation.
- **Telling** (:func:`finish`): each trial's metrics, constraint, intermediate value and final state
  go in one write for the whole batch. A trial that was failed meanwhile (its worker taken for dead)
  keeps its state: its part of the write is skipped, as ``study.tell(skip_if_finished=True)`` does.
- **Heartbeats** (:func:`beat`): one write for all of a batch's trials.
- **Waiting** (:func:`version`): a worker with nothing to ask (its CMA-ES generation is being
  finished by others) watches something cheap that changes with the study (the journal's size, a
  count on PostgreSQL) and asks again as soon as it changes, rather than after a fixed pause.

Each storage has a :class:`Writer` for this (:data:`WRITERS`): the journal appends a list of log
lines with Optuna's ``append_logs`` (one lock, one fsync), PostgreSQL and other RDB storages write in
one transaction. Both go around Optuna's public API, which has no batch writes: the journal writer
builds Optuna's journal log lines (``JournalOperation``, ``_backend``, ``_thread_lock``,
``_replay_result``, ``_sync_with_backend``: private), the RDB writer uses Optuna's SQLAlchemy models
(``optuna.storages._rdb``: private) and reads the waiting trials past Optuna's cache (its
``_backend``). Any other storage gets :class:`Writer` itself, which uses the public per-trial API.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from collections.abc import Container, Sequence
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.trial import FrozenTrial, TrialState

__all__ = ["BatchView", "Result", "Writer", "WRITERS", "writer", "create", "finish", "beat", "live", "states", "LiveTrial",
           "constraint_key", "version"]


def constraint_key(name: str) -> str:
    """The system attribute in which Optuna's ``Trial.set_constraint`` keeps constraint ``name``."""
    return f"{_CONSTRAINTS_KEY}:{name}"


@dataclasses.dataclass
class Result:
    """What telling one trial writes: its state and values, and the attributes that go with them."""

    trial_id: int
    state: TrialState
    values: list[float] | None = None
    user_attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    system_attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    intermediate_values: dict[int, float] = dataclasses.field(default_factory=dict)


class BatchView(BaseStorage):
    """A storage as the sampler sees it while a batch is asked: the study's trials read once, and the
    batch's new trials in memory (negative ids) until :meth:`commit` creates them in one write.

    The trials are read when something first asks for them, and only the waiting ones while nothing
    asks for more: Optuna reads those at every ask, but a sampler without a model of the study
    (random search) needs no others, and reading every running trial of many workers is what an
    ask costs on PostgreSQL.

    Changes to trials already in the storage (a waiting retry taken, its attributes) go straight
    through: taking a retry must be atomic between workers.
    """

    #: The finished trials stay as read for the view's life (a retry taken was waiting, not finished),
    #: so a sampler may rank them once per batch (:class:`codesign.search.samplers.optuna_samplers.BatchCmaEsSampler`).
    finished_trials_fixed = True

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        self.storage = storage
        self.study_id = study_id
        self._read: dict[int, FrozenTrial] | None = None  # every trial of the study, once read
        self._count: int | None = None
        self.new: dict[int, FrozenTrial] = {}
        #: Trials of the storage taken by this batch (waiting retries), by id.
        self.taken: list[int] = []
        self._filtered: dict[tuple | None, list[FrozenTrial]] = {}
        self._new_states = {TrialState.RUNNING}

    # Trials of this batch, in memory.
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = -1 - len(self.new)
        trial = copy.deepcopy(template_trial) if template_trial is not None else FrozenTrial(
            number=0, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(), datetime_complete=None,
            params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=trial_id)
        trial._trial_id = trial_id
        if self._count is None:
            self._count = len(self._read) if self._read is not None else sum(
                writer(self.storage).states(self.storage, self.study_id).values())
        trial.number = self._count + len(self.new)
        self.new[trial_id] = trial
        return trial_id

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        if trial_id not in self.new:
            return self._through(trial_id, "set_trial_param", param_name, param_value_internal, distribution)
        trial = self.new[trial_id]
        trial.params[param_name] = distribution.to_external_repr(param_value_internal)
        trial.distributions[param_name] = distribution

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id not in self.new:
            return self._through(trial_id, "set_trial_system_attr", key, value)
        self.new[trial_id].system_attrs[key] = value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id not in self.new:
            return self._through(trial_id, "set_trial_user_attr", key, value)
        self.new[trial_id].user_attrs[key] = value

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        if trial_id not in self.new:
            return self._through(trial_id, "set_trial_intermediate_value", step, intermediate_value)
        self.new[trial_id].intermediate_values[step] = intermediate_value

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        if trial_id not in self.new:
            return self._through(trial_id, "set_trial_state_values", state, values)
        self.new[trial_id].state = state
        self._new_states.add(state)
        self.new[trial_id].values = None if values is None else list(values)
        return True

    def _through(self, trial_id: int, method: str, *args: Any) -> Any:
        """A change to a trial of the storage: written now, and read back into this view."""
        result = getattr(self.storage, method)(trial_id, *args)
        if self._read is not None:
            self._read[trial_id] = self.storage.get_trial(trial_id)
        self._filtered.clear()
        if method == "set_trial_state_values" and args[0] == TrialState.RUNNING and result:
            self.taken.append(trial_id)  # a waiting retry, now this worker's
        return result

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial = self.new.get(trial_id)
        if trial is None:
            read = self._read or {}
            return read[trial_id] if trial_id in read else self.storage.get_trial(trial_id)
        copied = copy.copy(trial)  # what the caller changes of it must not change this batch's trial
        for field in ("params", "distributions", "user_attrs", "system_attrs", "intermediate_values"):
            setattr(copied, field, dict(getattr(trial, field)))
        return copied

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if study_id != self.study_id:
            return self.storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        # Optuna reads the waiting trials at every ask: the trials read are filtered once per set of states.
        key = None if states is None else tuple(sorted(states))
        if key not in self._filtered:
            if self._read is None and key == (TrialState.WAITING,):
                self._filtered[key] = writer(self.storage).waiting(self.storage, study_id)
            else:
                self._filtered[key] = [t for t in self._all().values() if states is None or t.state in states]
        trials = self._filtered[key]
        if self.new and (states is None or any(s in states for s in self._new_states)):
            trials = trials + [t for t in self.new.values() if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def _all(self) -> dict[int, FrozenTrial]:
        if self._read is None:
            self._read = {t._trial_id: t for t in self.storage.get_all_trials(self.study_id, deepcopy=False)}
        return self._read

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        for trial in [*self._all().values(), *self.new.values()]:
            if trial.number == trial_number:
                return trial._trial_id
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    # The study itself: read from the storage.
    def create_new_study(self, directions, study_name=None):  # noqa: ANN001, ANN201
        return self.storage.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.storage.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.storage.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.storage.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.storage.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.storage.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int):  # noqa: ANN201
        return self.storage.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.storage.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.storage.get_study_system_attrs(study_id)

    def get_all_studies(self):  # noqa: ANN201
        return self.storage.get_all_studies()

    def commit(self, owner_attrs: dict[str, Any]) -> list[FrozenTrial]:
        """Create this batch's new trials in the storage in one write, with ``owner_attrs``; returns them as stored."""
        templates = []
        now = datetime.now()
        for trial in self.new.values():
            template = copy.copy(trial)
            template.system_attrs = {**trial.system_attrs, **owner_attrs}
            template.datetime_start = now
            templates.append(template)
        return create(self.storage, self.study_id, templates) if templates else []


class Writer:
    """How a batch is written to one kind of storage; this base class uses Optuna's public per-trial API."""

    #: How often a waiting worker reads :meth:`version` (seconds): at least ten times what one read costs,
    #: and a small part of a batch (the other workers of a CMA-ES generation wait as long for it).
    wake_s = 0.01

    def version(self, storage: BaseStorage, study_id: int) -> Any:
        """Something cheap to read that changes whenever a trial of the study is created or finished
        (None: the storage has nothing cheaper than reading the trials, and a waiting worker just waits)."""
        return None

    def states(self, storage: BaseStorage, study_id: int) -> Counter:
        """How many of the study's trials are in each state."""
        return Counter(t.state for t in storage.get_all_trials(study_id, deepcopy=False))

    def waiting(self, storage: BaseStorage, study_id: int) -> list[FrozenTrial]:
        """The study's WAITING trials (retries to take)."""
        return storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))

    def create(self, storage: BaseStorage, study_id: int, templates: list[FrozenTrial]) -> list[FrozenTrial]:
        """Create RUNNING trials from ``templates`` (params, attributes; the first heartbeat where the storage has one)."""
        ids = [storage.create_new_trial(study_id, template_trial=t) for t in templates]
        if is_heartbeat_enabled(storage):
            for trial_id in ids:
                storage.record_heartbeat(trial_id)
        return [storage.get_trial(i) for i in ids]

    def finish(self, storage: BaseStorage, results: Sequence[Result]) -> None:
        """Write each result; a trial finished meanwhile keeps its state (its result is dropped)."""
        for result in results:
            try:
                for key, value in result.user_attrs.items():
                    storage.set_trial_user_attr(result.trial_id, key, value)
                for key, value in result.system_attrs.items():
                    storage.set_trial_system_attr(result.trial_id, key, value)
                for step, value in result.intermediate_values.items():
                    storage.set_trial_intermediate_value(result.trial_id, step, value)
                storage.set_trial_state_values(result.trial_id, result.state, result.values)
            except UpdateFinishedTrialError:
                pass

    def live(self, storage: BaseStorage, study_id: int, states: Container[TrialState],
             keys: Sequence[str]) -> list[Any]:
        """The study's trials in ``states``: number, state, start and (at least) the system attributes ``keys``."""
        return storage.get_all_trials(study_id, deepcopy=False, states=states)

    def beat(self, storage: BaseStorage, trial_ids: Sequence[int], attr: str, now: float) -> None:
        """Record a heartbeat for each trial: the storage's own, or the time in system attribute ``attr``."""
        for trial_id in trial_ids:
            try:
                if is_heartbeat_enabled(storage):
                    storage.record_heartbeat(trial_id)
                else:
                    storage.set_trial_system_attr(trial_id, attr, now)
            except UpdateFinishedTrialError:
                pass


class JournalWriter(Writer):
    """The journal: a batch is one ``append_logs`` call (one lock, one fsync) of Optuna's own log lines."""

    wake_s = 0.0005  # a stat: a few microseconds

    def version(self, storage: BaseStorage, study_id: int) -> Any:
        import os

        return os.stat(storage._backend._file_path).st_size  # every change is an append

    def _append(self, storage: optuna.storages.JournalStorage, logs: list[dict[str, Any]], worker_id: str) -> None:
        for log in logs:
            log["worker_id"] = worker_id
        storage._backend.append_logs(logs)
        storage._sync_with_backend()

    def create(self, storage: BaseStorage, study_id: int, templates: list[FrozenTrial]) -> list[FrozenTrial]:
        from optuna.storages.journal._storage import JournalOperation

        logs = [{"op_code": JournalOperation.CREATE_TRIAL, **_create_log(study_id, t)} for t in templates]
        with storage._thread_lock:
            replay = storage._replay_result
            # Written under this thread's worker id, so that the replay tells us the last trial we
            # created; one append is contiguous in the file, so ours are the ones just before it.
            self._append(storage, logs, replay.worker_id)
            last = replay._last_created_trial_id_by_this_process
            # Not copied: the replay replaces a trial's object when it changes, never changes it.
            return [replay.get_trial(i) for i in range(last - len(logs) + 1, last + 1)]

    def finish(self, storage: BaseStorage, results: Sequence[Result]) -> None:
        self._write(storage, [log for result in results for log in _result_logs(result)])

    def beat(self, storage: BaseStorage, trial_ids: Sequence[int], attr: str, now: float) -> None:
        from optuna.storages.journal._storage import JournalOperation

        self._write(storage, [{"op_code": JournalOperation.SET_TRIAL_SYSTEM_ATTR, "trial_id": i,
                               "system_attr": {attr: now}} for i in trial_ids])

    def _write(self, storage: BaseStorage, logs: list[dict[str, Any]]) -> None:
        with storage._thread_lock:
            # Under a worker id no thread has: the replay skips a line for a trial finished meanwhile
            # instead of raising in the middle of the batch (which this thread's own id would do).
            self._append(storage, logs, storage._replay_result.worker_id + "-batch")


def _create_log(study_id: int, trial: FrozenTrial) -> dict[str, Any]:
    """Optuna's CREATE_TRIAL journal line for a trial made from a template (as ``JournalStorage.create_new_trial``)."""
    start = trial.datetime_start.astimezone(timezone.utc) if trial.datetime_start else datetime.now(timezone.utc)
    return {"study_id": study_id, "state": int(trial.state), "value": None, "values": None,
            "datetime_start": start.isoformat(timespec="microseconds"),
            "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
            "params": {k: trial.distributions[k].to_internal_repr(v) for k, v in trial.params.items()},
            "user_attrs": trial.user_attrs, "system_attrs": trial.system_attrs,
            "intermediate_values": trial.intermediate_values}


def _result_logs(result: Result) -> list[dict[str, Any]]:
    from optuna.storages.journal._storage import JournalOperation as Op

    i = result.trial_id
    logs = [{"op_code": Op.SET_TRIAL_USER_ATTR, "trial_id": i, "user_attr": {k: v}} for k, v in result.user_attrs.items()]
    logs += [{"op_code": Op.SET_TRIAL_SYSTEM_ATTR, "trial_id": i, "system_attr": {k: v}}
             for k, v in result.system_attrs.items()]
    logs += [{"op_code": Op.SET_TRIAL_INTERMEDIATE_VALUE, "trial_id": i, "step": s, "intermediate_value": v}
             for s, v in result.intermediate_values.items()]
    logs.append({"op_code": Op.SET_TRIAL_STATE_VALUES, "trial_id": i, "state": int(result.state),
                 "values": result.values,
                 "datetime_complete": datetime.now(timezone.utc).isoformat(timespec="microseconds")})
    return logs


def _utc(when: datetime) -> datetime:
    """A local time as Optuna's RDB storage keeps it (naive UTC)."""
    return when.astimezone(timezone.utc).replace(tzinfo=None)


@dataclasses.dataclass
class LiveTrial:
    """What the batch checks and the sweeps read of a trial (the RDB writer reads no more than this)."""

    _trial_id: int
    number: int
    state: TrialState
    datetime_start: datetime | None
    system_attrs: dict[str, Any]


class RdbWriter(Writer):
    """An RDB storage (PostgreSQL), behind Optuna's cache: a batch is one transaction of bulk statements
    (SQLAlchemy Core on Optuna's tables), and the checks read only the columns they need."""

    @staticmethod
    def _session(storage: BaseStorage):  # noqa: ANN205
        from optuna.storages._rdb.storage import _create_scoped_session

        return _create_scoped_session(storage._backend.scoped_session)

    def create(self, storage: BaseStorage, study_id: int, templates: list[FrozenTrial]) -> list[FrozenTrial]:
        import sqlalchemy
        from optuna.storages._rdb import models

        with self._session(storage) as session:
            # Optuna's own lock for numbering trials: the study's row.
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            count = session.query(sqlalchemy.func.count(models.TrialModel.trial_id)).filter(
                models.TrialModel.study_id == study_id).scalar()
            ids = session.execute(
                sqlalchemy.insert(models.TrialModel).returning(models.TrialModel.trial_id, sort_by_parameter_order=True),
                [{"study_id": study_id, "number": count + k, "state": TrialState.RUNNING,
                  "_datetime_start_utc": _utc(t.datetime_start)} for k, t in enumerate(templates)]).scalars().all()
            self._insert(session, models.TrialHeartbeatModel, [{"trial_id": i} for i in ids])
            self._insert(session, models.TrialParamModel, [
                {"trial_id": i, "param_name": name, "param_value": t.distributions[name].to_internal_repr(value),
                 "distribution_json": distribution_to_json(t.distributions[name])}
                for i, t in zip(ids, templates) for name, value in t.params.items()])
            for model, field in ((models.TrialSystemAttributeModel, "system_attrs"),
                                 (models.TrialUserAttributeModel, "user_attrs")):
                self._insert(session, model, [{"trial_id": i, "key": key, "value_json": json.dumps(value)}
                                              for i, t in zip(ids, templates)
                                              for key, value in getattr(t, field).items()])
        trials = []
        for k, (trial_id, template) in enumerate(zip(ids, templates)):
            trial = copy.deepcopy(template)
            trial._trial_id, trial.number = trial_id, count + k
            trials.append(trial)
        return trials

    @staticmethod
    def _insert(session, model, rows: list[dict[str, Any]]) -> None:  # noqa: ANN001
        import sqlalchemy

        if rows:
            session.execute(sqlalchemy.insert(model), rows)

    def finish(self, storage: BaseStorage, results: Sequence[Result]) -> None:
        import sqlalchemy
        from optuna.storages._rdb import models

        with self._session(storage) as session:
            running = set(session.execute(
                sqlalchemy.select(models.TrialModel.trial_id)
                .where(models.TrialModel.trial_id.in_([r.trial_id for r in results]),
                       models.TrialModel.state == TrialState.RUNNING).with_for_update()).scalars())
            told = [r for r in results if r.trial_id in running]  # the others were failed meanwhile
            if not told:
                return
            ids = [r.trial_id for r in told]
            for model, field in ((models.TrialUserAttributeModel, "user_attrs"),
                                 (models.TrialSystemAttributeModel, "system_attrs")):
                keys = {key for r in told for key in getattr(r, field)}
                session.execute(sqlalchemy.delete(model).where(model.trial_id.in_(ids), model.key.in_(keys)))
                self._insert(session, model, [{"trial_id": r.trial_id, "key": key, "value_json": json.dumps(value)}
                                              for r in told for key, value in getattr(r, field).items()])
            intermediate = []
            for r in told:
                for step, value in r.intermediate_values.items():
                    stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                    intermediate.append({"trial_id": r.trial_id, "step": step, "intermediate_value": stored,
                                         "intermediate_value_type": kind})
            self._insert(session, models.TrialIntermediateValueModel, intermediate)
            values = []
            for r in told:
                for objective, value in enumerate(r.values or ()):
                    stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                    values.append({"trial_id": r.trial_id, "objective": objective, "value": stored, "value_type": kind})
            self._insert(session, models.TrialValueModel, values)
            now = _utc(datetime.now())
            for state in {r.state for r in told}:
                session.execute(sqlalchemy.update(models.TrialModel)
                                .where(models.TrialModel.trial_id.in_([r.trial_id for r in told if r.state == state]))
                                .values(state=state, _datetime_complete_utc=now))

    def states(self, storage: BaseStorage, study_id: int) -> Counter:
        import sqlalchemy
        from optuna.storages._rdb import models

        trial = models.TrialModel
        with self._session(storage) as session:
            rows = session.execute(sqlalchemy.select(trial.state, sqlalchemy.func.count(trial.trial_id))
                                   .where(trial.study_id == study_id).group_by(trial.state)).all()
        return Counter({TrialState(state): n for state, n in rows})

    def waiting(self, storage: BaseStorage, study_id: int) -> list[FrozenTrial]:
        # Asked of the database itself: Optuna's cache would first read every unfinished trial
        # again (all the running trials of every worker), whatever the states asked for.
        return storage._backend.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))

    def version(self, storage: BaseStorage, study_id: int) -> Any:
        import sqlalchemy
        from optuna.storages._rdb import models

        trial = models.TrialModel
        with self._session(storage) as session:
            return tuple(session.execute(sqlalchemy.select(sqlalchemy.func.count(trial.trial_id),
                                                           sqlalchemy.func.count(trial._datetime_complete_utc))
                                         .where(trial.study_id == study_id)).one())

    def beat(self, storage: BaseStorage, trial_ids: Sequence[int], attr: str, now: float) -> None:
        import sqlalchemy
        from optuna.storages._rdb import models

        with self._session(storage) as session:
            session.execute(sqlalchemy.update(models.TrialHeartbeatModel)
                            .where(models.TrialHeartbeatModel.trial_id.in_(list(trial_ids)))
                            .values(heartbeat=sqlalchemy.func.current_timestamp()))

    def live(self, storage: BaseStorage, study_id: int, states: Container[TrialState],
             keys: Sequence[str]) -> list[LiveTrial]:
        import sqlalchemy
        from optuna.storages._rdb import models

        trial, attr = models.TrialModel, models.TrialSystemAttributeModel
        with self._session(storage) as session:
            rows = session.execute(sqlalchemy.select(trial.trial_id, trial.number, trial.state, trial._datetime_start_utc)
                                   .where(trial.study_id == study_id, trial.state.in_(list(states)))).all()
            attrs = session.execute(sqlalchemy.select(attr.trial_id, attr.key, attr.value_json)
                                    .join(trial, trial.trial_id == attr.trial_id)
                                    .where(trial.study_id == study_id, trial.state.in_(list(states)),
                                           attr.key.in_(list(keys)))).all() if keys else []
        found: dict[int, dict[str, Any]] = {}
        for trial_id, key, value in attrs:
            found.setdefault(trial_id, {})[key] = json.loads(value)
        local = lambda utc: None if utc is None else utc.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)  # noqa: E731
        return [LiveTrial(i, n, state, local(start), found.get(i, {})) for i, n, state, start in rows]


def _writers() -> dict[type, Writer]:
    from optuna.storages._cached_storage import _CachedStorage

    return {optuna.storages.JournalStorage: JournalWriter(), _CachedStorage: RdbWriter()}


#: The writer of each storage class (any other storage: :class:`Writer`, Optuna's public API).
WRITERS: dict[type, Writer] = _writers()


def writer(storage: BaseStorage) -> Writer:
    return next((WRITERS[cls] for cls in type(storage).__mro__ if cls in WRITERS), Writer())


def create(storage: BaseStorage, study_id: int, templates: list[FrozenTrial]) -> list[FrozenTrial]:
    return writer(storage).create(storage, study_id, templates)


def finish(storage: BaseStorage, results: Sequence[Result]) -> None:
    if results:
        writer(storage).finish(storage, results)


def beat(storage: BaseStorage, trial_ids: Sequence[int], attr: str, now: float) -> None:
    if trial_ids:
        writer(storage).beat(storage, trial_ids, attr, now)


def version(study: optuna.Study) -> tuple[Any, float]:
    """(:meth:`Writer.version` of the study, how often to read it while waiting)."""
    found = writer(study._storage)
    return found.version(study._storage, study._study_id), found.wake_s


def states(study: optuna.Study) -> Counter:
    """How many of the study's trials are in each state (:class:`TrialState`)."""
    return writer(study._storage).states(study._storage, study._study_id)


def live(study: optuna.Study, states: Container[TrialState], keys: Sequence[str] = ()) -> list[Any]:
    """The study's trials in ``states``, as much of each as the batch checks and the sweeps read
    (number, state, start, system attributes ``keys``): all of it, except from an RDB storage."""
    return writer(study._storage).live(study._storage, study._study_id, states, keys)
