"""Model files as a whole: the shipped models reproduce the task classes they replace; batching keeps
candidates apart and the user's text means what it means for one candidate; phases gate learning; a
study compiles its network once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from codesign.backends import builds, clear_simulations
from codesign.hardware import load_target
from codesign.models import ModelTask, load_model
from tests.references.oja import reference_weights
from codesign.rules import FAMILIES, PolynomialRule, named_rule
from codesign.schema import Where

from tests.conftest import ROOT

PREVIOUS = json.loads((ROOT / "tests/data/previous_losses.json").read_text())

#: The target-rate task's parameters at f107548, as model constants.
_TARGET_RATE = {"target_rate": "10*Hz", "n_excitatory": 800, "n_inhibitory": 200, "rate_excitatory": "5*Hz",
                "rate_inhibitory": "10*Hz", "w_e": 0.05, "w_inhibitory_init": 0.05, "w_max": 1.0,
                "learn": "10*second", "measure": "10*second"}
#: What the task classes ran with when their losses were recorded (their study files at f107548, as
#: model constants). A study file may change later (conditions, a budget): the check is on the models.
RECORDED_WITH = {
    "studies/oja.yaml": {"draws": 8, "batch_size": 12, "target": "hw_targets/cpu-standalone.yaml",
                         "constants": {"n_inputs": 5, "duration": "4*second"}},
    "studies/pca-network.yaml": {"draws": 6, "batch_size": 12, "target": "hw_targets/cpu-standalone.yaml",
                                 "constants": {"n_inputs": 8, "n_outputs": 3, "duration": "20*second"}},
    "studies/target-rate.yaml": {"draws": 4, "batch_size": 12, "target": "hw_targets/cpu-standalone.yaml",
                                 "constants": _TARGET_RATE},
    "studies/target-rate-loihi2.yaml": {"draws": 6, "batch_size": 24, "target": "hw_targets/loihi2.yaml",
                                        "constants": {**_TARGET_RATE, "w_max": 0.5}},
}
#: Metrics renamed since: the target-rate task's mean inhibitory weight is the loss's mean_weight.
RENAMED = {"mean_inhibitory_weight": "mean_weight"}


def _cases():
    # A study's seeds one after the other: the second re-uses the first's compiled project.
    for study, rows in PREVIOUS.items():
        for seed in sorted({row["seed"] for row in rows}):
            yield pytest.param(study, seed, id=f"{Path(study).stem}-seed{seed}")


def _rule(record: dict):
    family = FAMILIES[record["family"]]
    extras = {k: record[k] for k in family.extras if k in record}
    return family.make(record["coefficients"], eta=record["eta"], name=record["name"], **extras)


def _assert_close(got, want, where: str) -> None:
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for g, w in zip(got, want):
            _assert_close(g, w, where)
    elif isinstance(want, float):
        assert isinstance(got, (int, float)) and abs(got - want) <= 1e-9 * max(1.0, abs(want)), \
            f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("study, seed", _cases())
def test_same_losses_as_the_task_classes(study, seed, workdir):
    """Each study of tests/data/previous_losses.json on its model file gives the task class's losses
    (1e-9), metrics and event counts for the recorded candidates, on the same seed, backend and
    batch size.

    Every recorded candidate and seed: the time goes into compiling each study's C++ project once
    (about 15-55 s per study on 2 busy cores, 3 minutes for the eight cases); the second seed
    re-uses it (0.2-9 s).
    """
    from codesign.spec import load_study
    from codesign.search.space import searched_terms
    from codesign.search.study import make_task

    data = {**yaml.safe_load((ROOT / study).read_text()), **RECORDED_WITH[study]}
    data.pop("conditions", None)
    path = workdir / study
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    spec = load_study(path)
    rows = [row for row in PREVIOUS[study] if row["seed"] == seed]
    candidates = [{slot: _rule(record) for slot, record in row["rules"].items()} for row in rows]
    knobs = [row["knobs"] for row in rows] if rows[0]["knobs"] else None
    evaluations = make_task(spec).evaluate(candidates, seed, terms=searched_terms(spec), capacity=spec.batch_size,
                                           knobs=knobs)
    for row, evaluation in zip(rows, evaluations):
        where = f"{study} seed {seed} {row['name']}"
        assert abs(evaluation.loss - row["loss"]) <= 1e-9, f"{where}: loss {evaluation.loss!r} != {row['loss']!r}"
        for name, value in row["metrics"].items():
            _assert_close(evaluation.metrics[RENAMED.get(name, name)], value, f"{where} metric {name}")
        for name, value in (row["counts"] or {}).items():
            _assert_close(getattr(evaluation.counts, name), value, f"{where} count {name}")
    assert len({row["loss"] for row in rows}) >= 4, "the recorded candidates should not all score alike"


# -- batching: K candidates x R draws as isolated copies of the one-candidate text ----------------------

#: One candidate: inputs `inp` (3, shared per draw) feed `a` (3) one to one; `a` feeds `b` (4) on the
#: pairs j == (i + 2) % N_post, under a polynomial rule; `b` feeds itself where i != j (z, which
#: depends on the candidate's rule). Integrators reveal what i, j and N are in each text: after T
#: seconds, acc = (i + 1) T, n = N T, sk = (i + 10 j + 1) T.
BATCH_MODEL = """
name: batching
constants:
  duration: 0.2*second
dt: 1*ms
draws: 3
groups:
  inp:
    size: 3
    per: draw
    model: "x = stimulus(t, i) : 1"
  a:
    size: 3
    model: |
      u : 1
      dacc/dt = (i + 1) / second : 1
      dn/dt = N / second : 1
  b:
    size: 4
    model: |
      y : 1
      z : 1
synapses:
  feed:
    source: inp
    target: a
    connect: i == j
    model: "u_post = x_pre : 1 (summed)"
  ab:
    source: a
    target: b
    connect: j == (i + 2) % N_post
    model: "y_post = w * u_pre : 1 (summed)"
    method: euler
    weights: {w: null}
    rule: {slot: w, family: polynomial, bind: {x: u_pre, y: y_post, w: w}}
  bb:
    source: b
    target: b
    connect: i != j
    model: |
      z_post = y_pre : 1 (summed)
      dsk/dt = (i + 10 * j + 1) / second : 1 (clock-driven)
    method: euler
stimuli:
  stimulus:
    kind: gaussian
    size: 3
    initial: {ab.w: 0.5}
protocol:
  - {name: run, duration: duration}
loss:
  kind: batching_probe:probe
  record: [a.acc, a.n, b.y, b.z, ab.w, bb.sk]
"""

PROBE = """
import numpy as np

def probe(recordings):
    return float(np.sum(recordings["ab.w"])), {name: value.copy() for name, value in recordings.items()}
"""


@pytest.fixture
def batching_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelTask:
    (tmp_path / "batching_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "batching.yaml"
    path.write_text(BATCH_MODEL)
    return ModelTask(load_model(path), load_target(ROOT / "hw_targets/cpu.yaml"))


def _one_candidate_pairs(n_pre: int, n_post: int, condition: str) -> set[tuple[int, int]]:
    """The pairs Brian2 itself connects for one candidate."""
    import brian2 as b2

    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    source = b2.NeuronGroup(n_pre, "v : 1")
    target = b2.NeuronGroup(n_post, "v : 1")
    synapses = b2.Synapses(source, target)
    synapses.connect(condition=condition)
    return set(zip(synapses.i[:].tolist(), synapses.j[:].tolist()))


def _oja_like(seed: int, size: int) -> list[dict[str, PolynomialRule]]:
    rng = np.random.default_rng(seed)
    return [{"w": PolynomialRule({"theta_110": rng.uniform(0.5, 1.5), "theta_021": -rng.uniform(0.5, 1.5)}, eta=2.0)}
            for _ in range(size)]


def test_each_copy_connects_exactly_the_one_candidate_pattern(batching_task):
    K, R = 4, 3
    network = batching_task.network(batching_task.held_terms(_oja_like(0, K), None), K, 1)
    simulation = batching_task.simulation(network)
    objects = {obj.name: obj for obj in simulation.build.objects}
    sizes = {"inp": 3, "a": 3, "b": 4}
    for name, (source, target, condition) in {"feed": ("inp", "a", "i == j"),
                                              "ab": ("a", "b", "j == (i + 2) % N_post"),
                                              "bb": ("b", "b", "i != j")}.items():
        i, j = objects[name].i[:], objects[name].j[:]
        n_pre, n_post = sizes[source], sizes[target]
        copy = j // n_post
        # No synapse crosses copies; from inputs shared per draw, copy k * R + r reads draw r's.
        source_copy = copy % R if source == "inp" else copy
        np.testing.assert_array_equal(i // n_pre, source_copy)
        pattern = _one_candidate_pairs(n_pre, n_post, condition)
        assert len(pattern) >= 3
        for c in range(K * R):
            mine = copy == c
            assert set(zip((i[mine] % n_pre).tolist(), (j[mine] % n_post).tolist())) == pattern, (name, c)
    clear_simulations()


def test_i_j_and_n_in_the_text_are_those_of_one_candidate(batching_task):
    K, R, T = 2, 3, 0.2
    evaluations = batching_task.evaluate(_oja_like(1, K), seed=3)
    for evaluation in evaluations:
        m = evaluation.metrics
        np.testing.assert_allclose(m["a.acc"], np.broadcast_to((np.arange(3) + 1) * T, (R, 3)), rtol=1e-9)
        np.testing.assert_allclose(m["a.n"], 3 * T, rtol=1e-9)
        # bb: every pair i != j of one candidate's 4 neurons, sk = (i + 10 j + 1) T at [post j, pre i].
        post, pre = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
        expected = np.where(pre != post, (pre + 10 * post + 1) * T, 0.0)
        np.testing.assert_allclose(m["bb.sk"], np.broadcast_to(expected, (R, 4, 4)), rtol=1e-9)
        # ab: only j == (i + 2) % 4 has a weight: 0 -> 2, 1 -> 3, 2 -> 0.
        present = np.zeros((4, 3), dtype=bool)
        present[[2, 3, 0], [0, 1, 2]] = True
        assert np.all(m["ab.w"][:, ~present] == 0.0) and np.all(m["ab.w"][:, present] != 0.0)
    # The draws differ (their own inputs and initial weights), the candidates too.
    w = np.array([e.metrics["ab.w"] for e in evaluations])
    assert not np.allclose(w[0, 0], w[0, 1]) and not np.allclose(w[0], w[1])


def test_a_candidates_result_does_not_depend_on_the_others_in_its_batch(batching_task):
    """Candidate A alone, with two others, and with two different others at another place of the batch:
    bit for bit the same weights and outputs (no synapse, and no summed variable, crosses candidates)."""
    a, b, c = _oja_like(2, 3)
    d, e = _oja_like(3, 2)
    alone = batching_task.evaluate([a], seed=5, capacity=3)[0]
    first = batching_task.evaluate([a, b, c], seed=5)[0]
    last = batching_task.evaluate([d, e, a], seed=5)[2]
    assert not np.array_equal(first.metrics["ab.w"], batching_task.evaluate([a, b, c], seed=5)[1].metrics["ab.w"])
    for other in (first, last):
        for name in ("ab.w", "b.y", "b.z"):
            np.testing.assert_array_equal(other.metrics[name], alone.metrics[name])
        assert other.loss == alone.loss


# -- phases ---------------------------------------------------------------------------------------------


def _oja_phases(protocol: list[dict], tmp_path: Path) -> ModelTask:
    """models/oja.yaml (4 inputs, 2 draws) with another protocol."""
    data = yaml.safe_load((ROOT / "models/oja.yaml").read_text())
    data.update(protocol=protocol, draws=2)
    data["constants"].update(n_inputs=4, duration="0.5*second")
    path = tmp_path / f"oja-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return ModelTask(load_model(path), load_target(ROOT / "hw_targets/cpu.yaml"))


def test_a_phase_without_plastic_synapses_keeps_the_weights_of_the_one_before(tmp_path):
    """Learn 0.5 s, then hold 0.5 s with plastic: []: the weights are the reference's after 0.5 s of
    the same inputs; with the second phase plastic they are the reference's after 1 s."""
    learn = {"name": "learn", "duration": "duration"}
    gated = _oja_phases([learn, {"name": "hold", "duration": "duration", "plastic": []}], tmp_path)
    plastic = _oja_phases([learn, {"name": "more", "duration": "duration"}], tmp_path)
    listed = _oja_phases([learn, {"name": "more", "duration": "duration", "plastic": ["plastic"]}], tmp_path)
    rules = [named_rule("oja", eta=5.0), named_rule("hebb", eta=1.0), named_rule("zero", eta=5.0)]
    draw = gated.inputs(2)["stimulus"]
    x = draw.series.reshape(-1, 2, 4).transpose(1, 0, 2)
    w0 = draw.initial["plastic.w"][:, 0, :]
    np.testing.assert_array_equal(plastic.inputs(2)["stimulus"].series, draw.series)
    after_learn = reference_weights(rules, x[:, :500], w0, 1.0)
    after_both = reference_weights(rules, x, w0, 1.0)
    held = np.array([e.arrays["weights"] for e in gated.evaluate(rules, seed=2)])
    kept_on = np.array([e.arrays["weights"] for e in plastic.evaluate(rules, seed=2)])
    np.testing.assert_allclose(held, after_learn, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kept_on, after_both, rtol=1e-12, atol=1e-14)
    assert not np.allclose(held[:2], kept_on[:2])  # the second phase would have changed them
    np.testing.assert_array_equal(held[2], np.broadcast_to(w0, held[2].shape))  # the zero rule: never
    np.testing.assert_array_equal([e.arrays["weights"] for e in listed.evaluate(rules, seed=2)], kept_on)


def test_a_phase_gates_only_the_synapses_it_leaves_out():
    """PCA network, learn 0.3 s, then 0.3 s in which only the lateral weights learn: the feed-forward
    weights end as where nothing learns in the second phase, the lateral ones as where all do."""
    import dataclasses

    from codesign.models.spec import PhaseSpec

    base = load_model(ROOT / "models/pca-network.yaml").with_constants(
        {"n_inputs": 5, "n_outputs": 2, "duration": "0.3*second"}, Where("test"), 2)
    learn = PhaseSpec("learn", "duration")

    def run(second: PhaseSpec) -> tuple[np.ndarray, np.ndarray]:
        task = ModelTask(dataclasses.replace(base, protocol=(learn, second)), load_target(ROOT / "hw_targets/cpu.yaml"))
        (evaluation,) = task.evaluate([task.named_candidates({"feedforward": 2.0, "lateral": 2.0})["oja+anti_hebbian"]],
                                      seed=1)
        return evaluation.arrays["w"], evaluation.arrays["m"]

    w_lateral, m_lateral = run(PhaseSpec("more", "duration", plastic=["lateral"]))
    w_none, m_none = run(PhaseSpec("more", "duration", plastic=[]))
    w_all, m_all = run(PhaseSpec("more", "duration"))
    np.testing.assert_array_equal(w_lateral, w_none)
    assert not np.allclose(w_lateral, w_all)
    assert not np.allclose(m_lateral, m_none)


# -- compile once ---------------------------------------------------------------------------------------


def test_a_study_compiles_once_and_held_out_seeds_reuse_the_build(write_study, monkeypatch):
    """cpp_standalone: the first batch of a study builds and compiles its network; the second batch
    generates and compiles nothing. An evaluation on held-out seeds (codesign eval's) builds a network
    of the one candidate it runs, not the study's batch of copies, once: a second seed reuses it."""
    from brian2.devices.cpp_standalone.device import CPPStandaloneDevice

    from codesign.report import evaluate_candidate
    from codesign.spec import load_study
    from codesign.search.launcher import run_study
    from codesign.search.space import candidate

    clear_simulations()
    spec = load_study(write_study(target="hw_targets/cpu-standalone.yaml", n_trials=12, batch_size=6))
    built = []
    original = CPPStandaloneDevice.build

    def build_counted(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(CPPStandaloneDevice, "build", build_counted)
    before = builds()
    study = run_study(spec)  # two batches of 6
    assert len(study.trials) == 12 and built == [1]
    assert builds().networks - before.networks == 1
    held_out, seed = evaluate_candidate(spec, candidate(spec, study.best_params))
    other, _ = evaluate_candidate(spec, candidate(spec, study.best_params), seed=seed + 1)
    assert builds().networks - before.networks == 2 and built == [1, 1]
    assert seed != spec.seed and held_out.loss != other.loss
    clear_simulations()


_KEYS = """
from codesign.hardware import load_target
from codesign.models import ModelTask, load_model
for name in ("oja", "pca-network", "target-rate"):
    task = ModelTask(load_model({root!r} + "/models/" + name + ".yaml"), load_target({root!r} + "/hw_targets/cpu.yaml"))
    named = task.candidates(list(task.named_candidates({{s: 1.0 for s in task.slots}}).values()))
    print(task.network(task.held_terms(named, None), 4, 1).key())
"""


def test_the_build_key_is_the_same_in_every_process():
    """A compiled project is found again by its key: another process (a worker, codesign eval) must
    compute the same one, whatever its string hashing (PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys

    keys = []
    for hash_seed in ("1", "2", "3"):
        proc = subprocess.run([sys.executable, "-c", _KEYS.format(root=str(ROOT))], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert proc.returncode == 0, proc.stderr[-2000:]
        keys.append(proc.stdout.split())
    assert len(keys[0]) == 3 and len(set(keys[0])) == 3
    assert keys[0] == keys[1] == keys[2]
