"""codesign from Python: evaluate rules on a model, search one with a tiny study, read what it found.

    .venv/bin/python examples/api.py

The study (Oja's rule on 4 inputs, 1 s of learning, 3 searched terms, 60 trials on Brian2's numpy
runtime) runs in a temporary folder, which holds its journal and is removed at the end; it takes
about 10 s on 2 cores.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

import codesign

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"n_inputs": 4, "duration": "1*second"}


def main() -> None:
    # A model on its own: the named rules on one seed's input draws (hw_targets/cpu.yaml by default).
    model = codesign.load_model(ROOT / "models" / "oja.yaml", draws=4, **SMALL)
    for name, evaluation in zip(model.named, model.evaluate(model.named, seed=1)):
        print(f"model {model.spec.name}, rule {name}: loss {evaluation.loss:.3f}")

    study_file = {"name": "tiny", "model": str(ROOT / "models" / "oja.yaml"), "constants": SMALL, "draws": 4,
                  "rule": {"terms": ["theta_110", "theta_021", "theta_001"], "eta": 5.0},
                  "target": str(ROOT / "hw_targets" / "cpu.yaml"), "n_trials": 60, "batch_size": 12, "seed": 3}
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)  # the study's journal goes to results/tiny/ in here
        try:
            Path("tiny.yaml").write_text(yaml.safe_dump(study_file))
            study = codesign.load_study("tiny.yaml")
            # Named and given candidates (a trial's parameters), on draws the study never trains on.
            given = [{"theta_110": 1.0, "theta_021": -1.0}, {"theta_001": -1.0}]
            for name, evaluation in zip(["oja", "zero", "x y - y^2 w", "-w"], study.evaluate(["oja", "zero", *given])):
                print(f"study {study.spec.name}, rule {name}: held-out loss {evaluation.loss:.3f}")
            study.run()
            trials = study.trials()
            best = study.best()
            print(f"{len(trials)} trials, {sum(t['state'] == 'COMPLETE' for t in trials)} complete; "
                  f"best: trial {best['trial']}, loss {best['loss']:.3f}")
            print(f"best rule: {best['readable']}")
            held_out = study.evaluate([study.best_candidate()])[0]
            print(f"best rule on held-out draws: loss {held_out.loss:.3f}, |cos(w, PC1)| "
                  f"{held_out.metrics['abs_cos_pc1']:.3f}")
        finally:
            os.chdir(here)


if __name__ == "__main__":
    main()
