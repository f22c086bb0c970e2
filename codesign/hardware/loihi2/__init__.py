"""Loihi 2 (lava-nc 0.10.0): compile Brian2 plasticity rules to its learning engine and port tasks.

* :mod:`~codesign.hardware.loihi2.compiler`: Brian2 synapse text -> ``Loihi2FLearningRule``.
* :mod:`~codesign.hardware.loihi2.network`: the target-rate network in Brian2 and in Lava, and
  :func:`port` comparing Brian2, Lava floating point and Lava fixed point.
* :mod:`~codesign.hardware.loihi2.limits`: the figures of ``hw_targets/loihi2.yaml``.

Lava is imported only when a Lava network is built.
"""

from __future__ import annotations

from codesign.hardware.loihi2.compiler import (CompiledRule, ExpandedRule, LoihiTerm, compile_rule, expand_rule,
                                               lower, optimise_impulses, quantise_scale)
from codesign.hardware.loihi2.limits import EngineLimits, Loihi2Target, load_loihi2_target
from codesign.hardware.loihi2.network import PortParams, port, port_params

__all__ = ["CompiledRule", "ExpandedRule", "LoihiTerm", "compile_rule", "expand_rule", "lower", "optimise_impulses",
           "quantise_scale", "EngineLimits", "Loihi2Target", "load_loihi2_target", "PortParams", "port", "port_params"]
