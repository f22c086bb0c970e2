"""The loss library: what a model's ``loss:`` names (:data:`LOSSES`), or a user's ``module:function``.

:mod:`~codesign.models.losses.base` holds the contract (:class:`Loss`, :class:`Recordings`); each
other module registers its losses and is imported here, so the registry is full once this package
is imported.
"""

from __future__ import annotations

from codesign.models.losses import pca, rates, trajectory  # noqa: F401  (register their losses)
from codesign.models.losses.base import LOSSES, Loss, Recordings, UserLoss, make_loss, resolve_values

__all__ = ["LOSSES", "Loss", "Recordings", "UserLoss", "make_loss", "resolve_values"]
