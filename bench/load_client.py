"""The load generator of part 6: concurrent clients of MLflow's REST API, then a read-back.

Each client is one keep-alive HTTP connection (httpx, asyncio) with its own run. It loops
until the deadline: four ``runs/log-metric`` calls (one point each), then one
``runs/log-batch`` of 100-1000 points. Every point has its own step, so reading the run's
history back shows exactly which accepted points were lost and which were stored twice.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "/api/2.0/mlflow"
BATCH_SIZES = (100, 400, 700, 1000)  # MLflow takes at most 1000 metrics per log-batch
SINGLES_PER_BATCH = 4


@dataclass
class ClientTally:
    run_id: str
    accepted: dict[str, list[int]] = field(default_factory=lambda: {"single": [], "batch": []})
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"single": [], "batch": []})
    requests_ok: int = 0
    status_5xx: int = 0
    other_errors: int = 0  # 4xx, timeouts, broken connections
    error_samples: list[str] = field(default_factory=list)


def _metric(key: str, step: int, timestamp: int) -> dict[str, Any]:
    return {"key": key, "value": float(step), "timestamp": timestamp, "step": step}


async def _client_loop(client: httpx.AsyncClient, tally: ClientTally, deadline: float) -> None:
    steps = {"single": 0, "batch": 0}
    call = 0
    while time.monotonic() < deadline:
        timestamp = int(time.time() * 1000)
        if call % (SINGLES_PER_BATCH + 1) == SINGLES_PER_BATCH:
            kind, size = "batch", BATCH_SIZES[(call // (SINGLES_PER_BATCH + 1)) % len(BATCH_SIZES)]
            first = steps["batch"]
            points = [_metric("batch", first + i, timestamp) for i in range(size)]
            path, body = f"{API}/runs/log-batch", {"run_id": tally.run_id, "metrics": points}
        else:
            kind, size, first = "single", 1, steps["single"]
            path, body = (
                f"{API}/runs/log-metric",
                {"run_id": tally.run_id, **_metric(kind, first, timestamp)},
            )
        steps[kind] += size  # a failed call's steps are not reused: no point is sent twice
        call += 1
        started = time.perf_counter()
        try:
            response = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            tally.other_errors += 1
            _sample(tally, f"{kind}: {type(exc).__name__}: {exc}")
            continue
        tally.latencies[kind].append(time.perf_counter() - started)
        if response.is_success:
            tally.requests_ok += 1
            tally.accepted[kind].extend(range(first, first + size))
        elif response.status_code >= 500:
            tally.status_5xx += 1
            _sample(tally, f"{kind}: {response.status_code} {response.text[:200]}")
        else:
            tally.other_errors += 1
            _sample(tally, f"{kind}: {response.status_code} {response.text[:200]}")


def _sample(tally: ClientTally, message: str) -> None:
    if len(tally.error_samples) < 3:
        tally.error_samples.append(message)


async def _new_run(client: httpx.AsyncClient, experiment_id: str) -> str:
    response = await client.post(
        f"{API}/runs/create",
        json={"experiment_id": experiment_id, "start_time": int(time.time() * 1000)},
    )
    response.raise_for_status()
    run_id: str = response.json()["run"]["info"]["run_id"]
    return run_id


async def _stored_steps(client: httpx.AsyncClient, run_id: str, key: str) -> list[int]:
    steps: list[int] = []
    token = None
    while True:
        params = {"run_id": run_id, "metric_key": key, **({"page_token": token} if token else {})}
        response = await client.get(f"{API}/metrics/get-history", params=params)
        response.raise_for_status()
        document = response.json()
        steps += [int(m["step"]) for m in document.get("metrics", [])]
        token = document.get("next_page_token")
        if not token:
            return steps


@dataclass
class LoadResult:
    clients: int
    seconds: float
    tallies: list[ClientTally]
    stored: list[dict[str, list[int]]]
    loadgen_cpu_seconds: float
    server_cpu_seconds: float

    def summary(self) -> dict[str, Any]:
        accepted = lost = duplicated = extra = 0
        for tally, stored in zip(self.tallies, self.stored, strict=True):
            for kind, steps in tally.accepted.items():
                kept = stored[kind]
                accepted += len(steps)
                duplicated += len(kept) - len(set(kept))
                lost += len(set(steps) - set(kept))
                extra += len(set(kept) - set(steps))  # stored, though the call failed
        latencies = {
            k: [x for t in self.tallies for x in t.latencies[k]] for k in ("single", "batch")
        }
        requests = sum(t.requests_ok for t in self.tallies)
        return {
            "clients": self.clients,
            "seconds": self.seconds,
            "points_accepted": accepted,
            "points_stored": sum(len(s[k]) for s in self.stored for k in s),
            "lost": lost,
            "duplicated": duplicated,
            "stored_from_failed_calls": extra,
            "requests_ok": requests,
            "status_5xx": sum(t.status_5xx for t in self.tallies),
            "other_errors": sum(t.other_errors for t in self.tallies),
            "error_samples": [s for t in self.tallies for s in t.error_samples][:5],
            "points_per_s": accepted / self.seconds,
            "requests_per_s": requests / self.seconds,
            **{f"{k}_p50_ms": _quantile_ms(v, 0.50) for k, v in latencies.items()},
            **{f"{k}_p99_ms": _quantile_ms(v, 0.99) for k, v in latencies.items()},
            # Cores kept busy during the load (not the sign-ins, not the read-back).
            "loadgen_cpu_share": self.loadgen_cpu_seconds / self.seconds,
            "server_cpu_share": self.server_cpu_seconds / self.seconds,
        }


def _quantile_ms(values: list[float], q: float) -> float | None:
    if len(values) < 2:
        return 1000 * values[0] if values else None
    return 1000 * statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def _load(
    base_url: str,
    tokens: list[str | None],
    experiment_id: str,
    seconds: float,
    server_cpu: Callable[[], float],
) -> LoadResult:
    timeout = httpx.Timeout(120.0)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
            limits=limits,
        )
        for token in tokens
    ]
    try:
        runs = await asyncio.gather(*(_new_run(c, experiment_id) for c in clients))
        tallies = [ClientTally(run_id) for run_id in runs]
        cpu_before, server_before = time.process_time(), server_cpu()
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(
            *(_client_loop(c, t, deadline) for c, t in zip(clients, tallies, strict=True))
        )
        elapsed = time.monotonic() - started
        cpu, server = time.process_time() - cpu_before, server_cpu() - server_before
        stored = []
        for client, tally in zip(clients, tallies, strict=True):
            keys = ("single", "batch")
            histories = await asyncio.gather(
                *(_stored_steps(client, tally.run_id, k) for k in keys)
            )
            stored.append(dict(zip(keys, histories, strict=True)))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return LoadResult(len(clients), elapsed, tallies, stored, cpu, server)


def run_load(
    base_url: str,
    clients: int,
    seconds: float,
    experiment_id: str,
    token: Callable[[], str | None],
    server_cpu: Callable[[], float],
) -> dict[str, Any]:
    """``clients`` concurrent clients for ``seconds`` against ``base_url``; the summary.

    ``server_cpu()`` is the servers' CPU seconds so far, read as the load starts and ends.
    """
    tokens = [token() for _ in range(clients)]  # each client signs in on its own
    result = asyncio.run(_load(base_url, tokens, experiment_id, seconds, server_cpu))
    return result.summary()
