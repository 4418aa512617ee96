"""The run's exported model, ``<run>/best/``: the ensemble when it wins on the held-out
half of validation, else the best trial or the baseline: the trial only when it leads the
baseline on validation by more than one standard error (the rules are in
:mod:`automl.ensemble`'s docstring). A task without ensembles (token classification) keeps
the plain rule: the better of the two on validation. The supervisor calls :func:`export_chosen` once the
search is over.

An exported ensemble is loaded back and scored on the raw test rows, as a user would load
it (:func:`automl.results.predict.load_model`), which is why this step sits above the
reading side of the results.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.baseline import BASELINE_DIR, MODEL_FILE, export_baseline
from automl.ensemble import ENSEMBLE_FILE, EnsembleModel, EnsembleResult, build_ensemble, ensemble_metrics
from automl.export import (
    BEST_DIR,
    META_FILE,
    best_trial,
    export_best,
    install_dir,
    metrics_table,
    privacy_section,
    report_tables,
    study_privacy,
    task_fields,
    write_plots,
)
from automl.results._formats import fmt_members
from automl.results.predict import load_model

if TYPE_CHECKING:
    import optuna


def export_chosen(ctx: Any, study: optuna.Study, data: Any, tokenizer: Any, encoded: dict[str, Any]) -> Path | None:
    """Build the ensemble and export the best model of the run by the rules in
    :mod:`automl.ensemble`'s docstring: the ensemble when it wins on the held-out half, else
    the single model :func:`automl.ensemble.choose_single` chose. Returns ``best/``."""
    result = build_ensemble(ctx, study, data, encoded)
    if result is not None and result.wins:
        return export_ensemble(ctx, study, result, data, tokenizer, encoded)
    if single_choice(ctx, study, result) == "baseline":
        return export_baseline(ctx, data, encoded)
    return export_best(ctx, study, data, tokenizer, encoded) if best_trial(study) is not None else None


def single_choice(ctx: Any, study: optuna.Study, result: EnsembleResult | None) -> str:
    """The single model to export: the ensemble step's choice (the one-standard-error rule
    of :func:`automl.ensemble.choose_single`) when it ran; without it (fewer than two
    candidates, or a task with no ensembles), ``"baseline"`` when the saved baseline's
    validation objective is strictly better than the best trial's (or there is no trial),
    else ``"trial"``."""
    if result is not None:
        return "baseline" if result.single == "baseline" else "trial"
    base = ctx.run_dir / BASELINE_DIR
    if not (base / MODEL_FILE).exists():
        return "trial"
    value = (json.loads((base / "automl.json").read_text()).get("metrics", {}).get("validation") or {}).get(ctx.resolved.objective.name)
    trial = best_trial(study)
    if value is None or not math.isfinite(value):
        return "trial"
    if trial is None or trial.value is None:
        return "baseline"
    return "baseline" if (value > trial.value if ctx.resolved.objective.direction == "maximize" else value < trial.value) else "trial"


def export_ensemble(ctx: Any, study: optuna.Study, result: EnsembleResult, data: Any, tokenizer: Any, encoded: dict[str, Any]) -> Path:
    """Write ``best/`` as the ensemble: each member in ``members/<name>/``, the weights in
    ``ensemble.json``, the task and calibration in ``automl.json``. The test metrics are
    computed by loading ``best/`` back and scoring the raw test rows, as a user would."""
    run_dir: Path = ctx.run_dir
    best_dir = run_dir / BEST_DIR
    staging = Path(tempfile.mkdtemp(prefix=".best-", dir=run_dir))
    try:
        for m in result.members:
            dest = staging / "members" / m["name"]
            if m["kind"] == "baseline":
                shutil.copytree(run_dir / BASELINE_DIR, dest)
            else:
                export_best(ctx, study, data, tokenizer, encoded, trial=study.trials[m["trial"]], dest=dest)
        spec = {"members": [{**m, "path": f"members/{m['name']}"} for m in result.members], "probabilities": result.probabilities}
        (staging / ENSEMBLE_FILE).write_text(json.dumps(spec, indent=2))
        meta = {
            **task_fields(ctx),
            "kind": "ensemble",
            "members": spec["members"],
            "calibration": result.calibration,
            "metrics": {"validation": result.validation, "held_out": result.held_out},
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        privacy = study_privacy(study)
        if privacy:
            meta["privacy"] = privacy
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        plots: list[tuple[str, Any]] = []
        if data.test is not None and data.test.frame is not None:
            model = EnsembleModel.load(staging, meta, load_member=load_model)
            outputs = model.outputs(data.test.frame)
            meta["metrics"]["test"] = ensemble_metrics(ctx.resolved.task, outputs, data.test, encoded["test"], result.calibration)
            args = (outputs, data.test, encoded["test"], result.calibration)
            plots = [(f"{title} (test)", fig) for title, fig in ctx.resolved.task.plots(*args)]
            meta["tables"] = report_tables(ctx.resolved.task, *args, "test")
        meta["plots"] = write_plots(run_dir, plots)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        (staging / "README.md").write_text(ensemble_card(meta))
        install_dir(staging, best_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return best_dir


def ensemble_card(meta: dict[str, Any]) -> str:
    """The model card (README.md) of an exported ensemble."""
    lines = [
        f"# {meta['study']}: {meta['task']} ensemble",
        "",
        "A weighted ensemble chosen by greedy ensemble selection (Caruana et al. 2004) over the "
        "run's kept trials and its baseline: " + fmt_members(meta["members"]) + ".",
        "",
        "## Use",
        "",
        "```python",
        "import automl",
        'model = automl.load_model("PATH/TO/best")',
        "scored = model.predict(frame)  # a pandas DataFrame of raw rows",
        "```",
        "",
        "or `automl predict PATH/TO/best data.csv`. Each member is a model of its own under",
        "`members/` (a fine-tuned text-only member also loads with `transformers`); `ensemble.json` holds",
        "the weights. The ensemble as a whole loads only with automl.",
        "",
        *metrics_table(meta["metrics"]),
        "",
    ]
    if meta.get("privacy"):
        lines += [*privacy_section(meta["privacy"]), ""]
    return "\n".join(lines)
