"""What a model's evaluation of one candidate reports."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from codesign.hardware import EventCounts

__all__ = ["Evaluation", "LOSS_CAP"]

#: Loss given to a candidate whose simulation diverged (NaN or infinite weights), and the ceiling of
#: every loss, so that one runaway rule cannot dominate a sampler's statistics.
LOSS_CAP = 10.0


@dataclasses.dataclass
class Evaluation:
    """The loss of one candidate, its metrics (JSON-friendly scalars and lists, stored with the trial),
    larger arrays for plots (not stored), whether it diverged and the events its network counted."""

    loss: float
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    arrays: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    diverged: bool = False
    counts: EventCounts | None = None

    @staticmethod
    def capped(loss: float) -> float:
        return LOSS_CAP if not math.isfinite(loss) else min(float(loss), LOSS_CAP)
