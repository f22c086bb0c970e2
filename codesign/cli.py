"""The ``codesign`` command: run studies, show and evaluate the rules they found.

Every user error (:class:`~codesign.errors.CodesignError`) is printed as one line on stderr with
exit code 2; finished trials are already in the storage when that happens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import zlib
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from codesign.errors import CodesignError

__all__ = ["main"]


def _console():
    from rich.console import Console

    return Console()


def _load_existing_study(spec, storage: str | None):
    """The study's last refinement round (spec, study; see :func:`codesign.search.rounds.final_round`) and
    every round (one without refinement) from its storage, without creating one where nothing ran yet."""
    import optuna

    from codesign.search.rounds import existing_rounds, final_round

    from codesign.search.storage import redact

    url, file, key = spec.storage_source(storage)
    if url.startswith("journal:") and not Path(url[len("journal:"):]).exists():
        raise CodesignError(f"no results yet for study {spec.name!r} ({url[len('journal:'):]} is missing)",
                            file=spec.file, fix=f"run: codesign run {spec.file}")
    try:
        rounds = existing_rounds(spec, storage)
    except (optuna.exceptions.StorageInternalError, ValueError) as exc:
        raise CodesignError(f"cannot open storage: {redact(str(exc), url)}", file=file, key=key) from None
    return (*final_round(spec, storage, rounds), rounds)


def _print_rule_table(console, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"best rule of {summary['study']} (trial {summary['trial']}, loss {summary['loss']:.4g})")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    normalised = summary.get("normalised", {})
    if normalised:  # polynomial rules only
        table.add_column("/ |theta_110|", justify="right")
    for name, value in summary["coefficients"].items():
        shown = f"{value:+.4f}" if isinstance(value, float) else str(value)
        table.add_row(name, shown, *([f"{normalised[name]:+.3f}" if name in normalised else "-"] if normalised else []))
    console.print(table)
    for slot, rule in summary["rules"].items():
        console.print(f"{slot}: {rule['readable']}")
    if summary["metrics"]:
        console.print("metrics: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in summary["metrics"].items()))
    for entry in summary.get("rounds", []):
        dropped = ", ".join(f"{name} ({size:.2g})" for name, size in entry["dropped"].items()) or "none"
        console.print(f"round {entry['round']} ({entry['study']}): {len(entry['searched'])} parameters, "
                      f"best loss {_fmt(entry['best_loss'])} (trial {entry['best_trial']})"
                      + (f"; dropped from trial {entry['from_trial']}: {dropped}" if entry["round"] else ""),
                      highlight=False)
    if "stability" in summary:
        check = summary["stability"]
        console.print(f"stability on held-out seeds {', '.join(map(str, check['seeds']))}: "
                      f"{len(check['rejected'])} of {len(check['checked'])} best trials rejected"
                      + "".join(f"; trial {n} {why}" for n, why in check["rejected"].items())
                      + ("" if check["passed"] is not None else "; none passed, the best unchecked trial is shown"),
                      highlight=False)
    if summary.get("pareto"):
        front = Table(title="Pareto front (feasible trials)")
        front.add_column("trial", justify="right")
        for objective in summary["objectives"]:
            front.add_column(objective, justify="right")
        for entry in summary["pareto"]:
            front.add_row(str(entry["trial"]), *(f"{entry[o]:.4g}" for o in summary["objectives"]))
        console.print(front)
    if len(summary.get("top", [])) > 1:
        top = Table(title="best distinct rules")
        top.add_column("trial", justify="right")
        top.add_column("loss", justify="right")
        top.add_column("rule")
        for entry in summary["top"]:
            top.add_row(str(entry["trial"]), f"{entry['loss']:.4g}",
                        "\n".join(f"{slot}: {r['readable']}" for slot, r in entry["rules"].items()))
        console.print(top)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _check_runnable(target) -> None:
    """Fail now where the target cannot run here (a GPU target without a GPU), not after a build."""
    from codesign.backends import check_runnable

    check_runnable(target)


def cmd_run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from codesign.report import best_summary, check_stability, write_results
    from codesign.spec import load_study
    from codesign.search.storage import mask
    from codesign.search.launcher import run_study

    spec = load_study(args.study, args.target)
    _check_runnable(spec.target)
    # The results (and the workers' logs) are written there after the work: check now.
    _writable(spec.results_dir / "best_rule.yaml", None, fix="run codesign from a folder you can write to")
    console = _console()
    target = args.trials or spec.n_trials
    from codesign.search.space import distributions

    console.print(f"study [bold]{spec.name}[/]: model {spec.model.name}, {len(distributions(spec))} parameters, "
                  f"sampler {spec.sampler.name}, batches of {spec.batch_size}, target {spec.target.name}, "
                  f"{args.workers} worker(s), storage {mask(spec.storage_url(args.storage))}")
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("best loss {task.fields[best]}"), TimeElapsedColumn(), console=console,
                  disable=args.quiet) as progress:
        bar = progress.add_task("trials", total=target, best="-")

        def on_progress(done: int, total: int, best: float | None) -> None:
            progress.update(bar, completed=done, best="-" if best is None else f"{best:.4g}")

        run_study(spec, args.storage, args.trials, args.workers, None if args.quiet else on_progress)
    spec, study, rounds = _load_existing_study(spec, args.storage)
    check_stability(spec, study)
    paths = write_results(spec, study, args.workers)
    _print_rule_table(console, best_summary(spec, study, rounds=rounds if len(rounds) > 1 else ()))
    console.print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from codesign.spec import load_study
    from codesign.search.worker import run_worker

    from codesign.search.liveness import this_worker
    from codesign.search.storage import mask
    from codesign.search.worker import write_stats

    spec = load_study(args.study, args.target)
    _check_runnable(spec.target)
    if args.stats:
        _writable(Path(args.stats), "--stats")  # now, not after the work
    if not args.quiet:
        print(f"codesign worker {this_worker()}: study {spec.name}, storage {mask(spec.storage_url(args.storage))}",
              file=sys.stderr, flush=True)
    # Workers need distinct sampler seeds, or they propose the same candidates; without an index
    # (a job array's task id, say) one is drawn from this worker's host and pid.
    index = args.worker_index if args.worker_index is not None else 1 + zlib.crc32(this_worker().encode()) % 999_983
    stats = run_worker(spec, args.storage, args.trials, index, args.batch_size)
    if args.stats:
        _writable(Path(args.stats), "--stats", lambda path: write_stats(stats, path))
    if not args.quiet:
        print(f"codesign worker {this_worker()}: {stats.summary()}", file=sys.stderr)
    return 0


def _writable(path: Path, key: str | None, write: Callable[[Path], None] | None = None,
              fix: str = "give a file in a folder you can write to") -> None:
    """Write ``path`` with ``write``, or by default check that it can be written (leaving no new file)."""
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if write is not None:
            write(path)
            return
        with path.open("a"):
            pass
    except OSError as exc:
        raise CodesignError(f"cannot write {path}: {exc.strerror}", key=key, fix=fix) from None
    if not existed:
        path.unlink()


def cmd_best(args: argparse.Namespace) -> int:
    from codesign.report import best_summary
    from codesign.spec import load_study

    spec = load_study(args.study)
    spec, study, rounds = _load_existing_study(spec, args.storage)
    summary = best_summary(spec, study, rounds=rounds if len(rounds) > 1 else ())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_rule_table(_console(), summary)
    return 0


def _candidate_argument(spec, rule: str | None, storage: str | None):
    """The candidate named by ``--rule``: a name the model knows, a rule file, or by default the study's
    best; with the hardware knobs its trial searched (None: the target's own precision)."""
    from codesign.report import best_trial
    from codesign.search.space import candidate, knob_values
    from codesign.search.study import make_task

    if rule is None:
        spec, study, _ = _load_existing_study(spec, storage)
        trial = best_trial(spec, study)
        return (f"{spec.name} best (trial {trial.number})", candidate(spec, trial.params),
                knob_values(spec, trial.params) or None)
    return rule, make_task(spec).candidate(rule, spec.etas, key="--rule"), None


def cmd_eval(args: argparse.Namespace) -> int:
    from codesign.report import evaluate_seeds
    from codesign.search.study import make_task
    from codesign.spec import load_study

    spec = _with_constants(load_study(args.study, args.target), args.constants)
    _check_runnable(spec.target)
    name, cand, knobs = _candidate_argument(spec, args.rule, args.storage)
    runs = evaluate_seeds(spec, cand, args.seed or [None], knobs, args.workers)
    (evaluation, seed), many = runs[0], len(runs) > 1
    result = {"rule": name, "equation": "; ".join(r.equation() for r in cand.values()), "seed": seed,
              "knobs": knobs or {}, "loss": evaluation.loss, "diverged": evaluation.diverged, **evaluation.metrics}
    if many:
        result.update(_over_seeds(runs))
    if evaluation.counts is not None:
        from codesign.hardware import mean_figures, neurobench_figures

        result["neurobench"] = mean_figures([neurobench_figures(spec.target, e.counts, knobs) for e, _ in runs])
    if spec.sparsity is not None:  # what the study's objective adds to the loss for this rule
        from codesign.search.sparsity import candidate_penalty

        result["l1_penalty"] = candidate_penalty(spec, cand)
    if args.plot and make_task(spec).plot(evaluation, args.plot, title=f"{name}, seed {seed}"):
        result["plot"] = str(args.plot)
    front = None
    if args.rule is None and len(spec.objectives) > 1:
        from codesign.report import evaluate_front

        front = evaluate_front(spec, _load_existing_study(spec, args.storage)[1], (args.seed or [None])[0])
        result["pareto"] = front
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print_eval(spec, name, cand, knobs, runs, result, front)
    return 0


def _print_eval(spec: Any, name: str, cand: Any, knobs: dict | None, runs: list, result: dict[str, Any],
                front: list | None) -> None:
    (evaluation, seed), many = runs[0], len(runs) > 1
    console = _console()
    for slot, rule in cand.items():
        console.print(f"rule {name}, {slot}: {rule.readable()}")
    if knobs:
        console.print("hardware: " + ", ".join(f"{k} {v}" for k, v in knobs.items()))
    trained = "; ".join(_condition_text(c) for c in spec.conditions.train if c)
    console.print(f"model {spec.model.name} on held-out inputs (seed {seed}"
                  + (f", training conditions {trained}, their draws in this order" if trained else "")
                  + f"): loss [bold]{evaluation.loss:.4g}[/]" + (" (diverged)" if evaluation.diverged else ""))
    for key, value in evaluation.metrics.items():
        if key != "conditions":
            console.print(f"  {key}: {_fmt(value)}")
    for other, other_seed in runs[1:]:
        console.print(f"seed {other_seed}: loss [bold]{other.loss:.4g}[/]" + (" (diverged)" if other.diverged else "")
                      + "".join(f"; {k}: {_fmt(v)}" for k, v in other.metrics.items() if k != "conditions"))
    if many:
        console.print(f"mean over seeds {', '.join(map(str, result['seed']))}: loss [bold]{result['loss']:.4g}[/]")
    if result.get("neurobench"):
        console.print("NeuroBench-style figures, per sample (one pass through the protocol)"
                      + (", mean over seeds:" if many else ":"))
        for key, value in result["neurobench"].items():
            console.print(f"  {key}: {_fmt(value)}")
    if "l1_penalty" in result:
        console.print(f"the study's L1 penalty on this rule: {result['l1_penalty']:.4g} (not in the losses above)")
    if "plot" in result:
        console.print(f"figure: {result['plot']}")
    for condition in evaluation.metrics.get("conditions", []):
        console.print(f"held-out condition {_condition_text(condition['values'])}: loss [bold]{condition['loss']:.4g}[/]")
        for key, value in condition.items():
            if key not in ("values", "loss"):
                console.print(f"  {key}: {_fmt(value)}")
    if front:
        from rich.table import Table

        table = Table(title="Pareto front: loss in the study and on held-out inputs")
        for column in ("trial", *spec.objectives[1:], "knobs", "study loss", "held-out loss"):
            table.add_column(column, justify="right")
        for entry in front:
            table.add_row(str(entry["trial"]), *(_fmt(entry[o]) for o in spec.objectives[1:]),
                          ", ".join(f"{k} {v}" for k, v in entry["knobs"].items()),
                          _fmt(entry["loss"]), _fmt(entry["held_out_loss"]))
        console.print(table)


def _over_seeds(runs: list) -> dict[str, Any]:
    """Several held-out seeds: the loss and every numeric metric (numbers, lists of numbers) averaged over
    them, each seed's own results under ``per_seed``."""
    import numpy as np

    per_seed = [{"seed": seed, "loss": e.loss, "diverged": e.diverged, **e.metrics} for e, seed in runs]
    merged: dict[str, Any] = {"seed": [r["seed"] for r in per_seed], "diverged": any(r["diverged"] for r in per_seed)}
    for key in per_seed[0]:
        values = [r.get(key) for r in per_seed]
        try:
            mean = np.mean(np.asarray(values, dtype=float), axis=0)
        except (TypeError, ValueError):  # not numeric, or ragged: only per seed
            continue
        if key not in ("seed", "diverged"):
            merged[key] = mean.tolist()
    return {**merged, "per_seed": per_seed}


def _condition_text(condition: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in condition.items())


def cmd_compare(args: argparse.Namespace) -> int:
    from codesign.report import compare_targets, plot_comparison
    from codesign.spec import load_study

    spec = _with_constants(load_study(args.study), args.constants)
    name, cand, _ = _candidate_argument(spec, args.rule, args.storage)
    chart = spec.results_dir / "compare.png"
    _writable(chart, None, fix="run codesign from a folder you can write to")  # now, not after the simulations
    # Every target is simulated here (a GPU target on the CPU): a comparison needs no GPU, and a
    # target that fails to load or run gets a row with its reason instead of stopping the others.
    rows = compare_targets(spec, cand, args.targets, args.seed)
    plot_comparison(rows, chart, title=f"{spec.name}: {name}")
    failed = [r for r in rows if r["error"]]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_comparison(rows, f"{name} on {spec.model.name}, held-out inputs", chart)
    if len(failed) == len(rows):
        raise CodesignError(f"no target could be evaluated; the first: {failed[0]['error']}")
    return 0


def _print_comparison(rows: list[dict[str, Any]], title: str, chart: Path) -> None:
    """A table with one energy column per kind (never a total across kinds), then each target's notes."""
    from rich import box
    from rich.table import Table

    from codesign.report import energy_groups

    kinds = list(energy_groups(rows))
    duration = next((r["duration_s"] for r in rows if r["duration_s"]), None)
    if kinds:
        title += f"; energy in J over the task's {duration:g} s"
    # No vertical lines and one space between columns: all four kinds fit in 80 columns.
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0))
    for column in ("target", "loss", *(kind.replace("_", " ") for kind in kinds), "cores", "fits"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for r in rows:
        energy = ["-" if kind not in r["energy"] else "unknown" if r["energy"][kind] is None
                  else f"{r['energy'][kind]:.3g}" for kind in kinds]
        table.add_row(r["target"] or "?", "-" if r["loss"] is None else f"{r['loss']:.4g}", *energy,
                      "-" if r["cores"] is None else str(r["cores"]), "yes" if r["fits"] else "no")
    console = _console()
    console.print(table)
    if len(kinds) > 1:
        console.print("Energies of different kinds measure different things: compare down a column, never across.")
    _print_neurobench(console, [r for r in rows if r["neurobench"]])
    for r in rows:
        notes = ([f"error: {r['error']}"] if r["error"] else []) + r["changes"] + \
            [f"not emulated: {x}" for x in r["not_emulated"]] + r["reasons"] + r["unknown"]
        for note in notes:
            console.print(f"  {r['target'] or '?'}: {note}", highlight=False)
    console.print(f"chart: {chart}")


def _print_neurobench(console: Any, rows: list[dict[str, Any]]) -> None:
    """The NeuroBench-style figures of each target's row (README "NeuroBench-style figures")."""
    from rich import box
    from rich.table import Table

    if not rows:
        return
    columns = {"effective_acs": "ACs", "effective_macs": "MACs", "dense_ops": "dense", "activation_sparsity":
               "act. sp.", "connection_sparsity": "conn. sp.", "footprint_bytes": "bytes",
               "learning_updates_per_sample": "updates"}
    table = Table(title="NeuroBench-style figures per sample",
                  box=box.SIMPLE_HEAD, padding=(0, 0))
    for column in ("target", *columns.values()):
        table.add_column(column, justify="left" if column == "target" else "right")
    for r in rows:
        figures = r["neurobench"]
        table.add_row(r["target"] or "?", *(" -" if figures[k] is None else f" {figures[k]:.3g}" for k in columns))
    console.print(table)


def cmd_port(args: argparse.Namespace) -> int:
    from codesign.hardware.loihi2.port import DEFAULT_TARGET, RUNS, port
    from codesign.schema import Where
    from codesign.spec import load_study, resolve_target

    spec = load_study(args.study)
    target = resolve_target(args.target, Path(args.study), Where(None, "--target")) if args.target else DEFAULT_TARGET
    name, cand, _ = _candidate_argument(spec, args.rule, args.storage)
    result = port(spec, cand, args.seed, target, allow_drop=args.allow_drop)
    if args.json:
        print(json.dumps(result, indent=2, default=_json_value))
        return _port_status(result)
    from rich.table import Table

    console = _console()
    metrics = [k for k in result["brian2"] if k not in ("loss", "diverged", "seconds")]
    table = Table(title=f"{name}: {spec.model.name} ported to {Path(str(target)).stem} (seed {args.seed})")
    for column in ("run", "loss", *metrics, "seconds"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in (run for run in RUNS if run in result):
        r = result[run]
        if "refused" in r or "failed" in r:
            why = "refused" if "refused" in r else "failed"
            table.add_row(run, f"{why}: {r[why]}", *[""] * (len(metrics) + 1))
        else:
            table.add_row(run, _fmt(r["loss"]) + (" (diverged)" if r["diverged"] else ""),
                          *(_fmt(r.get(m, "-")) for m in metrics), f"{r['seconds']:.1f}")
    console.print(table)
    console.print("how the chip's network differs from the study's (each run above undoes fewer of these):")
    for change in result["changes"]:
        console.print(f"  {change}", markup=False, soft_wrap=True, highlight=False)
    return _port_status(result)


def _port_status(result: dict[str, Any]) -> int:
    """1 where a run failed (a fault, reported with the others' results), else 0."""
    return 1 if any(isinstance(r, dict) and "failed" in r for r in result.values()) else 0


def _json_value(value: Any) -> Any:
    """NumPy numbers and arrays in JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from codesign.report.dashboard import open_dashboard
    from codesign.search.storage import mask
    from codesign.spec import load_study

    spec = load_study(args.study)
    dashboard = open_dashboard(spec, args.storage, args.host, args.port)
    print(f"optuna-dashboard on {mask(spec.storage_url(args.storage))}: {dashboard.url} (Ctrl-C to stop)")
    for name, url in dashboard.study_urls().items():
        print(f"  study {name}: {url}", flush=True)
    try:
        dashboard.serve()
    except KeyboardInterrupt:  # how it is meant to stop: not an interrupted run (main's message)
        pass
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from codesign.models.check import check_file, render
    from codesign.models.spec import model_file
    from codesign.schema import Where

    # A bare name of one of codesign's own models (codesign check oja) means its file.
    report = check_file(model_file(args.file, Where(None, "MODEL.yaml|STUDY.yaml")), args.target)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(render(report)))
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from codesign.models.ensemble import train_xor

    result = train_xor(args.hidden, args.feedback, args.burst_probability, args.epochs, args.seed)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"BDSP, ensemble limit: 2-{args.hidden}-1 on XOR, {args.feedback} feedback, "
                        f"{args.burst_probability} burst probability, {args.epochs} updates, seed {args.seed}")
    for column in ("layer", "angle to -gradient, mean (deg)", "at the last update (deg)"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for layer, angle in summary["angle_deg"].items():
        table.add_row(layer, f"{angle['mean']:.3g}", f"{angle['final']:.3g}")
    console = _console()
    console.print(table)
    console.print("outputs for (0,0), (0,1), (1,0), (1,1): " + ", ".join(f"{o:.3f}" for o in summary["outputs"])
                  + f"; XOR right on {summary['xor_correct']} of 4; loss {summary['loss_initial']:.3g} -> "
                    f"{summary['loss']:.3g}", highlight=False)
    return 0


def _model_or_study(value: str, target: str | None) -> tuple[Any, Any, dict[str, float]]:
    """A model file (or codesign's own model of that name) or a study file: its model, target and etas."""
    from codesign.hardware import load_target
    from codesign.models import load_model
    from codesign.models.spec import model_file
    from codesign.rules import FAMILIES
    from codesign.schema import Where, read_yaml
    from codesign.spec import load_study, resolve_target

    path = Path(value)
    if path.is_file() and "model" in (read_yaml(path, "study or model file") or {}):
        spec = load_study(path, target)
        return spec.model, spec.target, spec.etas
    model = load_model(model_file(value, Where(None, "MODEL")))
    chosen = load_target(resolve_target(target or "cpu-standalone", Path.cwd() / "x", Where(None, "--target")))
    return model, chosen, {slot: FAMILIES[family].default_eta for slot, family in model.slots.items()}


def cmd_record(args: argparse.Namespace) -> int:
    from codesign.models.recorder import record
    from codesign.models.recordings import recordings_format, save_trajectories

    recordings_format(args.output, key="-o")  # before the teacher runs, not after
    model, target, candidate, teacher, what = _teacher_arguments(args)
    _writable(args.output, None, fix="give -o a path you can write to")
    if args.no_weights:
        what = dataclasses.replace(what, weights=None)
    recorded = record(model, target, candidate, what, trajectories=args.trajectories, seed=args.seed, noise=args.noise,
                      fraction=args.recorded_fraction, teacher=teacher)
    save_trajectories(args.output, recorded)
    print(f"recorded {args.trajectories} trajectories of {recorded.duration_s:g} s ({model.name}, rule {args.rule}), "
          f"{int(recorded.recorded.sum())} of {len(recorded.recorded)} units, noise {args.noise:g}: {args.output}")
    return 0


def _with_constants(spec, items: Sequence[str] | None):
    """The study with ``--constants`` set over its model's constants (its own ``constants:`` included)."""
    if not items:
        return spec
    from codesign.schema import Where

    return dataclasses.replace(spec, model=spec.model.with_constants(_assignments(items), Where(None, "--constants")))


def _assignments(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise CodesignError(f"{item!r} is not NAME=VALUE", key="--constants", fix="write e.g. --constants n_outputs=20")
        out[name.strip()] = value.strip()
    return out


def cmd_infer(args: argparse.Namespace) -> int:
    from codesign.search.infer import InferSettings, infer

    terms = "all" if args.terms == ["all"] else args.terms
    if args.refine and not (args.refine[0] == int(args.refine[0]) and 1 <= args.refine[0] <= 20):
        raise CodesignError(f"{args.refine[0]:g} rounds", key="--refine", fix="give a whole number of rounds from 1 to 20")
    settings = InferSettings(str(args.recordings), model=args.model, terms=terms, fit=args.fit,
                             n_trials=args.trials or 3000, batch_size=args.batch_size, seed=args.seed or 0,
                             eta=args.eta, target=args.target or "cpu-standalone", storage=args.storage,
                             l1=args.l1, refine_rounds=int(args.refine[0]) if args.refine else 0,
                             refine_threshold=args.refine[1] if args.refine else 0.05)
    result = infer(settings)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
        return 0
    _print_inferred(result)
    return 0


def _teacher_arguments(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], dict[str, Any], Any]:
    """The model (with ``--constants``), target, teacher candidate, its description, and what is recorded
    (a :class:`codesign.models.recorder.Recorded`), from record's options."""
    from codesign.models import ModelTask
    from codesign.models.recorder import Recorded, default_recorded
    from codesign.schema import Where

    model, target, etas = _model_or_study(args.model, args.target)
    if args.constants:
        model = model.with_constants(_assignments(args.constants), Where(None, "--constants"))
    if args.eta is not None:
        etas = {slot: args.eta for slot in etas}
    candidate = ModelTask(model, target).candidate(args.rule, etas, key="--rule")
    teacher = {slot: {"family": model.slots[slot], "eta": getattr(rule, "eta", None), "name": args.rule,
                      "coefficients": dict(getattr(rule, "coefficients", {}))} for slot, rule in candidate.items()}
    given = {"activity": args.activity, "weights": args.weights}
    found = {"every": 20 * model.dt_s}
    if None in given.values():  # a model whose stimulus or rule names them; else both options are needed
        found.update(default_recorded(model, Where(None, "--activity")))
    found.update({k: v for k, v in given.items() if v is not None})
    if args.every is not None:
        found["every"] = args.every
    return model, target, candidate, teacher, Recorded(**found)


def cmd_robustness(args: argparse.Namespace) -> int:
    from rich.table import Table

    from codesign.models.plots import plot_robustness
    from codesign.search.robustness import SweepSettings, summary, sweep

    model, target, candidate, teacher, recorded = _teacher_arguments(args)
    _writable(args.output / "robustness.json", None, fix="give -o a folder you can write to")
    settings = SweepSettings(model, target, candidate, teacher, recorded, args.output,
                             noise=args.noise, fractions=args.recorded_fraction, seeds=args.seeds,
                             terms=args.terms, n_trials=args.trials or 800, trajectories=args.trajectories,
                             fit=args.fit)
    console = _console()
    rows = sweep(settings, lambda r: console.print(
        f"{r['axis']} {r['value']:g}, seed {r['seed']}: weights R^2 {r['weights_r2']:.4f}, activity R^2 "
        f"{r['activity_r2']:.4f}, coefficient error {r['coefficient_error']:.3g} ({r['seconds']:.0f} s)", highlight=False))
    points = summary(rows)
    (args.output / "robustness_summary.json").write_text(json.dumps(points, indent=1))
    plot_robustness(points, args.output / "robustness.png", f"{model.name}, teacher {args.rule}: "
                    f"{len(args.terms)} terms, {len(args.seeds)} seeds per point")
    table = Table(title="robustness (median over seeds, [min, max])")
    for column in ("axis", "value", "weights R^2", "activity R^2", "coefficient error"):
        table.add_column(column, justify="left" if column == "axis" else "right")
    for p in points:
        cells = [f"{p[k]['median']:.4g} [{p[k]['min']:.3g}, {p[k]['max']:.3g}]" if k in p else "-"
                 for k in ("weights_r2", "activity_r2", "coefficient_error")]
        table.add_row(p["axis"], f"{p['value']:g}", *cells)
    console.print(table)
    console.print(f"written: {args.output / 'robustness.json'}, {args.output / 'robustness_summary.json'}, "
                  f"{args.output / 'robustness.png'}")
    return 0


def _print_inferred(result: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"inferred rule ({result['trials']} trials, {result['seconds']:.0f} s, fitted on "
                  f"{result['fitted_trajectories']} trajectories): {result['readable']}, eta {result['eta']:g}",
                  highlight=False)
    if len(result["rounds"]) > 1:
        console.print("refinement: " + ", then ".join(f"{len(r['terms'])} terms" for r in result["rounds"])
                      + f" ({', '.join(result['rounds'][-1]['terms'])}); dropped terms are 0", highlight=False)
    for key, whose in (("held_out", "inferred rule"), ("teacher_held_out", "teacher")):
        if key in result:
            figures = ", ".join(f"{name} {value:.4g}" for name, value in result[key].items()
                                if isinstance(value, (int, float)) and name != "n_diverged")
            console.print(f"held out ({result['held_out_trajectories']} trajectories), {whose}: {figures}", highlight=False)
    teacher = result["teacher"].get("coefficients")
    table = Table(title="coefficients" + (" (the teacher's at its eta; recordings fix the scale)" if teacher else ""))
    table.add_column("term")
    table.add_column("inferred", justify="right")
    if teacher is not None:
        table.add_column("teacher", justify="right")
    scale = (result["teacher"].get("eta") or result["eta"]) / result["eta"]
    for term, value in result["coefficients"].items():
        row = [term, f"{value:+.4f}"]
        if teacher is not None:
            row.append(f"{teacher.get(term, 0.0) * scale:+.4f}")
        table.add_row(*row)
    console.print(table)


def _study_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", metavar="STUDY.yaml", help="study file, e.g. studies/oja.yaml")
    p.add_argument("--storage", help="Optuna storage URL: journal:PATH or postgresql://USER@HOST/DB "
                                     "(default: $CODESIGN_STORAGE, else the study file's storage, else a "
                                     "journal file under results/<study>/)")


def _target_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", metavar="TARGET.yaml", help="run on this hardware target instead of the study "
                                                            "file's, e.g. hw_targets/gpu.yaml on a GPU node")


def _trials_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=_positive, help="total finished trials wanted (default: the study's n_trials)")


def _json_option(p: argparse.ArgumentParser, help: str = "print a JSON object") -> None:
    p.add_argument("--json", action="store_true", help=help)


def _run_arguments(p: argparse.ArgumentParser) -> None:
    _study_arguments(p)
    _target_option(p)
    _trials_option(p)
    p.add_argument("--workers", type=_positive, default=1, help="local worker processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _worker_arguments(p: argparse.ArgumentParser) -> None:
    _study_arguments(p)
    _target_option(p)
    _trials_option(p)
    p.add_argument("--worker-index", type=int, help="distinguishes the sampler seeds of workers, e.g. "
                                                    "$SLURM_ARRAY_TASK_ID (default: drawn from host and pid)")
    p.add_argument("--batch-size", type=_positive, help="trials evaluated at once by this worker (default: the "
                                                        "study's batch_size)")
    p.add_argument("--quiet", action="store_true", help="no start and summary lines on stderr")
    p.add_argument("--stats", metavar="FILE.json", help="write where the worker's time went (simulating, "
                                                        "asking and telling, waiting) to this file")


def _best_arguments(p: argparse.ArgumentParser) -> None:
    _study_arguments(p)
    _json_option(p)


def _constants_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--constants", nargs="+", metavar="NAME=VALUE",
                   help="constants of the model to set over the study's (e.g. epochs=200: a longer protocol than "
                        "the search's)")


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    _study_arguments(p)
    _target_option(p)
    _constants_option(p)
    p.add_argument("--rule", help="a rule the task knows by name (oja task: oja, hebb, anti_hebbian, anti_oja, "
                                  "zero) or a rule file; default: the study's best")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="draw what the rule learned (first seed), where the "
                                                                 "model's loss has a figure (e.g. trial_bce: learning)")
    p.add_argument("--seed", type=_seed, nargs="+", metavar="SEED",
                   help="input seed, or several: each run in turn, the loss and metrics averaged, each seed's "
                        "under per_seed (default: the study's held-out seed)")
    p.add_argument("--workers", type=_positive, default=1, help="seeds run at once, each in a process of its own "
                                                                "(default 1)")
    _json_option(p)


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    _study_arguments(p)
    p.add_argument("--rule", help="a rule the task knows by name, or a rule file; default: the study's best")
    p.add_argument("--targets", nargs="+", required=True, metavar="TARGET.yaml", help="target files")
    p.add_argument("--seed", type=_seed, help="input seed (default: the study's held-out seed)")
    _constants_option(p)
    _json_option(p, "print a JSON list, one object per target (energy: kind -> J)")


def _port_arguments(p: argparse.ArgumentParser) -> None:
    _study_arguments(p)
    p.add_argument("--rule", help="a rule the task knows by name, or a rule file; default: the study's best")
    p.add_argument("--target", metavar="TARGET.yaml",
                   help="the Loihi 2 target: a file or the name of one of codesign's (default: loihi2)")
    p.add_argument("--seed", type=_seed, default=0, help="input seed: the draw all four runs get")
    p.add_argument("--allow-drop", action="store_true", help="drop terms whose scale rounds to zero on Loihi 2 "
                                                             "(listed among the changes) instead of refusing the rule")
    _json_option(p, "print a JSON object: brian2, brian2_chip_order, lava_float, lava_fixed (each with loss, the "
                    "model's metrics, seconds), text, rule, changes, network")


def _dashboard_arguments(p: argparse.ArgumentParser) -> None:
    _study_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                       "only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free one)")


def _check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="MODEL.yaml|STUDY.yaml", help="a model file (models/), a study file (studies/), "
                                                                  "or the name of one of codesign's models (oja)")
    _target_option(p)
    _json_option(p)


def _ensemble_arguments(p: argparse.ArgumentParser) -> None:
    from codesign.models.ensemble import BURST_PROBABILITY, FEEDBACK

    p.add_argument("--feedback", choices=list(FEEDBACK), default="symmetric",
                   help="feedback weights: W^T (symmetric) or fixed random ones (feedback alignment)")
    p.add_argument("--burst-probability", choices=list(BURST_PROBABILITY), default="linear",
                   help="burst probability as a function of apical input (same slope at baseline)")
    p.add_argument("--hidden", type=_positive, default=2, help="hidden ensembles (default 2)")
    p.add_argument("--epochs", type=_positive, default=3000, help="updates, each over the four patterns "
                                                                  "(default 3000)")
    p.add_argument("--seed", type=_seed, default=1, help="draws the initial (and random feedback) weights")
    _json_option(p, "print a JSON object: angle_deg (per layer: mean over training, final), outputs (for (0,0), "
                    "(0,1), (1,0), (1,1)), xor_correct (of 4), loss (final), and the settings")


def _teacher_options(p: argparse.ArgumentParser, trajectories: int) -> None:
    p.add_argument("model", metavar="MODEL_OR_STUDY", help="a model file, one of codesign's models (oja), or a study file")
    p.add_argument("--rule", required=True, help="the teacher: a rule the model knows by name, or a rule file")
    p.add_argument("--eta", type=float, help="the teacher's learning rate (default: the study's, else the family's)")
    p.add_argument("--trajectories", type=_positive, default=trajectories,
                   help=f"input draws recorded (default {trajectories})")
    p.add_argument("--every", type=float, help="sampling interval in seconds (default 20 time steps)")
    p.add_argument("--activity", help="the recorded variable, GROUP.VAR (default: the plastic synapse's postsynaptic one)")
    p.add_argument("--weights", help="the weights, SYNAPSE.VAR (default: the plastic synapse's)")
    p.add_argument("--constants", nargs="+", metavar="NAME=VALUE", help="constants of the model to set (e.g. n_outputs=20)")
    _target_option(p)


def _record_arguments(p: argparse.ArgumentParser) -> None:
    _teacher_options(p, 12)
    p.add_argument("--noise", type=float, default=0.0, help="measurement noise: Gaussian, this many times each unit's "
                                                             "standard deviation (default 0)")
    p.add_argument("--recorded-fraction", type=float, default=1.0, help="fraction of the units recorded (default 1)")
    p.add_argument("--no-weights", action="store_true", help="do not store the weights (as in most real recordings)")
    p.add_argument("--seed", type=_seed, default=0, help="input seed (default 0)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.npz|FILE.nwb",
                   help="the recordings file to write, NumPy or NWB by its suffix")


def _robustness_arguments(p: argparse.ArgumentParser) -> None:
    _teacher_options(p, 9)
    p.add_argument("--noise", type=float, nargs="*", default=[0.0, 0.01, 0.03, 0.1, 0.3, 1.0],
                   help="measurement noise levels, all units recorded (default 0 0.01 0.03 0.1 0.3 1; none: skip)")
    p.add_argument("--recorded-fraction", type=float, nargs="*", default=[1.0, 0.3, 0.1, 0.03, 0.01],
                   help="fractions of the units recorded, no noise (default 1 0.3 0.1 0.03 0.01; none: skip)")
    p.add_argument("--seeds", type=_seed, nargs="+", default=[1, 2, 3], help="seeds per point (default 1 2 3)")
    p.add_argument("--terms", nargs="+", default=["theta_110", "theta_021", "theta_001", "theta_000"],
                   help="terms inferred (default theta_110 theta_021 theta_001 theta_000)")
    p.add_argument("--fit", type=_positive, default=6, help="trajectories fitted, the rest held out (default 6)")
    _trials_option(p)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FOLDER", help="where recordings, journals, "
                                                                                     "the table and figure go")


def _infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recordings", type=Path, metavar="RECORDINGS", help="a recordings file, .npz or .nwb (codesign record)")
    p.add_argument("--model", help="the model (default: the one the recordings name)")
    p.add_argument("--terms", nargs="+", default=["all"], help="searched terms of the model's rule family (default all)")
    p.add_argument("--fit", type=_positive, help="trajectories fitted, the rest held out (default two thirds)")
    p.add_argument("--eta", type=float, help="the fitted rule's learning rate (default: the teacher's, else the family's)")
    p.add_argument("--batch-size", type=_positive, default=16, help="candidates per batch, the CMA-ES population (default 16)")
    p.add_argument("--seed", type=_seed, help="the sampler's seed (default 0)")
    p.add_argument("--storage", help="Optuna storage URL (default: a journal under results/infer-FILE/, "
                                     "e.g. infer-oja-nwb/ for oja.nwb)")
    p.add_argument("--l1", type=float, default=0.0, help="L1 penalty on the coefficients added to the loss (default 0)")
    p.add_argument("--refine", type=float, nargs=2, metavar=("ROUNDS", "THRESHOLD"),
                   help="then search again, ROUNDS times, on the terms with |theta| / max |theta| >= THRESHOLD")
    _trials_option(p)
    _target_option(p)
    _json_option(p, "print a JSON object: coefficients, teacher, held_out (loss, activity_r2, weights_r2), readable")


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its name, its one-line help (also its description, unless it has a longer one), what
    adds its arguments to its parser, and the function it runs (exit code)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


COMMANDS = (
    Command("run", "run a study (resumes if it exists) and write its results", _run_arguments, cmd_run),
    Command("worker", "join a study as one worker until it has its trials", _worker_arguments, cmd_worker),
    Command("best", "show the best rule found so far", _best_arguments, cmd_best),
    Command("eval", "evaluate one rule on the study's task with held-out input seeds", _eval_arguments, cmd_eval),
    Command("compare", "run one rule and task on several hardware targets, side by side", _compare_arguments,
            cmd_compare),
    Command("port", "port a study's model and rule to Loihi 2 (Lava) and report how well the loss survives",
            _port_arguments, cmd_port),
    Command("dashboard", "serve optuna-dashboard on a study's storage, its metrics as metric:NAME columns",
            _dashboard_arguments, cmd_dashboard),
    Command("check", "validate a model or study file without running it and print the batched network it builds",
            _check_arguments, cmd_check,
            description="validate a model or study file without running it: its Brian2 objects are built and "
                        "prepared on the numpy runtime (identifiers, units), nothing is simulated or compiled; "
                        "prints the batched network (groups, synapses, per-candidate variables, what is compiled "
                        "once and what each run sets)"),
    Command("record", "record a teacher rule learning: inputs, activity (noisy, partly recorded) and weights",
            _record_arguments, cmd_record),
    Command("infer", "infer a rule from recordings: fit simulated to recorded activity, report held-out R^2",
            _infer_arguments, cmd_infer),
    Command("robustness", "infer a teacher's rule from noisier and sparser recordings: R^2 and coefficient error "
            "per point", _robustness_arguments, cmd_robustness),
    Command("ensemble", "train XOR by burst-dependent plasticity in the ensemble limit; angle of its updates to "
            "the gradient", _ensemble_arguments, cmd_ensemble,
            description="train a 2-N-1 network of ensembles (event rate, burst probability) on XOR by the "
                        "burst-dependent plasticity update (Payeur et al. 2021) and report, per layer, the angle "
                        "between its updates and the true gradient of the same network's loss"),
)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="codesign", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description or command.help)
        command.arguments(p)
        p.set_defaults(func=command.run)
    return parser


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line too, like any user error (argparse would print its usage first)."""

    def error(self, message: str) -> NoReturn:
        key, _, problem = message.removeprefix("argument ").partition(": ") if message.startswith("argument ") \
            else (None, "", message)
        raise CodesignError(problem, key=key, fix=f"see {self.prog} --help")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:  # NumPy's and Brian2's seeds are 32-bit
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {2**32 - 1}, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except CodesignError as exc:
        print(f"codesign: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codesign: interrupted; finished trials are saved, run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        lost = _lost_storage(exc)
        if lost is None:
            raise
        print(f"codesign: error: {lost}", file=sys.stderr)
        return 2


def _lost_storage(exc: Exception) -> str | None:
    """One line for a database that went away mid-run (password masked), or None for any other error."""
    if "sqlalchemy" not in sys.modules:
        return None
    import sqlalchemy.exc

    # Optuna wraps it in a StorageInternalError; when the connection broke inside a transaction,
    # SQLAlchemy raises PendingRollbackError while handling the OperationalError (its __context__).
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    from codesign.search.storage import redact

    message = redact(str(cause).strip().splitlines()[0])  # blanks the password of every storage opened
    return (f"lost the storage: {message} (fix: check the database server; finished trials are saved, "
            "run the same command to resume)")


if __name__ == "__main__":
    sys.exit(main())
