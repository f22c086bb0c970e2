"""Loihi 2 (lava-nc 0.10.0): compile Brian2 plasticity rules to its learning engine and port tasks.

* :mod:`~codesign.hardware.loihi2.compiler`: Brian2 synapse text -> ``Loihi2FLearningRule``.
* :mod:`~codesign.hardware.loihi2.network`: the target-rate network in Brian2 and in Lava, and
  :func:`~codesign.hardware.loihi2.network.port` comparing Brian2, Lava floating point and Lava
  fixed point.
* :mod:`~codesign.hardware.loihi2.neurons`: a model's neuron group -> lava's LIF or LIFRefractory
  with its constants in Lava units (float and fixed point), or a one-line refusal.
* :mod:`~codesign.hardware.loihi2.limits`: the ``loihi2:`` section of ``hw_targets/loihi2.yaml``,
  registered as a hardware engine.

This package imports nothing: ``codesign.hardware`` imports the limits (to register the engine)
while the network module reads targets, so callers import the module they use.
"""
