"""The cuda_standalone backend (brian2cuda): compiled wherever nvcc is, run where a GPU is.

Compiling needs nvcc and cuRAND, not a GPU, so CI (CUDA 13 nvcc, no driver) compiles the
target-rate model's CUDA code and checks that the build is reused. Running needs a GPU: where there
is none, the tests that run are skipped (their reason says so) and a run attempt must fail with
one line. Where there is one, the same build runs and must give the C++ standalone build's numbers.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codesign.backends import builds, clear_simulations
from codesign.errors import CodesignError, SpecError
from codesign.hardware import Target, load_target
from codesign.models import ModelTask, load_model
from codesign.rules import PolynomialRule
from codesign.rules.spike_trace import SPIKE_TERMS, SpikeTraceRule, vogels
from codesign.schema import Where

from tests.conftest import ROOT

#: models/target-rate.yaml at full size (800 + 200 inputs), long enough to fire and learn: on a GPU
#: the comparison means something. Sizes do not change the compile time (the code is the same).
MODEL, CONSTANTS, DRAWS = ROOT / "models/target-rate.yaml", {"learn": "2*second", "measure": "2*second"}, 2
TERMS = {"inhibitory": tuple(SPIKE_TERMS)}
SEED = 3

#: The target-rate task and its network for ``n`` candidates (also run in other processes).
_TASK = """
from codesign.hardware import load_target
from codesign.models import ModelTask, load_model
from codesign.schema import Where
model = load_model({model!r}).with_constants({constants!r}, Where("test"), {draws})
task = ModelTask(model, load_target({target!r}))
network = task.network({terms!r}, {n}, 1)
"""


def task_script() -> str:
    """Python that makes :data:`_TASK` on the GPU target, for another process."""
    return _TASK.format(model=str(MODEL), constants=CONSTANTS, draws=DRAWS, target=str(ROOT / "hw_targets/gpu.yaml"),
                        terms=TERMS, n=len(spike_rules()))


def rate_task(target: Target) -> ModelTask:
    return ModelTask(load_model(MODEL).with_constants(CONSTANTS, Where("test"), DRAWS), target)


def rate_simulation(task: ModelTask, n: int):
    """The task's simulation of ``n`` candidates: built (compiled) on first use."""
    return task.simulation(task.network(TERMS, n, 1))


def spike_rules() -> list[SpikeTraceRule]:
    rng = np.random.default_rng(0)
    return [vogels()] + [SpikeTraceRule({"pre_1": -rng.uniform(0, 0.8), "pre_y": rng.uniform(0, 1),
                                         "post_x": rng.uniform(0, 1), "post_w": rng.uniform(-0.2, 0.2)},
                                        tau_x_ms=rng.uniform(5, 40), tau_y_ms=rng.uniform(5, 40))
                         for _ in range(5)]


def toolkit_or_skip():
    from codesign.backends.cuda import find_cuda

    try:
        return find_cuda()
    except CodesignError as exc:
        pytest.skip(f"cannot compile CUDA here: {exc.message}")


def gpu_or_skip() -> None:
    from codesign.backends.cuda import gpu_status

    present, what = gpu_status()
    if not present:
        pytest.skip(f"no GPU to run on ({what}); the CUDA build itself is tested by the compile tests")


@pytest.fixture(scope="module")
def gpu_target() -> Target:
    return load_target(ROOT / "hw_targets/gpu.yaml")


@pytest.fixture(scope="module")
def cuda_build(gpu_target):
    """The target-rate model compiled for CUDA once for this module: (task, its project folder, seconds,
    how many programs the construction compiled)."""
    toolkit_or_skip()
    clear_simulations()
    task = rate_task(gpu_target)
    start, counted = time.perf_counter(), builds()
    sim = rate_simulation(task, len(spike_rules()))
    seconds = time.perf_counter() - start
    compiled = builds().compiled - counted.compiled
    print(f"\nCUDA build of the target-rate model: {seconds:.0f} s")
    directory = sim.directory
    del sim  # holding it would keep its Brian2 objects, and their names, alive
    yield task, directory, seconds, compiled
    clear_simulations()


def _outputs(directory) -> dict[str, int]:
    """Modification times of the compiled files (objects and the program)."""
    files = [directory / "main", *directory.glob("*.o"), *directory.glob("code_objects/*.o")]
    return {str(f.relative_to(directory)): f.stat().st_mtime_ns for f in files}


@pytest.mark.cuda
def test_target_rate_compiles_for_cuda_without_a_gpu(cuda_build, gpu_target):
    task, directory, seconds, compiled = cuda_build
    assert (directory / "main").is_file()
    assert compiled == 1  # this session's cache was empty: the build counter saw a compile
    assert len(list(directory.glob("code_objects/*.o"))) >= 10
    makefile = (directory / "makefile").read_text()
    nvcc_flags = next(line for line in makefile.splitlines() if line.startswith("NVCCFLAGS"))
    # CUDA 13's headers need C++17: nvcc uses its last -std, and the host compiler gets only c++17.
    assert nvcc_flags.split("-Xcompiler")[0].split()[-1] == "-std=c++17"
    host = nvcc_flags.split("-Xcompiler")[1]
    assert "-std=c++17" in host and "-std=c++11" not in host and "-march=native" not in host
    assert f"-arch=sm_{str(gpu_target.gpu.compute_capability).replace('.', '')}" in makefile
    assert "-cudart=shared" in makefile


@pytest.mark.cuda
def test_a_second_construction_reuses_the_cuda_build(cuda_build):
    """In this process after forgetting the simulation, and in another process: nothing recompiles."""
    task, directory, _, _ = cuda_build
    before = _outputs(directory)
    clear_simulations()
    start, counted = time.perf_counter(), builds()
    again = rate_simulation(task, len(spike_rules()))
    rebuilt_s = time.perf_counter() - start
    assert again.directory == directory
    assert builds().networks - counted.networks == 1  # constructed again ...
    assert builds().compiled == counted.compiled and not again.compiled  # ... and found compiled in the cache
    assert _outputs(directory) == before, "a second construction recompiled the CUDA project"
    script = task_script() + "print(task.simulation(network).directory)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(directory)
    assert _outputs(directory) == before, "another process recompiled the CUDA project"
    assert rebuilt_s < cuda_build[2]


_GENERATE = """
import sys
from brian2cuda.device import CUDAStandaloneDevice
CUDAStandaloneDevice.compile_source = lambda *args, **kwargs: None  # generate only
junk = [object() for _ in range(int(sys.argv[1]))]  # another memory layout in each process
"""


@pytest.mark.cuda
def test_every_process_generates_the_same_cuda_code(tmp_path):
    """brian2cuda orders a Synapses' variables by name only (two pathways: two ``delay``), so the
    order came from memory addresses, and another process regenerated, and recompiled, a file."""
    import filecmp

    toolkit_or_skip()
    script = _GENERATE + task_script() + "print(task.simulation(network).directory)\n"
    folders = []
    for k, junk in enumerate((10, 200_000)):
        env = {**os.environ, "CODESIGN_CACHE": str(tmp_path / f"cache{k}")}
        proc = subprocess.run([sys.executable, "-c", script, str(junk)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        folders.append(Path(proc.stdout.strip().splitlines()[-1]))
    sources = sorted(p.relative_to(folders[0]) for p in folders[0].rglob("*") if p.suffix in (".cu", ".h"))
    assert len(sources) > 20
    _, differ, missing = filecmp.cmpfiles(folders[0], folders[1], [str(p) for p in sources], shallow=False)
    assert differ == [] and missing == []


@pytest.mark.cuda
def test_running_without_a_gpu_is_a_one_line_error(cuda_build):
    from codesign.backends.cuda import gpu_status

    if gpu_status()[0]:
        pytest.skip("this machine has a GPU: the run is tested against cpp_standalone instead")
    task, _, _, _ = cuda_build
    with pytest.raises(CodesignError) as caught:
        task.evaluate(spike_rules(), SEED)
    line = caught.value.one_line()
    assert "\n" not in line
    assert "cannot run here" in line and "hw_targets/cpu-standalone.yaml" in line


@pytest.mark.cuda
def test_gpu_losses_match_cpp_standalone(cuda_build):
    """Same float64 equations, same input spikes, so the GPU must give the CPU's losses.

    GPU and CPU differ only in rounding: fused multiply-adds, ``exp`` within an ulp, the order in
    which atomic additions sum the inhibitory conductances of simultaneous input spikes; that is
    about 1e-15 relative on the membrane potential, which decays rather than grows (a leaky
    neuron). A spike moves by a time step only where v crosses the threshold within that margin of
    a step, a chance of about 1e-13 per spike, none expected in these ~10^3 spikes. So spike counts
    are equal, and losses and weights agree to rounding accumulated over 4e4 steps (rtol 1e-9).
    """
    gpu_or_skip()
    task, _, _, _ = cuda_build
    rules = spike_rules()
    on_gpu = task.evaluate(rules, SEED)
    on_cpu = rate_task(load_target(ROOT / "hw_targets/cpu-standalone.yaml")).evaluate(rules, SEED)
    np.testing.assert_array_equal([e.metrics["rates_hz"] for e in on_gpu], [e.metrics["rates_hz"] for e in on_cpu])
    np.testing.assert_allclose([e.loss for e in on_gpu], [e.loss for e in on_cpu], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.array([e.arrays["weights"] for e in on_gpu]),
                               np.array([e.arrays["weights"] for e in on_cpu]), rtol=1e-9, atol=1e-12)
    assert any(0 < e.metrics["rates_hz"][0] for e in on_cpu), "the neuron never fired: nothing compared"


OJA_TERMS = ("theta_110", "theta_021", "theta_001")
PCA_TERMS = {"feedforward": ("theta_110", "theta_021", "theta_001"), "lateral": ("theta_110", "theta_020")}


def _oja_candidates(rng: np.random.Generator) -> list[dict[str, PolynomialRule]]:
    return [{"w": PolynomialRule(dict(zip(OJA_TERMS, rng.uniform(-1, 1, 3))), eta=5.0)} for _ in range(6)]


def _pca_candidates(rng: np.random.Generator) -> list[dict[str, PolynomialRule]]:
    """Oja + anti-Hebbian, perturbed: varied and bounded over a second (as in test_model_pca)."""
    return [{"feedforward": PolynomialRule({"theta_110": 1.0 + rng.uniform(-0.5, 0.5), "theta_021": -1.0,
                                            "theta_001": rng.uniform(-0.2, 0.2)}, eta=2.0),
             "lateral": PolynomialRule({"theta_110": -1.0 + rng.uniform(-0.5, 0.5),
                                        "theta_020": rng.uniform(-0.2, 0.2)}, eta=2.0)} for _ in range(4)]


#: Small rate models: (model file, constants, draws, terms per slot, candidates).
RATE_MODELS = {
    "oja": ("oja.yaml", {"n_inputs": 4, "duration": "1*second"}, 3, {"w": OJA_TERMS}, _oja_candidates),
    "pca_network": ("pca-network.yaml", {"n_inputs": 6, "n_outputs": 3, "duration": "1*second"}, 2, PCA_TERMS,
                    _pca_candidates),
}


def _rate_task(name: str, target: Target) -> tuple:
    """A small rate model with a batch of varied rules: (task, candidates, terms)."""
    file, constants, draws, terms, candidates = RATE_MODELS[name]
    model = load_model(ROOT / "models" / file).with_constants(constants, Where("test"), draws)
    return ModelTask(model, target), candidates(np.random.default_rng(1)), terms


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["oja", "pca_network"])
def test_rate_tasks_generate_cuda_code(name, gpu_target, monkeypatch):
    """Every model's network becomes CUDA code (generated only: compiling is the target-rate test's)."""
    from brian2cuda.device import CUDAStandaloneDevice

    toolkit_or_skip()
    clear_simulations()
    monkeypatch.setattr(CUDAStandaloneDevice, "compile_source", lambda self, *args, **kwargs: None)
    task, candidates, terms = _rate_task(name, gpu_target)
    sim = task.simulation(task.network(task.held_terms(candidates, terms), len(candidates), 1))
    clear_simulations()
    assert (sim.directory / "main.cu").is_file() and (sim.directory / "makefile").is_file()
    assert (sim.directory / "code_objects").is_dir()


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["oja", "pca_network"])
def test_rate_tasks_on_gpu_match_cpp_standalone(name, gpu_target):
    """No thresholds in these models: only rounding differs, as between C++ standalone and numpy
    (test_backends: rtol 1e-9)."""
    toolkit_or_skip()
    gpu_or_skip()
    clear_simulations()
    task, candidates, terms = _rate_task(name, gpu_target)
    on_gpu = task.evaluate(candidates, 1, terms=terms)
    on_cpu = _rate_task(name, load_target(ROOT / "hw_targets/cpu-standalone.yaml"))[0].evaluate(candidates, 1,
                                                                                               terms=terms)
    clear_simulations()
    assert [e.diverged for e in on_gpu] == [e.diverged for e in on_cpu]
    assert not all(e.diverged for e in on_cpu), "every rule diverged: nothing compared"
    for g, c in zip(on_gpu, on_cpu):
        if not c.diverged:
            np.testing.assert_allclose(g.loss, c.loss, rtol=1e-9, atol=1e-12)
            for name_, array in c.arrays.items():
                np.testing.assert_allclose(g.arrays[name_], array, rtol=1e-9, atol=1e-12)


def test_gpu_target_reads_its_gpu_section(gpu_target, tmp_path):
    assert gpu_target.backend == "cuda_standalone"
    assert gpu_target.gpu.compute_capability == 8.0 and gpu_target.gpu.gpu_id == 0
    assert gpu_target.energy.synaptic_event_j.kind == "wall_plug"
    assert gpu_target.energy.learning_update_j.value is None  # not published
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbackend: cuda_standalone\ngpu: {compute_capability: 3.0}\n")
    with pytest.raises(SpecError, match="gpu.compute_capability"):
        load_target(bad)
    bad.write_text("name: x\nbackend: cuda_standalone\ngpu: {arch: 8.0}\n")
    with pytest.raises(SpecError, match="unknown key"):
        load_target(bad)


def test_a_missing_toolkit_is_a_one_line_error(gpu_target, tmp_path):
    from codesign.backends.cuda import find_cuda

    target = dataclasses.replace(gpu_target, gpu=dataclasses.replace(gpu_target.gpu, cuda_path=str(tmp_path)))
    object.__setattr__(target, "file", gpu_target.file)
    with pytest.raises(CodesignError) as caught:
        rate_task(target).evaluate([vogels()], SEED)
    assert caught.value.key == "gpu.cuda_path" and "no CUDA toolkit" in caught.value.one_line()
    find_cuda.cache_clear()


def test_a_study_runs_on_the_gpu_target_by_file_or_option(workdir, write_study):
    from codesign.spec import load_study

    spec = load_study(ROOT / "studies/target-rate-gpu.yaml")
    assert spec.target.backend == "cuda_standalone" and spec.batch_size >= 1024
    path = write_study()
    assert load_study(path).target.name == "cpu"
    assert load_study(path, "hw_targets/gpu.yaml").target.name == "gpu"
    with pytest.raises(SpecError, match="--target"):
        load_study(path, "hw_targets/nope.yaml")


def test_gpu_bench_without_a_gpu_is_a_one_line_error(capsys):
    from benchmarks.__main__ import main
    from codesign.backends.cuda import gpu_status

    if gpu_status()[0]:
        pytest.skip("this machine has a GPU: make bench-gpu measures it")
    assert main(["--gpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs an NVIDIA GPU" in err and "make bench-gpu" in err


def test_commands_on_the_gpu_target_without_a_gpu_fail_before_building(write_study, capsys):
    """One line, at once: no minutes of compiling to fail after."""
    from codesign.backends.cuda import gpu_status
    from codesign.cli import main

    if gpu_status()[0]:
        pytest.skip("this machine has a GPU")
    path = write_study()
    start = time.perf_counter()
    # (compare needs no GPU: it simulates a GPU target on the CPU, see test_study.py)
    for argv in (["run", path, "--target", "hw_targets/gpu.yaml"], ["eval", path, "--rule", "oja", "--target",
                                                                       "hw_targets/gpu.yaml"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "cannot run here" in err and "cpu-standalone.yaml" in err, err
    assert time.perf_counter() - start < 30
    assert not list(Path("results").glob("*/journal.log")), "a study was started"
