"""Inferring a plasticity rule from recordings (Mehta et al. 2024, SCIENCE.md section 2): a study whose
candidates are simulated on the recorded inputs and scored by ``trajectory_fit``, then the best rule's R^2
on the trajectories held out of the fit, next to the teacher's coefficients where the recordings name it.

The fit is an ordinary study (one Optuna study in a journal under ``results/infer-FILE/``, e.g.
``results/infer-oja-nwb/`` for ``oja.nwb``: a study per recordings file and format; CMA-ES by
default, batched candidates), so it resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

from codesign.errors import CodesignError
from codesign.schema import Where

__all__ = ["InferSettings", "infer_study", "infer"]


@dataclasses.dataclass(frozen=True)
class InferSettings:
    """What ``codesign infer`` searches: the model's one rule slot over ``terms`` (``all``: the family's),
    ``fit`` trajectories fitted (the rest held out), and the study's budget."""

    recordings: str
    model: str | None = None
    terms: str | Sequence[str] = "all"
    fit: int | None = None
    n_trials: int = 1500
    batch_size: int = 16
    seed: int = 0
    eta: float | None = None
    bounds: tuple[float, float] = (-2.0, 2.0)
    target: str = "cpu-standalone"
    sampler: str = "cmaes"
    storage: str | None = None
    #: L1 penalty on the coefficients, and refinement rounds (``sparsity:`` of a study).
    l1: float = 0.0
    refine_rounds: int = 0
    refine_threshold: float = 0.05


def _fit_count(settings: InferSettings, available: int) -> int:
    fit = settings.fit if settings.fit is not None else max(1, (2 * available) // 3)
    if not 1 <= fit < available:
        raise CodesignError(f"fits {fit} of {available} trajectories and holds none out", key="--fit",
                            fix=f"fit between 1 and {available - 1} trajectories")
    return fit


def infer_study(settings: InferSettings) -> tuple[Any, Any]:
    """The fitting study (a :class:`~codesign.spec.StudySpec`) and the held-out trajectories' task."""
    from codesign.hardware import load_target
    from codesign.models import ModelTask, load_model
    from codesign.models.recorder import Recorded, recording_model
    from codesign.models.recordings import load_trajectories
    from codesign.models.spec import bundled_model
    from codesign.spec import RuleSpec, SamplerSpec, StudySpec, resolve_target

    recorded = load_trajectories(settings.recordings)
    info = recorded.info
    model_path = settings.model or info.get("model")
    if not model_path:
        raise CodesignError("the recordings name no model", key="--model", fix="give --model MODEL_FILE")
    where = Where(None, "--model")
    path = Path(model_path)
    if not path.is_file():  # recorded elsewhere: codesign's own model of that name
        path = bundled_model(path.stem if path.suffix in (".yaml", ".yml") else str(model_path), where)
    model = load_model(path).with_constants(info.get("constants") or {}, Where(settings.recordings, "info.constants"))
    if len(model.slots) != 1:
        raise CodesignError(f"model {model.name} has {len(model.slots)} rule slots", key="--model",
                            fix="infer the rule of a model with one plastic synapse")
    (slot, family), = model.slots.items()
    fit = _fit_count(settings, recorded.count)
    what = Recorded(info["activity_var"], info.get("weights_var"), recorded.every, info.get("fit", "trajectory_fit"),
                    info.get("probability_var"))
    fitted = recording_model(model, what, where, file=settings.recordings, first=0, count=fit)
    held_out = recording_model(model, what, where, file=settings.recordings, first=fit, count=recorded.count - fit)
    target = load_target(resolve_target(settings.target, Path.cwd() / "study.yaml", Where(None, "--target")))
    teacher = (info.get("teacher") or {}).get(slot, {})
    terms = settings.terms if isinstance(settings.terms, str) else list(settings.terms)
    rule = RuleSpec(family=family, terms=terms, bounds=tuple(settings.bounds),
                    eta=settings.eta if settings.eta is not None else teacher.get("eta"))
    try:
        rule.validate(Where(None, "rule"))
    except CodesignError as exc:  # the rule's own key is the option here
        raise CodesignError(exc.message, key="--terms", fix=exc.fix) from None
    name = "infer-" + Path(settings.recordings).name.replace(".", "-")  # oja.npz and oja.nwb: two studies
    spec = StudySpec(name=name, file=str(settings.recordings), model=fitted, target=target, rules={slot: rule},
                     sampler=SamplerSpec(settings.sampler), n_trials=settings.n_trials, batch_size=settings.batch_size,
                     seed=settings.seed, storage=settings.storage, sparsity=_sparsity(settings))
    return spec, ModelTask(held_out, target)


def _sparsity(settings: InferSettings) -> Any:
    from codesign.spec import RefineSpec, SparsitySpec

    if not settings.l1 >= 0:
        raise CodesignError(f"l1 {settings.l1:g}", key="--l1", fix="give a penalty of at least 0")
    if not 0 < settings.refine_threshold < 1:
        raise CodesignError(f"threshold {settings.refine_threshold:g}", key="--refine",
                            fix="give a threshold between 0 and 1 (exclusive), e.g. --refine 2 0.05")
    # Trajectories fix the rule's scale: the penalty picks the terms, the rounds refit them unpenalised.
    refine = RefineSpec(settings.refine_rounds, settings.refine_threshold, relax=True) if settings.refine_rounds else None
    return SparsitySpec(settings.l1, refine) if settings.l1 or refine else None


def infer(settings: InferSettings) -> dict[str, Any]:
    """Fit the rule, then score it on the held-out trajectories: the recovered coefficients (and the
    teacher's), the held-out metrics, trials and seconds."""
    from codesign.report.summary import best_trial
    from codesign.rules import FAMILIES
    from codesign.search.space import candidate
    from codesign.search.rounds import existing_rounds, final_round
    from codesign.search.study import count_trials
    from codesign.search.worker import run_worker

    spec, held_out = infer_study(settings)
    began = time.perf_counter()
    stats = run_worker(spec)
    rounds = existing_rounds(spec)
    spec, study = final_round(spec, rounds=rounds)
    best = best_trial(spec, study)  # a one-line error where every trial diverged
    (slot, rule), = spec.rules.items()
    found = candidate(spec, best.params, name="inferred")
    evaluation = held_out.evaluate([found], seed=spec.seed)[0]
    teacher = _teacher(settings.recordings, slot)
    reference = {}
    if teacher.get("coefficients") is not None and teacher.get("family") == rule.family:  # the best there is
        ref = spec.model.rules[slot]
        taught = FAMILIES[rule.family].rule(ref, teacher["coefficients"], eta=teacher.get("eta") or rule.learning_rate)
        taught_evaluation = held_out.evaluate([{slot: taught}], seed=spec.seed)[0]
        reference["teacher_held_out"] = {"loss": taught_evaluation.loss, **taught_evaluation.metrics}
    return {"study": spec.name, "slot": slot, "family": rule.family, "eta": rule.learning_rate,
            "fit_loss": best.user_attrs.get("metrics", {}).get("unpenalised_loss", best.values[0]),
            "trials": sum(count_trials(r.study)[0] for r in rounds), "new_trials": stats.trials,
            "rounds": [{"round": r.spec.round, "terms": list(r.spec.rule.searched)} for r in rounds],
            "seconds": time.perf_counter() - began,
            "fitted_trajectories": spec.model.draws, "held_out_trajectories": held_out.model.draws,
            "coefficients": {t: float(best.params.get(spec.param_name(slot, t), 0.0))
                             for t in rounds[0].spec.rule.searched},  # those refinement dropped are 0
            "teacher": teacher, "held_out": {"loss": evaluation.loss, **evaluation.metrics},
            "readable": found[slot].readable(), **reference}


def _teacher(recordings: str, slot: str) -> dict[str, Any]:
    from codesign.models.recordings import load_trajectories

    return (load_trajectories(recordings).info.get("teacher") or {}).get(slot, {})
