"""NeuroBench-style figures: by hand from counts, on a three-layer network known by hand, in eval and
compare, and (make test-neurobench) against the neurobench package on the same network."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from codesign.cli import main
from codesign.hardware import EventCounts, load_target, neurobench_figures
from codesign.hardware.target import Precision, Target
from codesign.models.spec import load_model
from codesign.models.task import ModelTask

LAYERS = Path(__file__).parent / "data" / "layers.yaml"

#: tests/data/layers.yaml at spread 0 on hw_targets/cpu.yaml (float64), worked out in its header:
#: ACs 10 spikes x 16 input synapses + 40 hidden spikes x 2 outputs; dense (24 + 8) pairs x 20 steps;
#: 60 spikes of 6 neurons in 20 steps; 8 of 32 pairs empty; (24 weights + 16 traces + 12 states) x 8
#: bytes; updates: 40 hidden spikes x 2 (on_pre) + 20 output spikes x 4 (on_post).
BY_HAND = {"effective_acs": 240, "effective_macs": 0, "dense_ops": 640, "activation_sparsity": 0.5,
           "connection_sparsity": 0.25, "footprint_bytes": 416, "weights_bytes": 192,
           "learning_updates_per_sample": 160, "samples": 1}


def test_figures_from_counts():
    counts = EventCounts(duration_s=1.0, synaptic_events=1300.0, spikes=50.0, learning_updates=400.0, neurons=12,
                         synapses=30, steps=100, samples=4, rate_synaptic_events=300.0, spiking_neurons=10,
                         possible_synapses=40, weight_values=30, trace_values=20, state_values=12)
    chip = Target(name="chip", float_dtype="float32", precision=Precision(weight_bits=8, trace_bits=7))
    figures = neurobench_figures(chip, counts)
    assert figures == {"effective_acs": 250.0, "effective_macs": 75.0, "dense_ops": 1000.0,
                       "activation_sparsity": 0.95, "connection_sparsity": 0.25,
                       "footprint_bytes": 96, "weights_bytes": 30,  # 764 bits, rounded up
                       "learning_updates_per_sample": 100.0, "samples": 4}
    # a searched width wins over the target's; a target without one stores floats
    assert neurobench_figures(chip, counts, {"weight_bits": 2})["weights_bytes"] == 8  # 60 bits
    assert neurobench_figures(Target(name="cpu"), counts)["footprint_bytes"] == (30 + 20 + 12) * 8
    # no spiking neuron, no synapse group: nothing to be sparse
    empty = EventCounts(duration_s=1.0, synaptic_events=0, spikes=0, learning_updates=0, neurons=1, synapses=0)
    assert neurobench_figures(chip, empty)["activation_sparsity"] is None
    assert neurobench_figures(chip, empty)["connection_sparsity"] is None


def _layers(tmp_path: Path, **constants) -> Path:
    data = yaml.safe_load(LAYERS.read_text())
    data["constants"].update(constants)
    path = tmp_path / "layers.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _evaluate(model_file: Path, target: Target):
    task = ModelTask(load_model(model_file), target)
    return task.evaluate([task.named_candidates({"out": 0.01})["zero"]], seed=1)[0]


def test_network_known_by_hand():
    target = load_target("hw_targets/cpu.yaml")
    assert neurobench_figures(target, _evaluate(LAYERS, target).counts) == pytest.approx(BY_HAND)


def _study(workdir: Path) -> str:
    study = {"name": "layers", "model": str(LAYERS), "target": "hw_targets/cpu.yaml", "n_trials": 2,
             "sampler": {"name": "random"}, "batch_size": 1, "seed": 1, "rule": {"family": "spike_trace", "terms": ["pre_1"], "bounds": [-1, 1], "eta": 0.01}}
    path = workdir / "studies" / "layers.yaml"
    path.write_text(yaml.safe_dump(study))
    return str(path)


def test_eval_reports_them(workdir, capsys):
    path = _study(workdir)
    assert main(["eval", path, "--rule", "zero", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["neurobench"] == pytest.approx(BY_HAND)
    assert main(["eval", path, "--rule", "zero"]) == 0
    out = capsys.readouterr().out
    assert "NeuroBench-style figures" in out and "effective_acs: 240" in out and "footprint_bytes: 416" in out


def test_rate_model_counts_macs(write_study, capsys):
    path = write_study()  # Oja: 4 inputs into one rate neuron, 0.3 s at 1 ms
    assert main(["eval", path, "--rule", "oja", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["neurobench"]
    assert figures["effective_macs"] == 4 * 300 and figures["effective_acs"] == 0
    assert figures["activation_sparsity"] is None
    assert figures["learning_updates_per_sample"] == 4 * 300


def test_compare_reports_them_at_each_targets_precision(workdir, capsys):
    chip = {"name": "chip", "backend": "runtime", "float_dtype": "float32",
            "precision": {"weight_bits": 4, "trace_bits": 5, "rounding": "nearest"}}
    (workdir / "hw_targets" / "chip.yaml").write_text(yaml.safe_dump(chip))
    args = ["compare", _study(workdir), "--rule", "zero", "--targets", "hw_targets/cpu.yaml", "hw_targets/chip.yaml"]
    assert main([*args, "--json"]) == 0
    cpu, small = json.loads(capsys.readouterr().out)
    assert cpu["neurobench"] == pytest.approx(BY_HAND)
    # 24 weights of 4 bits, 16 traces of 5 bits, 12 states of 32 bits
    assert small["neurobench"] == pytest.approx({**BY_HAND, "footprint_bytes": 70, "weights_bytes": 12})
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "NeuroBench-style figures per sample" in table
    assert any(line.split()[:1] == ["chip"] and "70" in line.split() for line in table.splitlines())


@pytest.mark.neurobench
@pytest.mark.parametrize("connect", ["(i + j) % 3 != 0", "True"])
def test_agrees_with_the_neurobench_package(tmp_path, connect):
    """The same three layers as a snnTorch network (Linear without bias, Leaky with beta 0: it fires
    when any input did, as the Brian2 relay does one step later), measured by neurobench's own metrics
    on the same input spikes. Footprint only all-to-all: neurobench stores weights as dense matrices."""
    torch = pytest.importorskip("torch")
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("neurobench")
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import SNNTorchModel, TorchModel

    n_in, n_hidden, n_out, steps = 6, 4, 2, 60
    model_file = _layers(tmp_path, spread=1, duration=f"{steps}*ms", t_stop=f"{steps - 2.5}*ms")
    data = yaml.safe_load(model_file.read_text())
    data["synapses"]["in_hidden"]["connect"] = connect
    model_file.write_text(yaml.safe_dump(data, sort_keys=False))
    target = load_target("hw_targets/cpu.yaml")
    counts = _evaluate(model_file, target).counts
    ours = neurobench_figures(target, counts)

    # Input i fires every 1 + (i % 3) steps, first at step i % 3, until t_stop (the header's rule).
    spikes = np.zeros((steps, n_in))
    for i in range(n_in):
        spikes[i % 3: steps - 2: 1 + i % 3, i] = 1.0
    present = np.array([[eval(connect, {}, {"i": i, "j": j, "N_pre": n_in, "N_post": n_hidden})
                         for i in range(n_in)] for j in range(n_hidden)], dtype=float)

    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.into_hidden = torch.nn.Linear(n_in, n_hidden, bias=False)
            self.hidden = snn.Leaky(beta=0.0, threshold=0.5, reset_mechanism="none")
            self.into_output = torch.nn.Linear(n_hidden, n_out, bias=False)
            self.output = snn.Leaky(beta=0.0, threshold=0.5, reset_mechanism="none")
            with torch.no_grad():
                self.into_hidden.weight.copy_(torch.tensor(present, dtype=torch.float32))
                self.into_output.weight.fill_(1.0)

        def forward(self, x):
            spk, _ = self.hidden(self.into_hidden(x))
            return self.output(self.into_output(spk))

    net = Layers()
    inputs = torch.tensor(spikes, dtype=torch.float32)[None]  # (batch, steps, inputs)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, torch.zeros(1)), batch_size=1)
    theirs = Benchmark(SNNTorchModel(net), loader, [], [], [[ConnectionSparsity], [ActivationSparsity,
                                                                                    SynapticOperations]]).run(quiet=True)
    assert ours["effective_acs"] > 0 and 0 < ours["activation_sparsity"] < 1
    assert ours["effective_acs"] == pytest.approx(theirs["SynapticOperations"]["Effective_ACs"], rel=0.01)
    assert ours["dense_ops"] == pytest.approx(theirs["SynapticOperations"]["Dense"], rel=0.01)
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=0.01)
    assert ours["connection_sparsity"] == pytest.approx(theirs["ConnectionSparsity"], rel=0.01, abs=1e-9)
    if connect == "True":
        weights = torch.nn.Sequential(net.into_hidden, net.into_output)  # float32, as the target below
        float32 = dataclasses.replace(target, float_dtype="float32")
        assert neurobench_figures(float32, counts)["weights_bytes"] == pytest.approx(Footprint()(TorchModel(weights)),
                                                                                     rel=0.01)
