"""``automl serve`` under load: throughput, latency and memory, with dynamic batching on
and off.

Starts the real service (``python -m automl serve MODEL_DIR``, one worker process, CPU) on
two free loopback ports, side by side: with batching (``--max-batch-size 32 --max-wait-ms
5``, the defaults) and without (``--max-batch-size 1``). For 1, 8 and 32 clients the load
alternates between the two in ``--rounds`` rounds, so a change in the machine's load
(a shared machine) hits both alike. The load generator is a small asyncio
client (httpx): C concurrent clients, each sending one-row ``POST /predict`` requests back
to back (rows of the run's test split, in turn) until the phase's request count is sent.
Per phase: requests per second, p50 and p99 latency, errors (anything but 200). Memory:
the server's resident set size (VmRSS) after a warm-up of 500 requests and after all
phases.

Run from the repository root (the model of ``automl run recipes/fraud.yaml``)::

    python benchmarks/serving.py runs/fraud/best
    python benchmarks/serving.py runs/fraud/best --scale 0.1   # a quick try

Targets: throughput at 32 clients with batching >= 3x without; 0 errors over >= 20,000
requests; RSS after the run within 10% of after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine_line  # noqa: E402

#: Clients -> requests with batching on and off, at scale 1: 21,500 requests in all.
PHASES = {1: {"on": 1000, "off": 1000}, 8: {"on": 3000, "off": 1500}, 32: {"on": 12000, "off": 3000}}
WARMUP = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_rows(model_dir: Path, data: Path | None) -> list[dict[str, Any]]:
    import pandas as pd

    from automl.deploy import measurement_split
    from automl.results.predict import read_meta

    best, meta = read_meta(model_dir)
    if data is None:
        found = measurement_split(best.parent)
        if found is None:
            raise SystemExit("the run's test/validation file is gone; give --data FILE")
        data = found[1]
    frame = pd.read_csv(data)
    label = (meta.get("data") or {}).get("label_column")
    if label in frame.columns:
        frame = frame.drop(columns=[label])
    return json.loads(frame.to_json(orient="records"))


class Server:
    def __init__(self, model_dir: Path, batch: int, wait_ms: float, threads: int | None) -> None:
        self.port = free_port()
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        command = [sys.executable, "-m", "automl", "serve", str(model_dir), "--port", str(self.port), "--device", "cpu",
                   "--max-batch-size", str(batch), "--max-wait-ms", str(wait_ms)]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="automl-serve-", suffix=".log")
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"automl serve exited: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit("automl serve did not start")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        lines = [line for line in self.output().splitlines() if line.strip() and not line.startswith("serving ")]
        if lines:  # whatever the server reported besides its start line
            print(f"server {self.url} said:\n" + "\n".join(lines[-20:]))


async def load(url: str, rows: list[dict[str, Any]], clients: int, requests: int) -> dict[str, Any]:
    """*clients* concurrent clients sending one-row requests until *requests* are sent."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for i in counter:
            body = {"rows": [rows[i % len(rows)]]}
            began = time.perf_counter()
            try:
                response = await http.post("/predict", json=body)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - began) * 1000)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - began
    return {"requests": requests, "latencies": latencies, "errors": errors, "seconds": seconds}


def summarise(mode: str, clients: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One phase's figures over its rounds: requests/s = answered requests / time under load."""
    latencies = sorted(x for r in rounds for x in r["latencies"])
    errors = [e for r in rounds for e in r["errors"]]
    seconds = sum(r["seconds"] for r in rounds)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "batching": mode,
        "clients": clients,
        "requests": sum(r["requests"] for r in rounds),
        "ok": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted({e.split(":")[0] for e in errors}),
        "first_error": errors[0] if errors else None,
        "seconds": round(seconds, 2),
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(pct(0.50), 1),
        "p99_ms": round(pct(0.99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="an exported model (e.g. runs/fraud/best)")
    parser.add_argument("--data", type=Path, help="rows to send (default: the run's test split)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every phase's request count")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the two servers per number of clients")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    rows = test_rows(args.model_dir, args.data)
    print(machine_line())
    print(load_average())
    results: dict[str, Any] = {"phases": [], "memory": {}}
    # Both servers run side by side (an idle one takes no CPU) and the phases alternate
    # between them in rounds, so a change in the machine's load hits both alike.
    servers = {
        "on": Server(args.model_dir, args.max_batch_size, args.max_wait_ms, args.threads),
        "off": Server(args.model_dir, 1, args.max_wait_ms, args.threads),
    }
    warm: dict[str, float] = {}
    try:
        for mode, server in servers.items():
            started = time.perf_counter()
            server.wait_ready()
            batch = args.max_batch_size if mode == "on" else 1
            print(f"batching {mode}: --max-batch-size {batch} --max-wait-ms {args.max_wait_ms}, ready in {time.perf_counter() - started:.1f} s")
            asyncio.run(load(server.url, rows, 8, WARMUP))
            warm[mode] = rss_mib(server.process.pid)
        for clients, requests in PHASES.items():
            done: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
            for _ in range(args.rounds):
                for mode, server in servers.items():
                    share = max(clients, int(requests[mode] * args.scale / args.rounds))
                    done[mode].append(asyncio.run(load(server.url, rows, clients, share)))
            for mode in servers:
                figures = summarise(mode, clients, done[mode])
                results["phases"].append(figures)
                print(json.dumps(figures), flush=True)
        for mode, server in servers.items():
            after = rss_mib(server.process.pid)
            results["memory"][mode] = {"after_warmup_mib": round(warm[mode], 1), "after_run_mib": round(after, 1), "growth": round(after / warm[mode] - 1, 4)}
            print(f"RSS batching {mode}: {warm[mode]:.1f} MiB after warm-up, {after:.1f} MiB after the run ({100 * (after / warm[mode] - 1):+.1f}%)")
    finally:
        for server in servers.values():
            server.stop()
    print(load_average())

    phases = results["phases"]
    by = {(p["batching"], p["clients"]): p for p in phases}
    total = sum(p["requests"] for p in phases)
    errors = sum(p["errors"] for p in phases)
    ratio = by[("on", 32)]["rps"] / by[("off", 32)]["rps"]
    results.update(total_requests=total, errors=errors, speedup_32=round(ratio, 2))
    print()
    print("| batching | clients | requests | req/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for p in sorted(phases, key=lambda p: (p["batching"] == "off", p["clients"])):
        print(f"| {p['batching']} | {p['clients']} | {p['requests']} | {p['rps']:.1f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {p['errors']} |")
    print()
    memory = results["memory"]["on"]
    print(f"throughput at 32 clients, batching on / off: {ratio:.2f}x (target >= 3x)")
    print(f"requests: {total}, errors: {errors} (target 0 over >= 20,000)")
    print(f"RSS with batching: {memory['after_warmup_mib']} MiB after warm-up, {memory['after_run_mib']} MiB after the run ({100 * memory['growth']:+.1f}%, target within 10%)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
