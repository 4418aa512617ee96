"""``automl dashboard``: a real optuna-dashboard server on a free loopback port serves the
run's study (with automl's trial user attributes) over HTTP, read-only by default."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from integration_helpers import free_port

pytest.importorskip("optuna_dashboard", reason="the dashboard extra is not installed (pip install 'automl[test]')")


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def dashboard(tracked_run, tmp_path):
    _, run_dir, _ = tracked_run
    port = free_port()
    log = open(tmp_path / "dashboard.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "automl", "dashboard", str(run_dir), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a bound, not a speed check: a loaded machine is slow
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("automl dashboard exited: " + (tmp_path / "dashboard.log").read_text())
            try:
                get(base + "/api/studies")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("automl dashboard did not answer: " + (tmp_path / "dashboard.log").read_text())
        yield base, run_dir, tmp_path / "dashboard.log"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_dashboard_serves_the_study_over_http(dashboard):
    base, run_dir, log = dashboard
    from automl.results import gather

    results = gather(run_dir)
    (summary,) = get(base + "/api/studies")["study_summaries"]
    assert summary["study_name"] == "tiny-tracked" and summary["directions"] == ["maximize"]
    study = get(f"{base}/api/studies/{summary['study_id']}")
    trials = {t["number"]: t for t in study["trials"]}
    assert sorted(trials) == [r.number for r in results.trials]
    for row in results.trials:
        served = trials[row.number]
        assert served["state"].lower().startswith(row.state.value[:4])
        attrs = {a["key"]: a["value"] for a in served["user_attrs"]}
        assert "seconds" in attrs  # timings
        if row.state.value == "complete":
            served_values = sorted((v["step"], v["value"]) for v in served["intermediate_values"])
            assert [step for step, _ in served_values] == sorted(row.intermediate)
            assert [value for _, value in served_values] == pytest.approx([row.intermediate[k] for k in sorted(row.intermediate)])
            assert "metrics" in attrs
        else:
            assert "trial 1 fails on purpose" in attrs["fail_reason"]
    page = urllib.request.urlopen(f"{base}/dashboard/studies/{summary['study_id']}", timeout=10).read().decode()
    assert "<html" in page.lower()
    assert f"{base.replace('127.0.0.1', 'localhost')}/dashboard/studies/{summary['study_id']}" in log.read_text()


def test_dashboard_is_read_only_by_default(dashboard):
    base, _, _ = dashboard
    request = urllib.request.Request(f"{base}/api/studies/0", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 405
    assert [s["study_name"] for s in get(base + "/api/studies")["study_summaries"]] == ["tiny-tracked"]
