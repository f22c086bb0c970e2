"""codesign from Python (a notebook, a script): load a model or a study, evaluate candidates, run a
study, read its best rules and trials. What ``codesign check``, ``eval``, ``run`` and ``best`` do, as
objects; every error is a :class:`~codesign.errors.CodesignError` with the one-line message the
command would print.

    import codesign

    study = codesign.load_study("studies/oja.yaml")
    study.evaluate(["oja", "hebb"])          # named candidates, on held-out input draws
    study.run(n_trials=200)
    study.best()["readable"]                 # as `codesign best --json`
    study.trials()[:3]

    model = codesign.load_model("models/oja.yaml", n_inputs=4, draws=2)
    model.evaluate(["oja"], seed=1)          # on hw_targets/cpu.yaml unless a target is given
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import optuna

    from codesign.models import Evaluation, ModelSpec, ModelTask
    from codesign.rules import Candidate, Rule
    from codesign.spec import StudySpec

__all__ = ["load_study", "load_model", "Study", "Model"]

#: A candidate as the API takes it: a name the model knows, a rule file, a rule (one-slot model), a
#: slot -> rule mapping, or (a study only) its parameters as in a trial, ``{"theta_110": 1.0, ...}``.
CandidateLike = Any


def load_study(path: str | Path, target: str | Path | None = None, storage: str | None = None) -> Study:
    """The study file at ``path`` (with its model and target; ``target`` replaces the target, as
    ``--target``; ``storage`` the storage URL, as ``--storage``)."""
    from codesign.spec import load_study as load

    return Study(load(path, None if target is None else str(target)), storage)


def load_model(path: str | Path, draws: int | str | None = None, **constants: Any) -> Model:
    """The model file at ``path`` (or codesign's own model of that bare name, ``"oja"``) with ``constants``
    in place of its own (numbers or expressions such as ``"0.3*second"``, as in a study's ``constants:``),
    and ``draws`` input draws if given."""
    from codesign.models import load_model as load
    from codesign.models.spec import model_file
    from codesign.schema import Where

    spec = load(model_file(path, Where(None, "load_model")))
    if constants or draws is not None:
        spec = spec.with_constants(constants, Where(None, "load_model"), draws)
    return Model(spec)


class Study:
    """A study file, loaded: :attr:`spec` is its :class:`~codesign.spec.StudySpec`."""

    def __init__(self, spec: StudySpec, storage: str | None = None) -> None:
        self.spec, self.storage = spec, storage
        self._task: ModelTask | None = None

    def __repr__(self) -> str:
        return f"<codesign study {self.spec.name}: model {self.spec.model.name}, target {self.spec.target.name}>"

    @property
    def task(self) -> ModelTask:
        """The study's model on its target (kept: its network is built once for every evaluation)."""
        if self._task is None:
            from codesign.search.study import make_task

            self._task = make_task(self.spec)
        return self._task

    def candidate(self, item: CandidateLike) -> dict[str, Rule]:
        """A candidate (slot -> rule) from a name, a rule file, rules, or the study's parameters."""
        if isinstance(item, Mapping) and item and all(isinstance(v, (int, float)) for v in item.values()):
            from codesign.errors import CodesignError
            from codesign.search.space import candidate, distributions

            unknown = sorted(set(item) - set(distributions(self.spec)))
            if unknown:
                raise CodesignError(f"{', '.join(unknown)}: not parameters of study {self.spec.name}",
                                    fix=f"its parameters: {', '.join(distributions(self.spec))}")
            return candidate(self.spec, dict(item))
        return self.task.candidate(item, self.spec.etas)

    def evaluate(self, candidates: Sequence[CandidateLike], seed: int | None = None,
                 knobs: Sequence[Mapping[str, Any] | None] | None = None) -> list[Evaluation]:
        """Each candidate's :class:`~codesign.models.Evaluation` (loss, metrics, diverged, counts), as
        ``codesign eval`` computes it: on input draws the study never trained on unless ``seed`` is
        given, with ``knobs[k]`` the hardware knobs of candidate k (default: the target's precision)."""
        from codesign.report import evaluate_candidates

        cands = [self.candidate(item) for item in candidates]
        return evaluate_candidates(self.spec, cands, seed, None if knobs is None else list(knobs))[0]

    def run(self, n_trials: int | None = None, workers: int = 1) -> Study:
        """Run (or resume) the study until it has ``n_trials`` finished trials (default: its ``n_trials``),
        with ``workers`` local processes, as ``codesign run`` does (without writing results/): refinement
        rounds, then the stability check, where the study file asks for them."""
        from codesign.report import check_stability
        from codesign.search.launcher import run_study
        from codesign.search.rounds import final_round

        run_study(self.spec, self.storage, n_trials, workers)
        check_stability(*final_round(self.spec, self.storage))
        return self

    @property
    def optuna(self) -> optuna.Study:
        """The Optuna study in the study's storage (created empty if it never ran)."""
        from codesign.search.study import open_study

        return open_study(self.spec, self.storage)

    def best(self, top: int = 5) -> dict[str, Any]:
        """The best rule and the ``top`` best distinct ones, as ``codesign best --json`` prints them (with
        refinement rounds, the last round's, and every round's summary)."""
        from codesign.report import best_summary
        from codesign.search.rounds import existing_rounds, final_round

        rounds = existing_rounds(self.spec, self.storage)
        spec, study = final_round(self.spec, self.storage, rounds)
        return best_summary(spec, study, top, rounds=rounds if len(rounds) > 1 else ())

    def best_candidate(self) -> dict[str, Rule]:
        """The best trial's candidate (slot -> rule), to evaluate or save (``codesign.rules.save_candidate``)."""
        from codesign.report import best_trial
        from codesign.search.rounds import final_round
        from codesign.search.space import candidate

        spec, study = final_round(self.spec, self.storage)
        trial = best_trial(spec, study)
        return candidate(spec, trial.params, name=f"{spec.name} trial {trial.number}")

    def trials(self) -> list[dict[str, Any]]:
        """Every trial: number, state, loss (None unless finished), objective values, parameters, metrics
        and why it diverged (pruned trials)."""
        return [{"number": t.number, "state": t.state.name, "loss": t.values[0] if t.values else None,
                 "values": list(t.values or []), "params": dict(t.params), "metrics": t.user_attrs.get("metrics", {}),
                 "diverged_reason": t.user_attrs.get("diverged_reason")}
                for t in self.optuna.get_trials(deepcopy=False)]

    def check(self) -> dict[str, Any]:
        """What ``codesign check STUDY.yaml --json`` prints: the batched network, validated without running."""
        from codesign.models.check import check_study

        return check_study(self.spec)


class Model:
    """A model file, loaded: :attr:`spec` is its :class:`~codesign.models.ModelSpec` (constants resolved)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"<codesign model {self.spec.name}: slots {self.spec.slots}, {self.spec.draws} draws>"

    @property
    def named(self) -> list[str]:
        """The candidates the model knows by name."""
        return list(self.spec.named)

    def task(self, target: str | Path | None = None) -> ModelTask:
        """The model on ``target`` (a target file; default ``hw_targets/cpu.yaml``, Brian2's numpy runtime)."""
        from codesign.hardware import load_target
        from codesign.hardware.target import bundled_target
        from codesign.models import ModelTask

        return ModelTask(self.spec, load_target(target or bundled_target("cpu")))

    def evaluate(self, candidates: Sequence[CandidateLike], seed: int = 0, target: str | Path | None = None,
                 etas: Mapping[str, float] | None = None) -> list[Evaluation]:
        """Each candidate's :class:`~codesign.models.Evaluation` on the input draws of ``seed``, in one batch.
        Candidates are names the model knows, rule files, rules or slot -> rule mappings; a named one
        learns at ``etas[slot]`` (default: its family's learning rate)."""
        from codesign.rules import FAMILIES

        task = self.task(target)
        etas = {slot: FAMILIES[family].default_eta for slot, family in task.slots.items()} | dict(etas or {})
        return task.evaluate([task.candidate(item, etas) for item in candidates], seed)

    def check(self, target: str | Path | None = None) -> dict[str, Any]:
        """What ``codesign check MODEL.yaml --json`` prints, for this model with its constants: the batched
        network of one candidate, validated without running."""
        from codesign.models.check import check_model

        return check_model(self.task(target))
