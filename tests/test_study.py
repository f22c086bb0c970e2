"""Studies: a short run, resume, several workers on one journal, reclaiming a dead worker's trials."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
import yaml

import optuna
import pytest
from optuna.trial import TrialState

import codesign

from codesign.cli import main
from codesign.spec import load_study
from codesign.search.launcher import run_study
from codesign.search.liveness import WORKER_ATTR as _WORKER_ATTR
from codesign.search.study import count_trials, open_study, reclaim_dead_trials, study_population


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def test_short_study_finishes_its_trials_and_improves(write_study):
    spec = load_study(write_study(n_trials=36))
    study = run_study(spec)
    assert count_trials(study) == (36, 0)
    assert set(states(study)) <= {"COMPLETE", "PRUNED"}
    values = [t.value if t.value is not None else t.intermediate_values[0] for t in study.trials]
    assert min(values[12:]) <= min(values[:6])
    assert all("abs_cos_pc1" in t.user_attrs["metrics"] for t in study.trials)


def test_progress_reports_the_trials_finished_and_the_best_loss_so_far(write_study):
    """What the progress bar shows after each batch: the trials finished, and the best loss of the
    COMPLETE trials (kept up to date trial by trial, not re-read from every trial at every batch)."""
    spec = load_study(write_study(n_trials=36))
    seen = []
    study = run_study(spec, on_progress=lambda done, total, best: seen.append((done, total, best)))
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen) and seen[-1][:2] == (36, 36)
    bests = [best for _, _, best in seen if best is not None]
    assert bests == sorted(bests, reverse=True) and len(set(bests)) > 1
    assert seen[-1][2] == min(t.value for t in study.get_trials(states=(TrialState.COMPLETE,)))


def test_a_study_run_again_resumes(write_study):
    spec = load_study(write_study())
    run_study(spec, n_trials=12)
    first = [(t.number, t.params, t.value) for t in open_study(spec).trials]
    study = run_study(spec, n_trials=24)
    assert count_trials(study) == (24, 0)
    assert [(t.number, t.params, t.value) for t in study.trials[:12]] == first
    # Asking for fewer trials than are finished does nothing.
    assert len(run_study(spec, n_trials=6).trials) == 24


def test_two_workers_share_one_journal_and_waste_no_cmaes_trial(write_study, capsys):
    path = write_study(n_trials=48, batch_size=8)
    assert main(["run", path, "--workers", "2", "--quiet"]) == 0
    study = open_study(load_study(path))  # opened by one worker now: it keeps the population it was created with
    assert study_population(study) == 16
    assert count_trials(study) == (48, 0)
    # A worker that asked for places the other had filled fails those trials as surplus, unevaluated.
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state == TrialState.FAIL)
    complete = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    workers = {t.system_attrs[_WORKER_ATTR] for t in complete}
    assert len(workers) == 2, "both workers should have evaluated trials"
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == len(params), "workers must not propose the same candidates"
    # The population is batch_size times the 2 workers: after the random first trials, whole CMA-ES
    # generations of exactly 16 (the last may be cut by n_trials), so CMA-ES uses every trial.
    generations = [t.system_attrs.get("cma:generation", -1) for t in complete]
    sizes = [generations.count(g) for g in range(max(generations) + 1)]
    assert 1 <= generations.count(-1) <= 16 and len(sizes) >= 2
    assert sizes[:-1] == [16] * (len(sizes) - 1) and 1 <= sizes[-1] <= 16
    surplus = [t for t in study.trials if t.state == TrialState.FAIL]
    # Two workers of 8 fill a generation of 16 without overfilling it; only the race for the last
    # places of the study can leave one batch surplus.
    assert len(surplus) <= 8, "workers should wait for a full generation, not ask and fail"


def test_a_worker_with_nothing_to_ask_wakes_for_a_change_made_while_it_looked(write_study, monkeypatch):
    """A worker that finds its CMA-ES generation full waits for the study to change. A change written
    between its look and its wait (the other worker's last result) wakes it at once: read after it,
    the worker would sleep until the next change, a whole batch later (here its longest wait, 30 s)."""
    from codesign.search import worker
    from codesign.search.worker import run_worker

    spec = load_study(write_study(n_trials=8, batch_size=8))
    looked = []

    def ask_batch(study, *args):
        if looked:
            return real(study, *args)
        looked.append(True)
        study.set_user_attr("written_by_another_worker", True)  # after the look, before the wait
        return []

    real = worker.ask_batch
    monkeypatch.setattr(worker, "ask_batch", ask_batch)
    stats = run_worker(spec, poll_s=30.0)
    assert stats.trials == 8 and looked
    assert stats.wait_s < 3.0, f"the worker slept {stats.wait_s:.1f} s past the change"


def test_without_a_progress_display_the_parent_of_workers_reads_the_storage_once_at_the_end(write_study, monkeypatch):
    """Following a journal replays every worker's lines, on the cores the workers simulate on: the
    parent of ``run --workers`` follows it only to show progress."""
    from codesign.search import launcher

    watched = []
    watch = launcher._Progress.watch
    monkeypatch.setattr(launcher._Progress, "watch", lambda self, *args: watched.append(1) or watch(self, *args))
    sleep = time.sleep
    monkeypatch.setattr(launcher.time, "sleep", lambda s: sleep(min(s, 0.01)))  # it would watch every 10 ms
    study = run_study(load_study(write_study(n_trials=48, batch_size=8)), workers=2)
    assert count_trials(study) == (48, 0) and watched == [1]


def test_a_study_keeps_its_population_when_resumed_with_more_workers(write_study):
    """Created by one worker (population 8), resumed by two: they share its generations (4 each), and
    a set ``sampler.population`` is kept whatever the number of workers."""
    spec = load_study(write_study(n_trials=8, batch_size=8))
    run_study(spec)
    study = run_study(spec, n_trials=24, workers=2)
    assert study_population(study) == 8 and count_trials(study) == (24, 0)
    generations = [t.system_attrs.get("cma:generation", -1) for t in study.trials if t.state != TrialState.FAIL]
    assert [generations.count(g) for g in range(max(generations) + 1)] == [8, 8]
    batches = {}
    for t in study.trials[8:]:  # the two workers'
        batches.setdefault((t.system_attrs[_WORKER_ATTR], t.datetime_start), []).append(t)
    assert max(len(b) for b in batches.values()) == 4, "each worker simulates its share of a generation"
    fixed = load_study(write_study(name="fixed", n_trials=8, batch_size=8, sampler={"name": "cmaes", "population": 12}))
    assert study_population(run_study(fixed, workers=2)) == 12


def test_dead_workers_trials_are_failed_and_retried(write_study):
    spec = load_study(write_study(n_trials=8, batch_size=4))
    study = open_study(spec)
    from codesign.search.space import distributions

    orphan = study.ask(distributions(spec))
    dead_pid = os.getpid() + 10_000_000  # above pid_max: no such process
    study._storage.set_trial_system_attr(orphan._trial_id, _WORKER_ATTR, f"{os.uname().nodename}:{dead_pid}")
    alive = study.ask(distributions(spec))
    study._storage.set_trial_system_attr(alive._trial_id, _WORKER_ATTR, f"{os.uname().nodename}:{os.getpid()}")
    assert reclaim_dead_trials(study, spec) == 1
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert study.trials[alive.number].state == TrialState.RUNNING
    study.tell(alive, state=TrialState.FAIL)
    finished = run_study(spec)
    assert count_trials(finished) == (8, 0)
    retried = [t for t in finished.trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retried) == 1 and retried[0].params == orphan.params
    assert retried[0].state == TrialState.COMPLETE


def test_cli_run_best_and_eval(write_study, capsys, workdir):
    path = write_study(n_trials=12)
    assert main(["run", path, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "best rule of tiny" in out
    for name in ("best_rule.yaml", "loss_over_trials.png", "oja_best_rule.png"):
        assert (workdir / "results/tiny" / name).stat().st_size > 0

    assert main(["best", path, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert set(best["coefficients"]) == {"theta_110", "theta_021", "theta_001"}
    assert best["loss"] == pytest.approx(min(t.value for t in open_study(load_study(path)).trials))
    assert best["equation"].startswith("dw/dt = eta * (")

    assert main(["eval", path, "--rule", "oja", "--json"]) == 0
    oja = json.loads(capsys.readouterr().out)
    assert main(["eval", path, "--rule", "zero", "--json"]) == 0
    zero = json.loads(capsys.readouterr().out)
    assert oja["loss"] < zero["loss"]
    assert {"loss", "abs_cos_pc1", "seed"} <= set(oja)

    assert main(["eval", path, "--rule", "results/tiny/best_rule.yaml", "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["eval", path, "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert from_file["loss"] == pytest.approx(default["loss"])


def test_diverging_candidates_are_pruned_with_their_reason(write_study):
    # Wide bounds on y^2 w and the constant: many random rules blow up.
    spec = load_study(write_study(n_trials=24, rule={"terms": ["theta_110", "theta_021", "theta_000"],
                                                      "bounds": [-5.0, 5.0]}))
    study = run_study(spec)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "expected some diverging candidates with these bounds"
    for trial in pruned:
        assert trial.user_attrs["diverged_reason"].startswith("NaN or infinite weights")
        assert trial.intermediate_values == {0: 10.0}
    assert count_trials(study) == (24, 0)


#: The target-rate model made small: 100 inputs at high rates, one draw, 1 s.
RATE_MODEL = ("model: models/target-rate.yaml\n"
              "constants: {n_excitatory: 80, n_inhibitory: 20, rate_excitatory: 50*Hz, rate_inhibitory: 100*Hz,\n"
              "            learn: 0.5*second, measure: 0.5*second}\n"
              "draws: 1\n")


def test_target_rate_study_end_to_end(workdir, capsys):
    # Every rule counts as good for the plot of solutions (8 trials find none below the model's 0.01).
    model = (workdir / "models/target-rate.yaml").read_text()
    assert "  kind: rate_to_target\n" in model
    (workdir / "models/rate.yaml").write_text(model.replace("  kind: rate_to_target\n",
                                                            "  kind: rate_to_target\n  good_loss: 10.0\n"))
    study_file = workdir / "studies/rate.yaml"
    study_file.write_text(
        RATE_MODEL.replace("models/target-rate.yaml", "models/rate.yaml") +
        "rule: {family: spike_trace, terms: [pre_1, pre_y, post_x], tau_ms: [5, 50]}\n"
        "target: hw_targets/cpu.yaml\nn_trials: 8\nbatch_size: 4\n")
    assert main(["run", str(study_file), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "tau_x_ms" in out and "best distinct rules" in out
    assert (workdir / "results/rate/target-rate_solutions.png").stat().st_size > 0
    assert main(["eval", str(study_file), "--rule", "vogels", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["rates_hz"]) == 1 and result["rule"] == "vogels"
    assert main(["best", str(study_file), "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert set(best["coefficients"]) == {"pre_1", "pre_y", "post_x", "tau_x_ms", "tau_y_ms"}
    assert 5 <= best["coefficients"]["tau_x_ms"] <= 50


RATE_STUDY = RATE_MODEL + "rule: {family: spike_trace}\ntarget: hw_targets/cpu.yaml\nbatch_size: 4\n"


def test_compare_runs_one_rule_on_every_target_without_a_gpu(workdir, capsys):
    """The README's form: every shipped target, the GPU one emulated on the CPU, energy per kind."""
    study_file = workdir / "studies/rate.yaml"
    study_file.write_text(RATE_STUDY)
    targets = sorted(str(p.relative_to(workdir)) for p in (workdir / "hw_targets").glob("*.yaml"))
    assert main(["compare", str(study_file), "--rule", "vogels", "--targets", *targets, "--json"]) == 0
    rows = {row["file"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(targets)
    rows = {row["target"]: row for row in rows.values()}
    for row in rows.values():
        assert row["error"] is None and row["loss"] is not None and row["duration_s"] == 1.0
        assert set(row["energy"]) <= {"per_operation", "static", "whole_chip", "wall_plug"}
        assert not {"energy_j", "energy_per_s_j"} & set(row), "no total across kinds"
    assert rows["gpu"]["emulated_on"] == "cpp_standalone (float64)"
    assert rows["gpu"]["not_emulated"] == ["cuda_standalone: simulated on cpp_standalone (float64) instead"]
    assert rows["gpu"]["loss"] == rows["cpu-standalone"]["loss"]
    assert rows["gpu"]["energy"] == {"wall_plug": None}, "no per-update wall-plug figure is published"
    loihi = rows["loihi"]
    assert loihi["fits"] and loihi["cores"] == 1 and set(loihi["energy"]) == {"per_operation", "static"}
    assert loihi["energy"]["static"] == pytest.approx(0.104 / 128 * 1.0), "one core's share of the chip, 1 s"
    assert 0 < loihi["energy"]["per_operation"] < 1e-5
    assert "weights quantised to 8 bits, stochastic rounding" in loihi["changes"]
    assert "traces in 7-bit registers, stochastic rounding" in loihi["changes"]
    assert rows["spinnaker2"]["energy"] == {"per_operation": None, "static": None} and rows["spinnaker2"]["unknown"]
    # Loihi 2 fits; its wall-plug bound is known, its per-operation energy (learning updates) is not.
    assert rows["loihi2"]["fits"] and rows["loihi2"]["energy"]["per_operation"] is None
    assert rows["loihi2"]["energy"]["wall_plug"] > 0
    assert not rows["truenorth"]["fits"] and set(rows["truenorth"]["energy"]) == {"whole_chip"}
    assert any("dropped" in change for change in rows["truenorth"]["changes"])
    assert rows["cpu"]["energy"] == {} and "no energy model for this target" in rows["cpu"]["unknown"]
    assert (workdir / "results/rate/compare.png").stat().st_size > 0


def test_a_target_that_cannot_be_evaluated_gets_a_row_with_its_reason(workdir, capsys):
    study_file = workdir / "studies/rate.yaml"
    study_file.write_text(RATE_STUDY)
    (workdir / "hw_targets/broken.yaml").write_text("name: broken\nprecision: {weight_bits: 0}\n")
    assert main(["compare", str(study_file), "--rule", "vogels",
                 "--targets", "hw_targets/broken.yaml", "hw_targets/cpu.yaml", "--json"]) == 0
    broken, cpu = json.loads(capsys.readouterr().out)
    assert broken["target"] == "broken" and broken["loss"] is None and not broken["fits"]
    assert broken["error"] == ("hw_targets/broken.yaml: precision.weight_bits: must be between 1 and 64, got 0 "
                               "(fix: use a value between 1 and 64)")
    assert cpu["error"] is None and cpu["loss"] is not None
    # With no target left to compare, the command fails in one line.
    assert main(["compare", str(study_file), "--rule", "vogels", "--targets", "hw_targets/broken.yaml"]) == 2
    assert "codesign: error: no target could be evaluated; the first: hw_targets/broken.yaml: precision" in \
        capsys.readouterr().err


def test_compare_says_which_number_formats_the_model_did_not_emulate(write_study, workdir, capsys):
    """The Oja model has no bounded weights or traces, so its emulation ignores a target's precision:
    its row must say so, not claim a weight grid."""
    (workdir / "hw_targets/coarse.yaml").write_text(
        "name: coarse\nbackend: runtime\nprecision: {weight_bits: 4, trace_bits: 5, rounding: nearest}\n")
    study_file = write_study()
    assert main(["compare", study_file, "--rule", "oja", "--targets", "hw_targets/coarse.yaml", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["changes"] == []
    assert row["not_emulated"] == ["weights quantised to 4 bits, nearest rounding",
                                   "traces in 5-bit registers, nearest rounding (the model's emulation applies no "
                                   "number format)"]
    assert row["unknown"] == ["no energy model for this target"]


def test_joint_rule_and_hardware_study_gives_a_pareto_front(workdir, capsys):
    study_file = workdir / "studies/joint.yaml"
    study_file.write_text(
        RATE_MODEL +
        "rule: {family: spike_trace, terms: [pre_1, pre_y, post_x]}\n"
        "hardware: {weight_bits: [1, 8], trace_bits: [3, 7], rounding: [nearest, stochastic]}\n"
        "objectives: [loss, weight_bits]\n"
        "target: hw_targets/loihi2.yaml\nsampler: {name: nsga2}\nn_trials: 12\nbatch_size: 6\n")
    assert main(["run", str(study_file), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["best", str(study_file), "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert 1 <= best["coefficients"]["hw.weight_bits"] <= 8
    assert best["coefficients"]["hw.rounding"] in ("nearest", "stochastic")
    front = best["pareto"]
    assert front and all(set(entry) >= {"trial", "loss", "weight_bits"} for entry in front)
    losses = [entry["loss"] for entry in front]
    bits = [entry["weight_bits"] for entry in front]
    assert losses == sorted(losses) and bits == sorted(bits, reverse=True), "a front trades loss for bits"
    assert (workdir / "results/joint/pareto_front.png").stat().st_size > 0
    # eval runs the best trial with its knobs, and every front trial again on held-out inputs.
    assert main(["eval", str(study_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["knobs"]) == {"weight_bits", "trace_bits", "rounding"}
    assert [entry["trial"] for entry in result["pareto"]] == [entry["trial"] for entry in front]
    for entry, trial in zip(result["pareto"], front):
        assert entry["knobs"]["weight_bits"] == trial["weight_bits"] and entry["held_out_loss"] >= 0
    # The width sweep's held-out runs (run --workers N shares them out over N processes): the same either way.
    from codesign.report import precision_sweep

    study = codesign.load_study(str(study_file))
    one_at_a_time = dataclasses.replace(study.spec, batch_size=1)  # a batch per width: several to share out
    sweep = precision_sweep(one_at_a_time, study.optuna)
    assert len(sweep) > 1 and precision_sweep(one_at_a_time, study.optuna, workers=2) == sweep


def test_energy_objective_needs_a_target_with_an_energy_model(workdir, capsys):
    study_file = workdir / "studies/bad.yaml"
    study_file.write_text("model: models/target-rate.yaml\nrule: {family: spike_trace}\nobjectives: [loss, energy]\n"
                          "target: hw_targets/spinnaker2.yaml\nsampler: {name: nsga2}\n")
    assert main(["run", str(study_file)]) == 2
    assert ("objectives: energy needs per-event figures of one kind, all published: target spinnaker2 does not "
            "publish its energy per synaptic event, energy per spike, energy per learning update") in \
        capsys.readouterr().err
    study_file.write_text(study_file.read_text().replace("spinnaker2", "gpu"))
    assert main(["run", str(study_file)]) == 2
    assert "target gpu does not publish its energy per learning update" in capsys.readouterr().err


def test_the_energy_objective_is_the_per_operation_energy_without_the_static_share(workdir):
    from codesign.hardware import EventCounts
    from codesign.search.worker import objective_values as _objectives
    from codesign.models import Evaluation

    study_file = workdir / "studies/joint.yaml"
    study_file.write_text("model: models/target-rate.yaml\nrule: {family: spike_trace}\nobjectives: [loss, energy]\n"
                          "target: hw_targets/loihi.yaml\nsampler: {name: nsga2}\n")
    counts = EventCounts(duration_s=2.0, synaptic_events=1000, spikes=50, learning_updates=200, neurons=1,
                         synapses=1000, plastic_synapses=200)
    values, fits = _objectives(load_study(study_file), Evaluation(0.5, counts=counts), {})
    # Davies et al. 2018's per-operation figures, 2000 neuron updates of 1 ms; no static power.
    assert values == [0.5, pytest.approx(1000 * 23.6e-12 + 50 * 1.7e-12 + 200 * 120e-12 + 2000 * 81e-12)]
    assert fits


def test_port_refuses_a_rate_based_study(write_study, capsys):
    """Oja's network is rates, not spikes: its groups have no neuron Lava runs, both refused in one line."""
    assert main(["port", write_study(), "--rule", "oja"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codesign: error: ") and err.count("\n") == 1
    assert err.startswith("codesign: error: models/oja.yaml: groups.inputs: not a neuron lava-nc 0.10.0 runs: no "
                          "threshold; and 1 more: groups.output: not a neuron lava-nc 0.10.0 runs: no threshold")
    assert err.endswith("(fix: give the group a loihi2: variant in the model file (a current-based LIF))\n")


def _study_best_rule_file(folder) -> str:
    from tests.test_loihi2 import STUDY_BEST

    from codesign.rules import save_candidate

    path = folder / "best_rule.yaml"
    save_candidate({"inhibitory": STUDY_BEST}, path)
    return str(path)


def test_port_finds_its_default_target_outside_the_checkout(tmp_path, monkeypatch, capsys):
    """From a folder without hw_targets/, port still reads the bundled loihi2.yaml: the study's best
    rule is then refused for its pre_y term (which only a loaded target can tell), before any run."""
    from tests.conftest import ROOT

    monkeypatch.chdir(tmp_path)
    rule = _study_best_rule_file(tmp_path)
    assert main(["port", str(ROOT / "studies/target-rate.yaml"), "--rule", rule, "--json"]) == 2
    err = capsys.readouterr().err
    assert "synapses.inhibitory.rule: term eta_inhibitory*inhibitory_pre_y*y -> x0*y1: scale -0.000295 rounds to 0" \
           in err
    assert "(fix: port with --allow-drop" in err and err.count("\n") == 1


@pytest.mark.lava
def test_port_allow_drop_lists_what_changed(tmp_path, monkeypatch, capsys):
    """--allow-drop ports the rule on a short protocol and lists the dropped term (JSON and table)."""
    from codesign.hardware.target import bundled_target
    from tests.conftest import ROOT

    study = yaml.safe_load((ROOT / "studies/target-rate.yaml").read_text())
    study.update(model=str(ROOT / "models/target-rate.yaml"), target="cpu",
                 constants={"learn": "0.3*second", "measure": "0.2*second"})
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(study))
    monkeypatch.chdir(tmp_path)
    command = ["port", "short.yaml", "--rule", _study_best_rule_file(tmp_path), "--allow-drop"]
    assert main([*command, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["network"]["target"] == str(bundled_target("loihi2")) and result["network"]["allow_drop"]
    assert [t["product"] for t in result["rule"]["inhibitory"]["dropped"]] == ["x0*y1"]
    dropped = [c for c in result["changes"] if "x0*y1 dropped" in c]
    assert len(dropped) == 1
    for run in ("brian2", "brian2_chip_order", "lava_float", "lava_fixed"):
        assert np.isfinite(result[run]["loss"]) and result[run]["seconds"] > 0
    assert main(command) == 0
    out = capsys.readouterr().out
    assert f"  {dropped[0]}\n" in out


def test_a_study_whose_first_candidates_all_diverge_still_finishes(write_study):
    # With these bounds nearly every rule blows up: CMA-ES has no finished trial to start from.
    spec = load_study(write_study(n_trials=12, batch_size=4, rule={"terms": ["theta_021", "theta_000"],
                                                                   "bounds": [20.0, 50.0]}))
    study = run_study(spec)
    assert count_trials(study) == (12, 0)
    assert all(t.state == TrialState.PRUNED for t in study.trials if t.state != TrialState.FAIL)


def test_candidates_that_do_not_fit_the_target_are_infeasible(workdir, capsys):
    """100 synapses on a chip of one core with 50 synapses per core: every trial is infeasible (an
    Optuna constraint), none reaches the Pareto front; with two cores the same study fits."""
    import optuna

    from codesign.spec import load_study
    from codesign.search.study import feasible, open_study

    for cores in (1, 2):
        (workdir / f"hw_targets/chip{cores}.yaml").write_text(
            f"name: chip{cores}\nkind: neuromorphic\nlearning: {{engine: sum_of_products}}\n"
            f"resources:\n  cores: {{value: {cores}, kind: count, source: test}}\n"
            "  synapses_per_core: {value: 50, kind: count, source: test}\n")
        study_file = workdir / f"studies/chip{cores}.yaml"
        study_file.write_text(
            RATE_MODEL.replace("0.5*second", "0.3*second") +
            "rule: {family: spike_trace, terms: [pre_1, pre_y, post_x]}\nhardware: {weight_bits: [1, 8]}\n"
            f"objectives: [loss, weight_bits]\ntarget: hw_targets/chip{cores}.yaml\n"
            "sampler: {name: nsga2}\nn_trials: 6\nbatch_size: 6\n")
        assert main(["run", str(study_file), "--quiet"]) == 0
        trials = open_study(load_study(study_file)).get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert len(trials) == 6
        assert [feasible(t) for t in trials] == [cores == 2] * 6
        assert all(t.constraints == {"fits_target": 0.0 if cores == 2 else 1.0} for t in trials)
        capsys.readouterr()
        assert main(["best", str(study_file), "--json"]) == 0
        front = json.loads(capsys.readouterr().out)["pareto"]
        assert bool(front) == (cores == 2)
