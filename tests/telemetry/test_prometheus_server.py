"""
A real Prometheus (Debian package ``prometheus``) scrapes a served machine tree.

The module starts one ``prometheus`` process scraping this process' ``/metrics`` every
second; each test builds a tree (root served with ``am.rpc.serve``, a replicant, a
leaf client), mutates it and polls Prometheus' HTTP API until the expected series
arrive. A missing binary fails the tests (``.ci/run`` installs the package).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

import asyncmachine as am
from asyncmachine.telemetry import MetricsServer, PrometheusTracer, serve_metrics
from asyncmachine.telemetry.grafana import grafana_dashboard

JOB = "asyncmachine-test"
READY_TIMEOUT = 30.0
SERIES_TIMEOUT = 30.0
MISSING = (
    "the prometheus binary is missing: install the Debian package 'prometheus' "
    "(apt-get install -y prometheus; .ci/run does it)"
)

SCHEMA: dict[str, am.State] = {
    "Ready": am.State(),
    "Working": am.State(require=["Ready"]),
    "Failing": am.State(),
    **am.rpc.STATE_SOURCE_SCHEMA,
}


class RootHandlers:
    """Handlers of the root machine: one normal, one raising."""

    def Working_enter(self, e: am.Event) -> bool:
        return True

    def Failing_state(self, e: am.Event) -> None:
        raise ValueError("failing on purpose")


class MirrorHandlers:
    """Notification handlers on the replicant's mirror."""

    def Working_state(self, e: am.Event) -> None:
        pass


@dataclass
class Prometheus:
    """A running Prometheus server."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Metrics:
    """This process' metrics endpoint."""

    registry: CollectorRegistry
    tracer: PrometheusTracer
    server: MetricsServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body: bytes = resp.read()
            return resp.status, body
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def query(prom: str, promql: str) -> list[dict[str, Any]]:
    """Run an instant query; its result vector."""
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    status, body = http_get(url)
    data = json.loads(body)
    assert status == 200, (promql, data)
    assert data["status"] == "success", (promql, data)
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def metrics() -> Iterator[Metrics]:
    """One registry, tracer and /metrics endpoint for the module."""
    registry = CollectorRegistry()
    tracer = PrometheusTracer(registry)
    server = serve_metrics(registry=registry)
    try:
        yield Metrics(registry, tracer, server)
    finally:
        server.close()


@pytest.fixture(scope="module")
def prometheus(
    metrics: Metrics, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """A Prometheus scraping the module's endpoint every second; always stopped."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail(MISSING)
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics.server.port}']\n"
    )
    last_log = ""
    for attempt in range(3):  # the free port may be taken before prometheus binds it
        port = free_port()
        log = tmp / f"prometheus-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / f'data-{attempt}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            ready = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    ready = http_get(f"{url}/-/ready", timeout=1)[0] == 200
                except OSError:
                    ready = False
                if ready:
                    break
                time.sleep(0.1)
            if not ready:
                stop(proc)
                last_log = log.read_text(errors="replace")[-2000:]
                continue
            yield Prometheus(url, proc, log)
            return
        finally:
            stop(proc)
    pytest.fail(f"prometheus did not become ready; last log:\n{last_log}")


def test_prometheus_binary_is_installed() -> None:
    """The integration tests need the real server: missing means failing."""
    assert shutil.which("prometheus") is not None, MISSING


async def until(
    prom: Prometheus, check: Callable[[], str | None], what: str, deadline: float
) -> None:
    """
    Poll *check* (in a thread) until it returns None (else it names what is
    missing), failing at *deadline* (anyio time).
    """
    missing: str | None = what
    with anyio.move_on_after(deadline - anyio.current_time()):
        while True:
            missing = await anyio.to_thread.run_sync(check)
            if missing is None:
                return
            assert prom.proc.poll() is None, prom.log.read_text(errors="replace")
            await anyio.sleep(0.25)
    pytest.fail(f"{what}: still missing after {SERIES_TIMEOUT}s in all: {missing}")


def value_of(prom: str, promql: str) -> float | None:
    result = query(prom, promql)
    if len(result) != 1:
        return None
    return float(result[0]["value"][1])


def substitute(expr: str, machine_id: str, rpc_id: str) -> str:
    """Fill in the Grafana variables the way Grafana would for one selection."""
    return (
        expr.replace("$job", JOB)
        .replace("$machine_id", machine_id)
        .replace("$rpc_id", rpc_id)
        .replace("$__rate_interval", "10s")
    )


@pytest.mark.anyio
async def test_prometheus_scrapes_a_machine_tree(
    prometheus: Prometheus, metrics: Metrics, anyio_backend: str
) -> None:
    """Machine and aRPC series of a served tree reach Prometheus, dashboard included."""
    tracer = metrics.tracer
    prom = prometheus.url
    tag = anyio_backend
    root = am.Machine(
        SCHEMA, id=f"root-{tag}", handlers=RootHandlers(), tracers=[tracer]
    )
    async with (
        am.rpc.serve(root, push_interval=0.05) as server,
        am.rpc.Replicant(server.addr, id=f"rep-{tag}", push_interval=0.05) as rep,
        am.rpc.Client(rep.addr, id=f"leaf-{tag}") as leaf,
    ):
        tracer.track_server(server)
        tracer.track_client(rep.client)
        tracer.track_server(rep.server)
        tracer.track_client(leaf)
        mirror = rep.netmach
        mirror.bind_handlers(MirrorHandlers())
        tracer.track(mirror)
        root_id, mirror_id = root.id, mirror.id

        # mutate: locally on the root, and remotely from the leaf (through the replicant)
        root.add("Ready")
        assert await leaf.netmach.add("Working") == am.Result.EXECUTED
        root.add("Failing")  # its handler raises: Exception
        assert root.is_err()
        assert await leaf.netmach.when("Exception")
        assert await mirror.when("Working")

        def one(v: float) -> bool:
            return v == 1

        expected: list[tuple[str, dict[str, str], Callable[[float], bool]]] = [
            (
                "asyncmachine_transitions_total",
                {"machine_id": root_id, "result": "executed"},
                lambda v: v >= 3,
            ),
            ("asyncmachine_exceptions_total", {"machine_id": root_id}, one),
            (
                "asyncmachine_state_active",
                {"machine_id": root_id, "state": "Working"},
                one,
            ),
            (
                "asyncmachine_state_active",
                {"machine_id": mirror_id, "state": "Working"},
                one,
            ),
            (
                "asyncmachine_handler_duration_seconds_count",
                {"machine_id": root_id, "handler": "Working_enter"},
                one,
            ),
            (
                "asyncmachine_rpc_frames_total",
                {"machine_id": server.mach.id, "direction": "in", "kind": "hello"},
                one,
            ),
            (
                "asyncmachine_rpc_frames_total",
                {"machine_id": rep.server.mach.id, "direction": "in", "kind": "mutate"},
                one,
            ),
            (
                "asyncmachine_rpc_connections",
                {"machine_id": leaf.mach.id, "role": "client"},
                one,
            ),
            (
                "asyncmachine_rpc_clock_updates_total",
                {"machine_id": rep.client.mach.id},
                lambda v: v >= 1,
            ),
        ]

        def check_series() -> str | None:
            for name, labels, ok in expected:
                sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
                promql = f"{name}{{{sel}}}"
                got = value_of(prom, promql)
                if got is None or not ok(got):
                    return f"{promql} = {got}"
            return None

        deadline = anyio.current_time() + SERIES_TIMEOUT
        await until(prometheus, check_series, "machine and aRPC series", deadline)

        # Every dashboard query answers: for each machine id (machine panels), or for
        # the tracked aRPC endpoints (aRPC panels; some metrics exist for one role).
        dash: Any = grafana_dashboard([root_id, mirror_id], SCHEMA, job=JOB)
        targets: list[str] = [
            t["expr"]
            for p in dash["panels"]
            for panel in [p, *p.get("panels", [])]
            for t in panel.get("targets", [])
        ]
        assert len(targets) > 15
        rpc_ids = "|".join(
            m.id for m in (server.mach, rep.client.mach, rep.server.mach, leaf.mach)
        )

        def check_dashboard() -> str | None:
            for expr in targets:
                if "$rpc_id" in expr:
                    if not query(prom, substitute(expr, "", rpc_ids)):
                        return expr
                    continue
                for mid in (root_id, mirror_id):
                    if not query(prom, substitute(expr, mid, "")):
                        return f"{expr} for {mid}"
            return None

        await until(prometheus, check_dashboard, "dashboard queries", deadline)
