"""Loihi 2 (lava-nc 0.10.0): compile Brian2 plasticity rules to its learning engine and port tasks.

* :mod:`~codesign.hardware.loihi2.compiler`: Brian2 synapse text -> ``Loihi2FLearningRule``.
* :mod:`~codesign.hardware.loihi2.network`: the target-rate network in Brian2 and in Lava, and
  :func:`port` comparing Brian2, Lava floating point and Lava fixed point.
* :mod:`~codesign.hardware.loihi2.limits`: the ``loihi2:`` figures of ``hw_targets/loihi2.yaml``.

Lava is imported only when a Lava network is built, and the network module only when used (the
target schema imports the limits, and the network module reads targets).
"""

from __future__ import annotations

from codesign.hardware.loihi2.compiler import (CompiledRule, ExpandedRule, LoihiTerm, compile_rule, expand_rule,
                                               lower, optimise_impulses, quantise_scale)
from codesign.hardware.loihi2.limits import EngineLimits, Loihi2Limits

__all__ = ["CompiledRule", "ExpandedRule", "LoihiTerm", "compile_rule", "expand_rule", "lower", "optimise_impulses",
           "quantise_scale", "EngineLimits", "Loihi2Limits", "load_loihi2_target", "PortParams", "port", "port_params",
           "port_changes"]

_NETWORK = {"load_loihi2_target", "PortParams", "port", "port_params", "port_changes"}


def __getattr__(name: str):
    if name in _NETWORK:
        from codesign.hardware.loihi2 import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
