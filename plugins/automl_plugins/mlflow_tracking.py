"""MLflow tracking: a built-in callback plugin (``pip install "automl[mlflow]"``).

Enabled by the recipe key ``mlflow: URI`` or ``automl run RECIPE --mlflow URI``, where URI
is anything MLflow takes as a tracking URI: a local store (``file:///abs/mlruns``,
``sqlite:///abs/mlflow.db``) or a tracking server (``http://host:5000``).

* ``automl_study_start``: the experiment (named after the study) and a parent run for the
  automl run, created once and reused when the run resumes (its id is kept in
  ``<run>/mlflow.json``); the recipe's settings as parameters.
* ``automl_study_end``: one nested run per finished trial (parameters, the objective after
  every evaluation as a step metric, the final validation metrics, state, prune or fail
  reason, duration), one for the baseline and one for the ensemble (when the run built
  one), and on the parent run the best model's
  metrics, the exported model as the MLflow pyfunc model ``model`` (signature, input
  example; ``mlflow.pyfunc.load_model("runs:/<id>/model")``) and the report.
  Trials already logged are not logged again, so a resumed run adds only its new trials.

Everything is read from the run's results (:func:`automl.results.gather`), the same data
``automl leaderboard`` shows. A tracking store that cannot be reached gives one warning
and the run goes on; the next ``automl run`` of the same recipe logs what was missed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from automl import hookimpl
from automl.errors import UserError
from automl.mlflow_model import save_pyfunc

automl_api_version = "1"

STATE_FILE = "mlflow.json"
INSTALL = 'pip install "automl[mlflow]"'
#: automl trial state -> MLflow run status.
STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}

#: Runs (by directory) that already gave their one warning in this process.
_warned: set[str] = set()


def tracking_uri(run: Any) -> str | None:
    uri = (getattr(run, "recipe", None) or {}).get("mlflow")
    return str(uri) if uri else None


def require_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise UserError(f"needs MLflow, which is not installed: {INSTALL}", field="mlflow") from None
    return mlflow


def _warn(run_dir: Path, uri: str, exc: BaseException) -> None:
    if str(run_dir) in _warned:
        return
    _warned.add(str(run_dir))
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f"{type(exc).__name__}: {text[:200]}"
    print(
        f"warning: cannot log to MLflow at {uri} ({detail}); the search goes on without it "
        "and the next `automl run` of this recipe logs what was missed",
        file=sys.stderr,
    )


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise ``OSError`` when a tracking server does not answer its health check (MLflow's
    own client retries for minutes first). Local stores are not checked here."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status >= 500:
                raise OSError(f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise OSError(f"HTTP {exc.code}") from None


def _read_state(run_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((run_dir / STATE_FILE).read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = run_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(run_dir / STATE_FILE)


def _flat(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    """Flatten nested settings to MLflow parameters: ``search.trials`` -> ``8``."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif value is not None:
        out[prefix] = json.dumps(value) if isinstance(value, list) else str(value)
    return out


def _ms(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


class Tracker:
    """One automl run's parent run in one MLflow tracking store."""

    def __init__(self, run: Any, uri: str) -> None:
        if "://" not in uri or uri.startswith("file:"):
            # MLflow 3 keeps its file store only on request; asking for a file:// URI is one.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow = require_mlflow()
        self.run = run
        self.uri = uri
        self.run_dir = Path(run.run_dir)
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.state = _read_state(self.run_dir)
        if self.state.get("tracking_uri") != uri:
            self.state = {"tracking_uri": uri, "logged_trials": {}}

    def parent(self) -> str:
        """The parent run's id, created (with the recipe as parameters) the first time."""
        if self.state.get("run_id"):
            return str(self.state["run_id"])
        client = self.client
        name = self.run.study_name
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        created = client.create_run(
            experiment_id,
            run_name=name,
            tags={"automl.run_dir": str(self.run_dir), "automl.task": self.run.task, "automl.backbone": self.run.backbone},
        )
        run_id = created.info.run_id
        params = _flat("", {k: v for k, v in self.run.recipe.items() if k not in ("mlflow", "output")}, {})
        params["objective"] = f"{self.run.objective} ({self.run.direction})"
        self._log(run_id, params=params)
        self.state.update({"experiment_id": experiment_id, "run_id": run_id})
        _write_state(self.run_dir, self.state)
        return run_id

    def _log(
        self,
        run_id: str,
        *,
        params: dict[str, str] | None = None,
        metrics: list[tuple[str, float, int, int]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        params_list = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        metric_list = [Metric(k, float(v), ts, step) for k, v, ts, step in (metrics or [])]
        tag_list = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
        # log_batch takes at most 100 params and 1000 metrics per call.
        for i in range(0, max(len(params_list), 1), 100):
            self.client.log_batch(run_id, params=params_list[i : i + 100], tags=tag_list if i == 0 else [])
        for i in range(0, len(metric_list), 1000):
            self.client.log_batch(run_id, metrics=metric_list[i : i + 1000])

    def log_trials(self, results: Any, parent_id: str) -> int:
        """One nested run per finished trial not logged before. Returns how many."""
        logged: dict[str, str] = self.state.setdefault("logged_trials", {})
        objective = results.objective
        count = 0
        for row in results.trials:
            status = STATUS.get(row.state.value)
            if status is None or str(row.number) in logged:
                continue
            start = _ms(row.started)
            end = _ms(row.finished) or (start + int((row.seconds or 0) * 1000) if start is not None else None)
            created = self.client.create_run(
                self.state["experiment_id"],
                start_time=start,
                run_name=f"trial {row.number}",
                tags={"mlflow.parentRunId": parent_id, "automl.trial": str(row.number), "automl.state": row.state.value},
            )
            run_id = created.info.run_id
            stamp = start or 0
            metrics = [(objective, value, stamp, step) for step, value in sorted(row.intermediate.items())]
            last = max(row.intermediate, default=0)
            metrics += [(name, value, end or stamp, last) for name, value in row.metrics.items()]
            if row.seconds is not None:
                metrics.append(("duration_s", row.seconds, end or stamp, last))
            if row.epsilon is not None:  # a private trial's own ε
                metrics.append(("privacy_epsilon", row.epsilon, end or stamp, last))
            tags = {}
            if row.reason:
                tags["automl.reason"] = row.reason
            if row.retry_of is not None:
                tags["automl.retry_of"] = str(row.retry_of)
            self._log(run_id, params={k: str(v) for k, v in row.params.items()}, metrics=metrics, tags=tags)
            self.client.set_terminated(run_id, status=status, end_time=end)
            logged[str(row.number)] = run_id
            count += 1
        _write_state(self.run_dir, self.state)
        return count

    def log_baseline(self, results: Any, parent_id: str) -> None:
        baseline = results.baseline
        if not baseline or self.state.get("baseline_run_id"):
            return
        created = self.client.create_run(
            self.state["experiment_id"],
            run_name=f"baseline: {baseline.get('name', 'baseline')}",
            tags={"mlflow.parentRunId": parent_id, "automl.state": "baseline"},
        )
        run_id = created.info.run_id
        metrics = [(k, v, 0, 0) for k, v in (baseline.get("validation") or {}).items() if _number(v)]
        metrics += [(f"test_{k}", v, 0, 0) for k, v in (baseline.get("test") or {}).items() if _number(v)]
        if _number(baseline.get("seconds")):
            metrics.append(("duration_s", baseline["seconds"], 0, 0))
        # The baseline of a private run is trained without privacy: a reference, never exported.
        tags = {"automl.not_private": "true"} if baseline.get("not_private") else {}
        self._log(run_id, params={"model": str(baseline.get("name"))}, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, status="FINISHED")
        self.state["baseline_run_id"] = run_id
        _write_state(self.run_dir, self.state)

    def log_ensemble(self, parent_id: str) -> None:
        """The run's ensemble (``<run>/ensemble.json``, when the run built one) as a nested
        run: its members and weights, validation and test metrics, whether it won."""
        try:
            ensemble = json.loads((self.run_dir / "ensemble.json").read_text())
        except (OSError, ValueError):
            return
        if not isinstance(ensemble, dict) or self.state.get("ensemble_run_id"):
            return
        created = self.client.create_run(
            self.state["experiment_id"],
            run_name="ensemble",
            tags={"mlflow.parentRunId": parent_id, "automl.state": "ensemble", "automl.wins": str(bool(ensemble.get("wins")))},
        )
        run_id = created.info.run_id
        members = ensemble.get("members") or []
        params = {f"member.{m.get('name', i)}": str(m.get("weight")) for i, m in enumerate(members) if isinstance(m, dict)}
        metrics = [(k, v, 0, 0) for k, v in (ensemble.get("validation") or {}).items() if _number(v)]
        metrics += [(f"test_{k}", v, 0, 0) for k, v in (ensemble.get("test") or {}).items() if _number(v)]
        self._log(run_id, params=params, metrics=metrics)
        self.client.set_terminated(run_id, status="FINISHED")
        self.state["ensemble_run_id"] = run_id
        _write_state(self.run_dir, self.state)

    def log_end(self, results: Any, parent_id: str, summary: Any) -> None:
        metrics: list[tuple[str, float, int, int]] = [
            ("n_complete", summary.n_complete, 0, 0),
            ("n_pruned", summary.n_pruned, 0, 0),
            ("n_failed", summary.n_failed, 0, 0),
        ]
        tags = {}
        if summary.best_value is not None:
            metrics.append((f"best_{results.objective}", summary.best_value, 0, 0))
            tags["automl.best_trial"] = str(summary.best_trial)
        export = results.best_export or {}
        for split, values in (export.get("metrics") or {}).items():
            metrics += [(f"{split}_{k}", v, 0, 0) for k, v in values.items() if _number(v)]
        privacy = results.privacy
        if privacy:  # the guarantee of the exported model: the whole search's ε at the run's δ
            metrics += [("privacy_search_epsilon", privacy["search_epsilon"], 0, 0), ("privacy_delta", privacy["delta"], 0, 0)]
            if privacy.get("max_trial_epsilon") is not None:
                metrics.append(("privacy_max_trial_epsilon", privacy["max_trial_epsilon"], 0, 0))
            tags["automl.privacy_accounting"] = str(privacy["accounting"])
        self._log(parent_id, metrics=metrics, tags=tags)
        best_dir = summary.best_dir
        if best_dir is not None and Path(best_dir).is_dir() and self.state.get("model_trial") != export.get("trial"):
            self.log_model(parent_id, Path(best_dir))
            self.state["model_trial"] = export.get("trial")
        for name in ("report.html", "report.md"):
            if (self.run_dir / name).exists():
                self.client.log_artifact(parent_id, str(self.run_dir / name))
        self.client.set_terminated(parent_id, status="KILLED" if summary.interrupted else "FINISHED")
        _write_state(self.run_dir, self.state)


    def log_model(self, parent_id: str, best_dir: Path) -> None:
        """The exported model as the MLflow pyfunc model ``model`` (signature and input
        example from the run's split), loadable as ``runs:/<id>/model``."""
        with tempfile.TemporaryDirectory(prefix="automl-mlflow-") as tmp:
            written = save_pyfunc(best_dir, Path(tmp) / "model", run_dir=self.run_dir)
            self.client.log_artifacts(parent_id, str(written), artifact_path="model")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


@hookimpl
def automl_study_start(run: Any) -> None:
    uri = tracking_uri(run)
    if uri is None:
        return
    require_mlflow()  # a missing extra stops the run here, before anything trains
    try:
        check_reachable(uri)
        tracker = Tracker(run, uri)
        run_id = tracker.parent()
        tracker.client.update_run(run_id, status="RUNNING")
    except Exception as exc:
        _warn(Path(run.run_dir), uri, exc)


@hookimpl
def automl_study_end(run: Any, summary: Any) -> None:
    uri = tracking_uri(run)
    if uri is None:
        return
    from automl.results import gather

    try:
        check_reachable(uri)
        tracker = Tracker(run, uri)
        parent_id = tracker.parent()
        results = gather(Path(run.run_dir))
        tracker.log_trials(results, parent_id)
        tracker.log_baseline(results, parent_id)
        tracker.log_ensemble(parent_id)
        tracker.log_end(results, parent_id, summary)
    except Exception as exc:
        _warn(Path(run.run_dir), uri, exc)
