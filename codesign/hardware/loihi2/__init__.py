"""Loihi 2 (lava-nc 0.10.0): compile a study's model and rules for the chip and run them in Lava.

* :mod:`~codesign.hardware.loihi2.compiler`: Brian2 synapse text -> ``Loihi2FLearningRule``.
* :mod:`~codesign.hardware.loihi2.neurons`: a group's Brian2 equations -> Lava's LIF (or a refusal).
* :mod:`~codesign.hardware.loihi2.chip`: a model for one candidate and one input draw, mapped for the chip.
* :mod:`~codesign.hardware.loihi2.chip_order` and :mod:`~codesign.hardware.loihi2.lava_run`: that
  network in Brian2 in the chip's order of events, and in Lava (floating and fixed point).
* :mod:`~codesign.hardware.loihi2.port`: ``codesign port``, the four runs scored by the model's loss.
* :mod:`~codesign.hardware.loihi2.limits`: the ``loihi2:`` section of ``hw_targets/loihi2.yaml``,
  registered as a hardware engine.

This package imports nothing: ``codesign.hardware`` imports the limits (to register the engine)
while the port reads targets, so callers import the module they use.
"""
