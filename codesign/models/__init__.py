"""Models written once: networks, rules and losses as Brian2 text in ``models/*.yaml``.

:func:`load_model` reads a model file; :class:`ModelTask` evaluates batches of candidates of it on a
hardware target; the libraries it draws on are :data:`STIMULI` (inputs drawn from a seed) and
:data:`LOSSES`.
"""

from __future__ import annotations

from codesign.models.evaluation import LOSS_CAP, Evaluation
from codesign.models.losses import LOSSES, Recordings
from codesign.models.spec import ModelSpec, load_model
from codesign.models.stimuli import STIMULI
from codesign.models.task import ModelTask

from codesign.models import recordings_nwb as _recordings_nwb  # noqa: E402,F401  (registers the .nwb format)

__all__ = ["load_model", "ModelSpec", "ModelTask", "Evaluation", "LOSS_CAP", "LOSSES", "STIMULI", "Recordings"]
