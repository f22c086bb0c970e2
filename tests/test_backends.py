"""Backends: one build per network shape, re-run per batch; every backend gives the same numbers."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codesign.backends import builds, clear_simulations
from codesign.hardware import Target, load_target
from codesign.models import ModelTask, load_model
from tests.references.oja import reference_weights
from codesign.rules import PolynomialRule
from codesign.schema import Where

from tests.conftest import ROOT

#: models/oja.yaml, small: 4 inputs, 3 draws of 1 s.
CONSTANTS, DRAWS = {"n_inputs": 4, "duration": "1*second"}, 3
TERMS = ("theta_001", "theta_021", "theta_110", "theta_200")


def oja_task(target: Target) -> ModelTask:
    return ModelTask(load_model(ROOT / "models/oja.yaml").with_constants(CONSTANTS, Where("test"), DRAWS), target)


def reference(task: ModelTask, rules, seed: int) -> np.ndarray:
    """The NumPy reference's final weights on the task's draws of ``seed``."""
    draw = task.inputs(seed)["stimulus"]
    x = draw.series.reshape(draw.series.shape[0], DRAWS, -1).transpose(1, 0, 2)
    return reference_weights(rules, x, draw.initial["plastic.w"][:, 0, :], task.model.dt_s * 1e3)


def batch(seed: int, size: int = 6) -> list[PolynomialRule]:
    rng = np.random.default_rng(seed)
    return [PolynomialRule(dict(zip(TERMS, rng.uniform(-1, 1, len(TERMS)))), eta=5.0) for _ in range(size)]


def weights(task: ModelTask, rules, seed: int) -> np.ndarray:
    return np.array([e.arrays["weights"] for e in task.evaluate(rules, seed, terms=TERMS)])


@pytest.fixture
def standalone() -> Target:
    clear_simulations()
    yield load_target(ROOT / "hw_targets/cpu-standalone.yaml")
    clear_simulations()


def test_standalone_matches_numpy_runtime_and_reference(standalone):
    rules = batch(0)
    compiled = weights(oja_task(standalone), rules, seed=1)
    runtime = weights(oja_task(load_target(ROOT / "hw_targets/cpu.yaml")), rules, seed=1)
    expected = reference(oja_task(standalone), rules, 1)
    finite = np.isfinite(expected)
    assert finite.mean() > 0.3
    np.testing.assert_array_equal(np.isfinite(compiled), finite)
    np.testing.assert_allclose(compiled[finite], runtime[finite], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(compiled[finite], expected[finite], rtol=1e-9, atol=1e-12)


def test_later_standalone_batches_generate_and_compile_nothing(standalone, monkeypatch):
    from brian2.devices.cpp_standalone.device import CPPStandaloneDevice

    task = oja_task(standalone)
    weights(task, batch(0), seed=1)  # builds

    def forbidden(*args, **kwargs):
        raise AssertionError("a later batch tried to generate or compile code")

    for method in ("build", "code_object", "compile_source", "network_run"):
        monkeypatch.setattr(CPPStandaloneDevice, method, forbidden)
    later = [weights(task, batch(s), seed=1) for s in (1, 2)]
    other_seed = weights(task, batch(1), seed=7)  # new inputs go in as run_args too
    expected = [reference(task, batch(s), 1) for s in (1, 2)]
    for got, want in zip(later, expected):
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-12)
    want = reference(task, batch(1), 7)
    finite = np.isfinite(want)
    np.testing.assert_allclose(other_seed[finite], want[finite], rtol=1e-9, atol=1e-12)


def test_another_process_reuses_the_compiled_project(standalone):
    # A runtime simulation of the same network lives in this process first: Brian2 would name this
    # build's code objects "..._1" after its live ones, unless building forgets and collects them.
    weights(oja_task(load_target(ROOT / "hw_targets/cpu.yaml")), batch(0), seed=1)
    weights(oja_task(standalone), batch(0), seed=1)
    from codesign.backends.standalone import CompiledSimulation

    # This network's project (the session's cache holds other tests' projects too).
    binary = CompiledSimulation._current.directory / "main"
    before = binary.stat().st_mtime_ns
    script = (
        "from codesign.backends import builds\n"
        "from codesign.backends.standalone import CompiledSimulation\n"
        "from codesign.hardware import load_target\n"
        "from codesign.models import ModelTask, load_model\n"
        "from codesign.rules import PolynomialRule\n"
        "from codesign.schema import Where\n"
        f"model = load_model({str(ROOT / 'models/oja.yaml')!r}).with_constants({CONSTANTS!r}, Where('test'), {DRAWS})\n"
        f"task = ModelTask(model, load_target({str(ROOT / 'hw_targets/cpu-standalone.yaml')!r}))\n"
        "rules = [PolynomialRule({'theta_110': 1.0, 'theta_021': -1.0}, eta=5.0)] * 6\n"
        f"loss = task.evaluate(rules, 1, terms={TERMS!r})[0].loss\n"
        "print(CompiledSimulation._current.directory, builds().compiled, loss)\n"
    )
    # Another string hashing than this process's: nothing in the build may depend on it.
    env = {**os.environ, "PYTHONHASHSEED": "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    directory, compiled, loss = proc.stdout.strip().splitlines()[-1].split()
    assert directory == str(binary.parent), "the second process built another project"
    assert compiled == "0" and float(loss) < 0.5
    assert binary.stat().st_mtime_ns == before, "the second process recompiled the project"
    assert sorted(binary.parent.glob("results_*")) == [binary.parent / CompiledSimulation._current.results], \
        "the second process left its results folder behind"


def _files(folder) -> set[str]:
    """Every file and folder under ``folder``, the results folder (a link to one in memory) included."""
    return {os.path.relpath(os.path.join(root, name), folder)
            for root, folders, files in os.walk(folder, followlinks=True) for name in folders + files}


def test_runs_write_a_fixed_set_of_files_and_a_value_back_again_is_used(standalone):
    """Each variable a run sets goes to one file of this process's own, rewritten when it changes:
    the project gains no file per run (Brian2's run_args mapping adds one per distinct value, and a
    lock file, which nothing removes), and a value set, replaced and set again is the one used."""
    from codesign.backends.standalone import CompiledSimulation

    task = oja_task(standalone)
    first = weights(task, batch(1), seed=1)
    project = CompiledSimulation._current.directory
    files = _files(project)
    assert any(name.startswith(f"{CompiledSimulation._current.results}/args/") for name in files)
    weights(task, batch(2), seed=1)
    weights(task, batch(2), seed=7)  # new inputs
    again = weights(task, batch(1), seed=1)
    np.testing.assert_array_equal(again, first)
    assert _files(project) == files


def test_results_are_kept_in_memory_where_there_is_room_else_in_the_project(standalone, monkeypatch):
    """A program rewrites every result at each run, read back at once: they go to a folder in memory (a
    tmpfs), linked from the project, where the machine has one with room; in the project otherwise. The
    numbers are the same; removing a process's results removes the folder in memory with the link."""
    from codesign.backends import standalone as module
    from codesign.backends.standalone import CompiledSimulation, remove_own_results

    if not module.MEMORY_FOLDER.parent.is_dir():
        pytest.skip("this machine has no /dev/shm")
    in_memory = weights(oja_task(standalone), batch(1), seed=1)
    link = CompiledSimulation._current.directory / CompiledSimulation._current.results
    memory = Path(os.readlink(link))
    assert link.is_symlink() and memory.parent == module.MEMORY_FOLDER
    assert any(f.name.startswith("_array_") for f in memory.iterdir()), "the program wrote its results elsewhere"
    clear_simulations()
    remove_own_results()
    assert not link.exists() and not memory.exists()
    monkeypatch.setattr(module, "MEMORY_NEEDED", 1 << 62)  # more room than any machine has
    on_disk = weights(oja_task(standalone), batch(1), seed=1)
    assert link.is_dir() and not link.is_symlink() and any(f.name.startswith("_array_") for f in link.iterdir())
    np.testing.assert_array_equal(on_disk, in_memory)


def test_results_folders_of_processes_that_are_gone_are_removed(standalone, monkeypatch):
    """A killed worker never removes its results folder (a long study's can hold gigabytes): the next
    simulation of the project removes those of this host's processes that are gone, old unnamed ones
    too, and keeps a live process's; in memory, those of every project. A host's name may hold dashes."""
    import socket

    from codesign.backends.standalone import MEMORY_FOLDER, CompiledSimulation

    monkeypatch.setattr(socket, "gethostname", lambda: "Node-7")
    weights(oja_task(standalone), batch(0), seed=1)
    project = CompiledSimulation._current.directory
    gone = _gone_pid()
    live = subprocess.Popen(["sleep", "60"])
    host = "node-7"
    try:
        folders = {name: project / name for name in (f"results_{host}_{gone}", f"results_{gone}",
                                                     f"results_{host}_{live.pid}", f"results_otherhost_{gone}")}
        for folder in folders.values():
            (folder / "args").mkdir(parents=True)
        in_memory = {name: MEMORY_FOLDER / f"another-project-{name}" for name in (
            f"results_{host}_{gone}", f"results_{host}_{live.pid}", f"results_other-host_{gone}")}
        for folder in in_memory.values():
            folder.mkdir(parents=True)
        clear_simulations()
        weights(oja_task(standalone), batch(0), seed=1)
        left = {name for name, folder in folders.items() if folder.exists()}
        assert left == {f"results_{host}_{live.pid}", f"results_otherhost_{gone}"}
        assert [name for name, folder in in_memory.items() if folder.exists()] == [f"results_{host}_{live.pid}",
                                                                                  f"results_other-host_{gone}"]
    finally:
        live.kill()
        live.wait()
        for folder in project.glob("results_*"):
            if folder.name != CompiledSimulation._current.results:
                shutil.rmtree(folder)
        for folder in MEMORY_FOLDER.glob("another-project-*"):
            shutil.rmtree(folder)


def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_later_cython_batches_compile_nothing(monkeypatch):
    from brian2.codegen.runtime.cython_rt.extension_manager import CythonExtensionManager

    clear_simulations()
    cython = dataclasses.replace(load_target(ROOT / "hw_targets/cpu.yaml"), codegen="cython")
    task = oja_task(cython)
    first = weights(task, batch(0), seed=1)
    compiled = []
    original = CythonExtensionManager._load_module
    monkeypatch.setattr(CythonExtensionManager, "_load_module",
                        lambda self, *a, **k: compiled.append(a) or original(self, *a, **k))
    second = weights(task, batch(1), seed=1)
    assert compiled == []
    runtime = weights(oja_task(load_target(ROOT / "hw_targets/cpu.yaml")), batch(1), seed=1)
    finite = np.isfinite(runtime)
    np.testing.assert_allclose(second[finite], runtime[finite], rtol=1e-9, atol=1e-12)
    assert not np.allclose(first[np.isfinite(first)][:5], second[np.isfinite(second)][:5])
    clear_simulations()


def test_a_study_builds_one_network(write_study):
    from codesign.spec import load_study
    from codesign.search.launcher import run_study

    clear_simulations()
    before = builds()
    run_study(load_study(write_study(n_trials=20, batch_size=6)))  # 3 full batches and a partial one
    assert builds().networks - before.networks == 1
    assert builds().compiled == before.compiled  # numpy runtime: nothing to compile
    clear_simulations()


def test_a_spike_input_is_padded_in_delivery_order():
    """A run's spikes, as a standalone program gets them: by time step then input (the order of
    delivery), padded with spikes at steps no run reaches; beyond the capacity, an error."""
    import brian2

    from codesign.backends.base import NEVER_STEP, padded_spike_list, spike_input

    brian2.set_device("runtime")
    group = spike_input(3, 5, brian2.Clock(0.1 * brian2.ms, name="clock"), "inputs")
    padded = padded_spike_list(group, np.array([2, 0, 1]), np.array([0.3e-3, 0.3e-3, 0.0]))
    assert padded["neuron_index"].tolist() == [1, 0, 2, 0, 0]
    assert padded["_timebins"].tolist() == [0, 3, 3, NEVER_STEP, NEVER_STEP + 1]
    with pytest.raises(ValueError, match="holds at most 5"):
        padded_spike_list(group, np.zeros(6, dtype=int), np.arange(6) * 1e-4)
    with pytest.raises(ValueError, match="twice in one time step"):
        padded_spike_list(group, np.array([1, 1]), np.array([0.2e-3, 0.2e-3]))


def test_forgetting_or_reshaping_a_network_builds_it_again_and_the_cache_saves_the_compile(standalone):
    """The build counter counts real builds: a network forgotten, or one of another shape, is
    built again; a standalone project found compiled in the cache is built but not compiled."""
    task = oja_task(standalone)
    before = builds()
    weights(task, batch(0), seed=1)
    weights(task, batch(1), seed=2)  # same network, new rules and inputs: no build
    first = builds()
    assert first.networks - before.networks == 1
    clear_simulations()
    weights(task, batch(0), seed=1)
    again = builds()
    assert again.networks - first.networks == 1
    assert again.compiled == first.compiled, "the project compiled again although it was in the cache"
    weights(task, batch(0, size=7), seed=1)  # 7 candidates: another network shape, a new project
    reshaped = builds()
    assert reshaped.networks - again.networks == 1
    assert reshaped.compiled - again.compiled == 1


def test_a_build_replaces_static_arrays_whole_for_programs_starting_meanwhile(standalone):
    """Brian2 truncates and rewrites every static array (connectivity, tables) at each build, and a compiled
    program reads them as it starts: a process building the project while another process's program started
    handed it part of a file (`eval --workers 2`: an empty table, a wrong loss, in about 1 run of 4). Each is
    now written aside and renamed over the old one, so a file opened before a rebuild stays whole and the
    name points at a new, whole file."""
    from codesign.backends.standalone import CompiledSimulation

    task = oja_task(standalone)
    first = weights(task, batch(0), seed=1)
    folder = CompiledSimulation._current.directory / "static_arrays"
    files = sorted(p for p in folder.iterdir() if not p.name.endswith(".lock"))
    assert files
    contents = {p: p.read_bytes() for p in files}
    opened = {p: os.open(p, os.O_RDONLY) for p in files}
    try:
        inodes = {p: os.stat(p).st_ino for p in files}
        clear_simulations()
        np.testing.assert_array_equal(weights(task, batch(0), seed=1), first)  # built again: rewritten
        for p in files:
            assert os.stat(p).st_ino != inodes[p], f"{p.name} was rewritten in place"
            assert p.read_bytes() == contents[p]
            assert os.pread(opened[p], len(contents[p]) + 1, 0) == contents[p]  # the old file, whole
        assert not [p for p in folder.parent.iterdir() if p.name.startswith("static_arrays_")]  # no staging left
    finally:
        for fd in opened.values():
            os.close(fd)
