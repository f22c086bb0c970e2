"""Study files (``studies/*.yaml``) as typed, checked objects.

Every error names the file, the key path and the fix; see :mod:`codesign.schema`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from codesign.hardware import Target, load_target
from codesign.rules import TERMS
from codesign.schema import Where, build, read_yaml

__all__ = ["RuleSpec", "SamplerSpec", "StudySpec", "load_study"]


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """The rule family searched (``rule:``)."""

    family: Literal["polynomial"] = "polynomial"
    #: The searched terms, ``theta_abc``; ``all`` for the 27 of the family.
    terms: str | list[str] = "all"
    bounds: tuple[float, float] = (-1.0, 1.0)
    eta: float = dataclasses.field(default=10.0, metadata={"min": 0.0, "help": "eta is a rate in 1/s"})

    @property
    def searched(self) -> tuple[str, ...]:
        return TERMS if self.terms == "all" else tuple(self.terms)

    def validate(self, where: Where) -> None:
        if isinstance(self.terms, str) and self.terms != "all":
            raise where.child("terms").error(f"expected 'all' or a list of terms, got {self.terms!r}",
                                             fix="write terms: all, or a list such as [theta_110, theta_021]")
        for i, term in enumerate(self.searched):
            if term not in TERMS:
                raise where.child("terms").child(i).error(
                    f"unknown term {term!r}", fix="terms are theta_abc with a, b, c in 0..2 (powers of x, y, w)")
        if len(set(self.searched)) != len(self.searched):
            raise where.child("terms").error("a term is listed twice", fix="list each term once")
        if not self.searched:
            raise where.child("terms").error("no term to search", fix="list at least one term")
        if self.bounds[0] >= self.bounds[1]:
            raise where.child("bounds").error(f"low must be below high, got {list(self.bounds)}",
                                              fix="write bounds: [low, high]")


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """The Optuna sampler (``sampler:``)."""

    #: CMA-ES starts from a batch of random rules, then from the centre of the bounds with a step
    #: of a sixth of their width (Optuna's defaults).
    name: Literal["cmaes", "tpe", "random"] = "cmaes"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The task (``task:``): its kind and that kind's own parameters."""

    kind: str
    params: Any


@dataclasses.dataclass(frozen=True)
class _StudyFile:
    task: dict[str, Any]
    target: str = dataclasses.field(metadata={"help": "name a file in hw_targets/, e.g. hw_targets/cpu.yaml"})
    name: str | None = None
    rule: RuleSpec = RuleSpec()
    sampler: SamplerSpec = SamplerSpec()
    n_trials: int = dataclasses.field(default=200, metadata={"min": 1})
    batch_size: int = dataclasses.field(default=12, metadata={"min": 1, "max": 100000})
    seed: int = dataclasses.field(default=0, metadata={"min": 0})
    #: An Optuna storage URL; by default a journal file under ``results/<name>/``.
    storage: str | None = None

    def validate(self, where: Where) -> None:
        if self.sampler.name == "cmaes" and self.batch_size < 4:
            raise where.child("batch_size").error(
                f"CMA-ES uses the batch as its population, which needs at least 4 rules; got {self.batch_size}",
                fix="set batch_size: 4 or more, or use sampler: {name: tpe}")


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """A whole study: what to search, on which task and target, with which sampler and storage."""

    name: str
    file: str
    task: TaskSpec
    target: Target
    rule: RuleSpec
    sampler: SamplerSpec
    n_trials: int
    batch_size: int
    seed: int
    storage: str | None

    @property
    def results_dir(self) -> Path:
        return Path("results") / self.name

    def storage_url(self, override: str | None = None) -> str:
        """The storage to use: ``override`` (``--storage``), the file's, or the default journal."""
        return override or self.storage or f"journal:{self.results_dir / 'journal.log'}"


def _resolve_target(value: str, study_file: Path, where: Where) -> Path:
    candidates = [Path(value), study_file.parent / value, study_file.parent.parent / value]
    for path in candidates:
        if path.is_file():
            return path
    raise where.error(f"target file {value!r} not found",
                      fix="give a path to a file in hw_targets/ (relative to the current directory)")


def load_study(path: str | Path) -> StudySpec:
    """Read and check a study file, its task parameters and its target file."""
    from codesign.tasks import task_class

    path = Path(path)
    where = Where(str(path))
    raw = build(_StudyFile, read_yaml(path, "study file"), where)
    task_where = where.child("task")
    task_data = dict(raw.task)
    kind = task_data.pop("kind", None)
    if not isinstance(kind, str):
        raise task_where.child("kind").error("missing required key" if kind is None else f"expected a string, got {kind!r}",
                                             fix="add kind: oja")
    cls = task_class(kind, file=str(path), key="task.kind")
    params = build(cls.Params, task_data, task_where)
    target_path = _resolve_target(raw.target, path, where.child("target"))
    name = raw.name or path.stem
    if not name.replace("-", "").replace("_", "").isalnum():
        raise where.child("name").error(f"{name!r} is not usable as a folder name",
                                        fix="use letters, digits, - and _")
    return StudySpec(name=name, file=str(path), task=TaskSpec(kind, params), target=load_target(target_path),
                     rule=raw.rule, sampler=raw.sampler, n_trials=raw.n_trials, batch_size=raw.batch_size,
                     seed=raw.seed, storage=raw.storage)
