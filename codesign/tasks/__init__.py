"""Tasks: an architecture and a loss, each evaluating a batch of candidate rules in one network."""

from __future__ import annotations

from codesign.errors import UnknownNameError
from codesign.tasks.base import LOSS_CAP, Evaluation, Task
from codesign.tasks.oja import OjaTask
from codesign.tasks.pca_network import PcaNetworkTask
from codesign.tasks.target_rate import TargetRateTask

__all__ = ["TASKS", "LOSS_CAP", "Evaluation", "Task", "task_class"]

#: Every task by the name used in study files (``task: {kind: NAME}``).
TASKS: dict[str, type[Task]] = {OjaTask.name: OjaTask, TargetRateTask.name: TargetRateTask,
                                PcaNetworkTask.name: PcaNetworkTask}


def task_class(kind: str, **where: str | None) -> type[Task]:
    if kind not in TASKS:
        raise UnknownNameError("task", kind, list(TASKS), **where)
    return TASKS[kind]
