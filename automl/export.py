"""Export the best trial to ``<run>/best/``.

Two kinds of export (``kind`` in ``automl.json``):

* ``transformers`` (text only): a directory ``transformers`` loads directly
  (``pipeline(...)``, ``AutoModelFor...from_pretrained``), and ``automl.load_model``;
* ``fused`` (text fused with table-column features, or a head on the frozen, mean-pooled
  encoder: :mod:`automl.fusion`): the merged encoder in ``best/backbone/``, the feature
  tower and head in ``fusion.safetensors``, the feature statistics and vocabularies in
  ``features.json``; ``automl.load_model`` and ``automl predict`` load it (``transformers``
  alone cannot: it has no mean-pooling head, nor a feature tower).

Both have:

* LoRA weights merged into the base by default; the unmerged adapter is kept in
  ``best/adapter/``;
* tokenizer, label names in the config (``id2label``), safetensors only;
* ``automl.json``: task and options, metrics on validation and test, calibration (e.g. a
  decision threshold), hyperparameters, recipe fingerprint and package versions;
* ``README.md``: a model card written from those facts;
* the task's own plots under ``<run>/plots/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from automl.adapters import ADAPTERS, adapter_params
from automl.device import pick_device
from automl.engine import predict_outputs
from automl.errors import UserError
from automl.fusion import FusionModel, save_fused
from automl.privacy import STUDY_ATTR as PRIVACY_STUDY_ATTR
from automl.privacy import run_privacy
from automl.run import package_versions
from automl.search.space import user_params
from automl.weights import load_trial_weights

BEST_DIR = "best"
META_FILE = "automl.json"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def exported_trial(run_dir: Path) -> int | None:
    meta = run_dir / BEST_DIR / META_FILE
    if not meta.exists():
        return None
    try:
        return int(json.loads(meta.read_text())["trial"])
    except (ValueError, KeyError, TypeError):
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def stored_outputs(ctx: Any, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The outputs a kept trial's worker stored (``{"validation": ..., "test": ...}``, from
    the trial's own weights), or ``{}`` when it stored none or they are gone."""
    import numpy as np
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    artifact_id = trial.user_attrs.get("outputs_artifact_id")
    if not artifact_id:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outputs.npz"
        try:
            download_artifact(artifact_store=FileSystemArtifactStore(str(ctx.artifact_dir)), file_path=str(path), artifact_id=artifact_id)
        except Exception:
            return {}  # dropped from the top-k meanwhile
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}


def export_best(
    ctx: Any,
    study: optuna.Study,
    data: Any,
    tokenizer: Any,
    encoded: dict[str, Any],
    *,
    trial: optuna.trial.FrozenTrial | None = None,
    dest: Path | None = None,
) -> Path | None:
    """Export the study's best trial (or *trial*) to ``best/`` (or *dest*, e.g. an
    ensemble member's directory) unless it is already exported there. Returns the directory."""
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    trial = trial or best_trial(study)
    if trial is None:
        return None
    run_dir: Path = ctx.run_dir
    best_dir = dest or run_dir / BEST_DIR
    privacy = study_privacy(study)
    if dest is None and exported_trial(run_dir) == trial.number and _same_privacy(best_dir / META_FILE, privacy):
        return best_dir
    artifact_id = trial.user_attrs.get("artifact_id")
    if not artifact_id:
        return None
    task = ctx.resolved.task
    recipe = ctx.recipe
    params = user_params(trial.params)
    params.update({k: v for k, v in ctx.resolved.space.fixed.items() if k not in params})
    adapter = params.get("adapter", "full")
    # Fixed settings of other adapters (lora_r for a full trial...) did not apply to this one.
    foreign = adapter_params(adapter)
    params = {k: v for k, v in params.items() if k not in foreign}
    spec = ADAPTERS[adapter]

    from optuna.artifacts.exceptions import ArtifactNotFound

    store = FileSystemArtifactStore(str(ctx.artifact_dir))
    staging = Path(tempfile.mkdtemp(prefix=".best-", dir=run_dir))
    try:
        weights = staging / "weights.safetensors"
        try:
            download_artifact(artifact_store=store, file_path=str(weights), artifact_id=artifact_id)
        except ArtifactNotFound:
            raise UserError(
                f"the weights of the best trial ({trial.number}) are not in {ctx.artifact_dir}; machines "
                "sharing a study must share an artifact directory (--artifacts DIR)",
                field="--artifacts",
            ) from None
        base = ctx.load_base_model()
        backbone = ctx.resolved.backbone
        model = load_trial_weights(base, params, task.head, backbone.lora_target_modules(base), weights, task=task)
        weights.unlink()
        fused = isinstance(model, FusionModel)  # table columns fused with the backbone, or a head on it
        if fused:
            model = save_fused(model, adapter, staging, task.features)
        else:
            if spec.peft:
                model.save_pretrained(str(staging / "adapter"), safe_serialization=True)
                if spec.mergeable:
                    model = model.merge_and_unload()
            model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))

        setup = pick_device("cpu")
        calibration = trial.user_attrs.get("calibration", {})
        metrics: dict[str, Any] = {"validation": trial.user_attrs.get("metrics", {})}
        plots: list[tuple[str, Any]] = []
        tables: list[dict[str, Any]] = []
        # An ensemble member's figures may come from the outputs its worker stored (the same
        # weights; no second pass over the rows: the ensemble scores the test rows itself).
        # A model exported alone is scored as loaded, so its figures are what a user gets.
        stored = stored_outputs(ctx, trial) if dest is not None else {}
        for split_name in ("test", "validation"):
            if split_name not in encoded:
                continue
            split = getattr(data, split_name)
            outputs = stored.get(split_name)
            if outputs is None or len(outputs) != len(encoded[split_name]["input_ids"]):
                outputs = predict_outputs(model, encoded[split_name], setup, tokenizer.pad_token_id or 0, recipe.training.eval_batch_size, task.head)
            if split_name == "test":
                metrics["test"] = {k: float(v) for k, v in task.compute_metrics(outputs, split, encoded[split_name], calibration).items()}
            if not plots and dest is None:
                plots = [(f"{title} ({split_name})", fig) for title, fig in task.plots(outputs, split, encoded[split_name], calibration)]
            if not tables:
                tables = report_tables(task, outputs, split, encoded[split_name], calibration, split_name)
        plot_files = write_plots(run_dir, plots) if dest is None else []

        meta = {
            **task_fields(ctx),
            "kind": "fused" if fused else "transformers",
            "backbone": recipe.backbone,
            "backbone_options": recipe.backbone_options,
            "max_length": ctx.max_length,
            "trial": trial.number,
            "params": params,
            "adapter": adapter,
            "merged": spec.peft and spec.mergeable,
            "metrics": metrics,
            "calibration": calibration,
            "plots": plot_files,
            "tables": tables,
            "versions": package_versions(),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "trust_remote_code": recipe.training.trust_remote_code,
            **({"privacy": privacy} if privacy else {}),
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        (staging / "README.md").write_text(model_card(meta))
        install_dir(staging, best_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return best_dir


def study_privacy(study: optuna.Study) -> dict[str, Any] | None:
    """The run's privacy as the export states it (:func:`automl.privacy.run_privacy` over every
    trial so far), or None when the run is not private."""
    return run_privacy(study.user_attrs.get(PRIVACY_STUDY_ATTR), study.get_trials(deepcopy=False))


def _same_privacy(meta_file: Path, privacy: dict[str, Any] | None) -> bool:
    """Whether the export in *meta_file* exists and states *privacy* (a resumed private run
    that trained more trials has spent more ε: its export must say so)."""
    try:
        stated = json.loads(meta_file.read_text()).get("privacy")
    except (OSError, ValueError):
        return False
    return stated == json.loads(json.dumps(privacy))


def report_tables(task: Any, outputs: Any, split: Any, encoded: Any, calibration: dict[str, Any], split_name: str) -> list[dict[str, Any]]:
    """The task's report tables of the exported model, as ``automl.json`` stores them."""
    return [{**t.to_dict(), "title": f"{t.title} ({split_name})"} for t in task.tables(outputs, split, encoded, calibration)]


def task_fields(ctx: Any) -> dict[str, Any]:
    """What loading any exported kind of model needs to rebuild the run's task."""
    recipe = ctx.recipe
    task = ctx.resolved.task
    return {
        "automl_version": package_versions().get("automl"),
        "task": task.name,
        "task_options": recipe.task_options,
        "data": {
            "text_column": recipe.data.text_column,
            "label_column": recipe.data.label_column,
            "feature_columns": task.features.columns if getattr(task, "features", None) is not None else None,
        },
        "head": task.head,
        "labels": task.labels,
        "objective": {"metric": ctx.resolved.objective.name, "direction": ctx.resolved.objective.direction},
        "study": ctx.study_name,
        "recipe_fingerprint": recipe.fingerprint(),
    }


def install_dir(staging: Path, target: Path) -> Path:
    """Move a finished *staging* directory to *target*, replacing what was there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}-old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old)
    return target


def write_plots(run_dir: Path, plots: list[tuple[str, Any]]) -> list[dict[str, str]]:
    """Save the task's plots of the exported model under ``<run>/plots/`` (replacing the
    previous export's); returns ``[{title, file}]`` for ``automl.json``."""
    import matplotlib.pyplot as plt

    plot_dir = run_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    for old in plot_dir.glob("task-*.png"):
        old.unlink()
    plot_files = []
    for i, (title, fig) in enumerate(plots):
        name = f"task-{i:02d}-{_slug(title)}.png"
        fig.savefig(plot_dir / name, dpi=110)
        plt.close(fig)
        plot_files.append({"title": title, "file": f"plots/{name}"})
    return plot_files


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def metrics_table(metrics: dict[str, dict[str, float]]) -> list[str]:
    """The model card's metrics section: one row per metric, validation and test."""
    lines = ["## Metrics", "", "| metric | validation | test |", "|---|---|---|"]
    val = metrics.get("validation", {})
    test = metrics.get("test", {})
    for name in sorted(set(val) | set(test)):
        lines.append(f"| {name} | {_fmt(val.get(name, '-'))} | {_fmt(test.get(name, '-'))} |")
    return lines


def model_card(meta: dict[str, Any]) -> str:
    """A model card (README.md) written from the facts in automl.json."""
    pipeline_task = "token-classification" if meta["head"] == "token-classification" else "text-classification"
    fused = meta.get("kind") == "fused"
    columns = (meta.get("data") or {}).get("feature_columns") or []
    if fused and not columns:
        use = [
            "A head (in `fusion.safetensors`) on the mean-pooled output of the encoder in "
            "`backbone/`, whose weights are the pretrained ones. Load it with automl; "
            "`transformers.pipeline` cannot load it (transformers has no mean-pooling head):",
            "",
            "```python",
            "import automl",
            'model = automl.load_model("PATH/TO/best")',
            "scored = model.predict(frame)   # a pandas DataFrame with the text column",
            "```",
        ]
    elif fused:
        use = [
            "Text fused with the table columns "
            + ", ".join(f"`{c}`" for c in columns)
            + " (feature tower in `fusion.safetensors`, statistics and vocabularies in "
            "`features.json`, encoder in `backbone/`). Load it with automl; "
            "`transformers.pipeline` cannot load it (it would miss the table columns):",
            "",
            "```python",
            "import automl",
            'model = automl.load_model("PATH/TO/best")',
            "scored = model.predict(frame)   # a pandas DataFrame with the training columns",
            "```",
        ]
    else:
        use = [
            "```python",
            "from transformers import pipeline",
            f'model = pipeline("{pipeline_task}", model="PATH/TO/best")',
            "```",
            "",
            'or `automl.load_model("PATH/TO/best").predict(frame)` in Python',
        ]
    lines = [
        f"# {meta['study']}: {meta['task']} on {meta['backbone']}",
        "",
        f"Fine-tuned with [automl](https://pypi.org/project/automl/) {meta.get('automl_version') or ''}: "
        f"best of an Optuna search, trial {meta['trial']}, objective `{meta['objective']['metric']}` "
        f"({meta['objective']['direction']}).",
        "",
        "## Use",
        "",
        *use,
        "",
        "or `automl predict PATH/TO/best data.csv` (applies the task's calibration"
        + (", e.g. the tuned decision threshold" if meta.get("calibration", {}).get("threshold") is not None else "")
        + ").",
        "",
        *metrics_table(meta["metrics"]),
    ]
    lines += ["", "## Hyperparameters", "", "| name | value |", "|---|---|"]
    for name, value in sorted(meta["params"].items()):
        lines.append(f"| {name} | {_fmt(value)} |")
    if meta.get("calibration"):
        lines += ["", "## Calibration", "", "```json", json.dumps(meta["calibration"], indent=2, default=str), "```"]
    if meta.get("labels"):
        lines += ["", "## Labels", "", ", ".join(f"`{x}`" for x in meta["labels"])]
    if meta.get("privacy"):
        lines += ["", *privacy_section(meta["privacy"])]
    lines += [
        "",
        "## Provenance",
        "",
        f"- task `{meta['task']}`, backbone `{meta['backbone']}`, adapter `{meta['adapter']}`"
        + (" (merged into the base weights; the adapter alone is in `adapter/`)" if meta.get("merged") else ""),
        f"- max length {meta['max_length']}, recipe fingerprint `{meta['recipe_fingerprint']}`",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- trust_remote_code: {meta.get('trust_remote_code', False)}",
        "",
    ]
    return "\n".join(lines)


def privacy_facts(info: dict[str, Any]) -> list[tuple[str, str]]:
    """A private run's privacy (:func:`automl.privacy.run_privacy`) as (fact, value) rows,
    for the model card and the report."""
    budget = f"ε = {info['epsilon']:g} " + ("for the whole search" if info["accounting"] == "search" else "per trial")
    rule = f"1/(10n) for n = {info['rows']} training rows" if info.get("delta_rule") == "1/(10n)" else "from the recipe"
    per_trial = info.get("max_trial_epsilon")
    return [
        ("ε of the whole search", f"{info['search_epsilon']:.2f}"),
        ("largest ε of one trial", f"{per_trial:.2f}" if per_trial is not None else "-"),
        ("δ", f"{info['delta']:.3g} ({rule})"),
        ("accounting", f"{info['accounting']} ({budget})"),
        ("trials on the training rows", str(info["trials"])),
        ("accountant", f"{str(info['accountant']).upper()} (Opacus)"),
    ]


def privacy_section(info: dict[str, Any]) -> list[str]:
    """The Markdown "Privacy" section of a private run's model card and report: the
    guarantee is the search's ε, since the export was chosen by looking at every trial."""
    trials = info["trials"]
    lines = [
        "## Privacy",
        "",
        "Trained with differential privacy (DP-SGD through Opacus). The guarantee that holds for this "
        f"model is the whole search's, **ε = {info['search_epsilon']:.2f}, δ = {info['delta']:.3g}**: the exported "
        f"model was chosen by looking at every trial, so its ε is that of all {trials} trial{'s' if trials != 1 else ''} "
        "that trained on the training rows together, not one trial's.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in privacy_facts(info)),
        "",
        "Not covered by this ε:",
        "",
        *(f"- {item}" for item in info.get("not_covered") or []),
    ]
    return lines


def trial_counts(study: optuna.Study) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif t.state == TrialState.PRUNED:
            counts["pruned"] += 1
        elif t.state == TrialState.FAIL:
            if not t.user_attrs.get("surplus"):
                counts["failed"] += 1
        elif t.state == TrialState.RUNNING:
            counts["running"] += 1
        else:
            counts["waiting"] += 1
    return counts
