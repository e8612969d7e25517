"""PrometheusTracer: machine metrics, aRPC metrics, the /metrics endpoint."""

from __future__ import annotations

import importlib
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

import asyncmachine as am
from asyncmachine.telemetry import METRICS, PrometheusTracer, serve_metrics

TIMEOUT = 10


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test (the default one is process-wide)."""
    return CollectorRegistry()


@pytest.fixture
def tracer(registry: CollectorRegistry) -> PrometheusTracer:
    """A tracer registered in the test's own registry."""
    return PrometheusTracer(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """One sample's value, or None if the series does not exist."""
    return registry.get_sample_value(name, labels)


def machine_ids(registry: CollectorRegistry) -> set[str]:
    """The machine ids with an asyncmachine_states series."""
    return {
        s.labels["machine_id"]
        for fam in registry.collect()
        if fam.name == "asyncmachine_states"
        for s in fam.samples
    }


SCHEMA: dict[str, am.State] = {
    "A": am.State(),
    "B": am.State(require=["A"]),
    "C": am.State(remove=["A"]),
    "D": am.State(auto=True, require=["A"]),
}


# --- the metric table ------------------------------------------------------------------


def test_exported_families_are_the_table(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """Every family the tracer exports is a row of METRICS, with its type and help."""
    mach = am.Machine(SCHEMA, tracers=[tracer], id="m")
    mach.add("A")
    fams = {f.name: f for f in registry.collect()}
    assert set(fams) == {spec.name for spec in METRICS}
    for spec in METRICS:
        assert spec.name.startswith("asyncmachine_")
        assert fams[spec.name].type == spec.kind
        assert fams[spec.name].documentation == spec.help
        assert not spec.unit or spec.name.endswith("_" + spec.unit)
        assert spec.labels[0] == "machine_id"
        for sample in fams[spec.name].samples:
            assert set(sample.labels) - {"le"} == set(spec.labels), spec.name


def test_docs_list_every_metric() -> None:
    """docs/telemetry.md has one table row per metric, with its help text."""
    docs = Path(__file__).parents[2] / "docs" / "telemetry.md"
    rows = [line for line in docs.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) == len(METRICS)
    for spec, row in zip(METRICS, rows, strict=True):
        name = spec.name if spec.kind == "histogram" else spec.series
        assert row.startswith(f"| `{name}` | {spec.kind} |"), row
        assert spec.help in row


def test_metric_lookup() -> None:
    """metric() finds a spec with or without the prefix and refuses unknown names."""
    spec = am.telemetry.metric("transitions")
    assert spec is am.telemetry.metric("asyncmachine_transitions")
    assert spec.series == "asyncmachine_transitions_total"
    assert am.telemetry.metric("state_active").series == "asyncmachine_state_active"
    hist = am.telemetry.metric("handler_duration_seconds")
    assert hist.series == "asyncmachine_handler_duration_seconds_bucket"
    with pytest.raises(KeyError, match="nope"):
        am.telemetry.metric("nope")


# --- machine metrics -------------------------------------------------------------------


def test_transitions_by_result_match_the_returned_results(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """executed/canceled counts equal what the mutations returned; checks not counted."""
    schema = {k: v for k, v in SCHEMA.items() if k != "D"}  # no auto transitions
    mach = am.Machine(schema, tracers=[tracer], id="m")
    results = [
        mach.add("B"),  # canceled: requires A
        mach.add("A"),
        mach.add("B"),
        mach.remove("A"),  # B loses its requirement too
        mach.set(["C"]),
        mach.add(["A", "C"]),  # canceled: C removes A
        mach.remove("A"),  # executed: A is not active afterwards
    ]
    assert mach.can_add("A") == am.Result.CANCELED  # C blocks A
    assert mach.can_remove("C") == am.Result.EXECUTED
    executed = results.count(am.Result.EXECUTED)
    canceled = results.count(am.Result.CANCELED)
    assert (executed, canceled) == (5, 2)
    name = "asyncmachine_transitions_total"
    assert value(registry, name, machine_id="m", result="executed") == executed
    assert value(registry, name, machine_id="m", result="canceled") == canceled
    count = value(
        registry, "asyncmachine_transition_duration_seconds_count", machine_id="m"
    )
    assert count == len(results)


def test_auto_transitions_are_counted(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """An auto transition counts as executed when it activated something."""
    mach = am.Machine(SCHEMA, tracers=[tracer], id="m")
    name = "asyncmachine_transitions_total"
    mach.add("A")  # + auto D: executed
    assert mach.is_active("D")
    assert value(registry, name, machine_id="m", result="executed") == 2
    mach.set(["C"])  # + auto D: canceled, A is gone
    assert value(registry, name, machine_id="m", result="executed") == 3
    assert value(registry, name, machine_id="m", result="canceled") == 1


def test_state_activity_and_ticks(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """state_active and state_tick follow the machine's clock, state by state."""
    mach = am.Machine(SCHEMA, tracers=[tracer], id="m")
    mach.add("A")
    mach.add("C")
    for state in mach.state_names():
        tick = mach.tick(state)
        assert (
            value(registry, "asyncmachine_state_tick", machine_id="m", state=state)
            == tick
        )
        assert value(
            registry, "asyncmachine_state_active", machine_id="m", state=state
        ) == (tick % 2)
    assert value(registry, "asyncmachine_states", machine_id="m") == len(
        mach.state_names()
    )


def test_queue_length_is_read_at_scrape_time(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """A scrape during a drain sees the queued mutations; after it, zero."""
    seen: list[float | None] = []

    class Handlers:
        def A_state(self, e: am.Event) -> None:
            e.machine.add("C")
            e.machine.add("B")
            seen.append(value(registry, "asyncmachine_queue_length", machine_id="m"))

    mach = am.Machine(SCHEMA, tracers=[tracer], handlers=Handlers(), id="m")
    mach.add("A")
    assert seen[0] is not None
    assert seen[0] >= 2
    assert value(registry, "asyncmachine_queue_length", machine_id="m") == 0


def test_mutations_are_counted(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """Every mutation that entered the queue counts once, auto ones included."""
    mach = am.Machine({"A": {}, "B": {}}, tracers=[tracer], id="m")
    mach.add("A")
    mach.add("B")
    mach.remove("A")
    assert value(registry, "asyncmachine_mutations_total", machine_id="m") == 3


def test_handler_durations_by_name(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """Each handler gets its own histogram; a slow one lands in a higher bucket."""

    class Handlers:
        def A_enter(self, e: am.Event) -> bool:
            return True

        def A_state(self, e: am.Event) -> None:
            time.sleep(0.02)

    mach = am.Machine(SCHEMA, tracers=[tracer], handlers=Handlers(), id="m")
    mach.add("A")
    mach.remove("A")
    mach.add("A")
    name = "asyncmachine_handler_duration_seconds"
    assert value(registry, f"{name}_count", machine_id="m", handler="A_enter") == 2
    assert value(registry, f"{name}_count", machine_id="m", handler="A_state") == 2
    total = value(registry, f"{name}_sum", machine_id="m", handler="A_state")
    assert total is not None
    assert total >= 0.04
    slow_fast = value(
        registry, f"{name}_bucket", machine_id="m", handler="A_state", le="0.01"
    )
    slow_ok = value(
        registry, f"{name}_bucket", machine_id="m", handler="A_state", le="0.5"
    )
    assert (slow_fast, slow_ok) == (0, 2)
    assert value(registry, f"{name}_count", machine_id="m", handler="B_enter") is None


def test_exceptions_are_counted(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """A raising handler and add_err each count one Exception activation."""

    class Handlers:
        def B_state(self, e: am.Event) -> None:
            raise ValueError("boom")

    mach = am.Machine(SCHEMA, tracers=[tracer], handlers=Handlers(), id="m")
    assert value(registry, "asyncmachine_exceptions_total", machine_id="m") == 0
    mach.add(["A", "B"])
    assert mach.is_err()
    assert value(registry, "asyncmachine_exceptions_total", machine_id="m") == 1
    mach.add_err(RuntimeError("again"))
    assert value(registry, "asyncmachine_exceptions_total", machine_id="m") == 2
    assert not mach.err_internal  # the tracer itself never failed


def test_one_tracer_many_machines(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """Machines attached any way get their own series, keyed by machine_id."""
    m1 = am.Machine(SCHEMA, tracers=[tracer], id="m1")
    m2 = am.Machine({"X": {}}, id="m2")
    m2.add_tracer(tracer)
    m3 = am.Machine({"Y": {}}, id="m3")
    assert machine_ids(registry) == {"m1"}  # m2 and m3: nothing traced yet
    tracer.track(m3)
    assert machine_ids(registry) == {"m1", "m3"}
    m1.add("A")
    m2.add("X")
    assert machine_ids(registry) == {"m1", "m2", "m3"}
    assert value(registry, "asyncmachine_state_active", machine_id="m2", state="X") == 1
    assert value(registry, "asyncmachine_state_active", machine_id="m3", state="Y") == 0
    assert (
        value(
            registry,
            "asyncmachine_transitions_total",
            machine_id="m3",
            result="executed",
        )
        == 0
    )
    assert (
        value(
            registry,
            "asyncmachine_transitions_total",
            machine_id="m1",
            result="executed",
        )
        == 2
    )


def test_submachines_are_followed(registry: CollectorRegistry) -> None:
    """Children of a traced machine are traced too, unless submachines=False."""
    tracer = PrometheusTracer(registry)
    parent = am.Machine(SCHEMA, tracers=[tracer], id="parent")
    child = am.Machine({"X": {}}, parent=parent, id="child")
    grandchild = am.Machine({"Y": {}}, parent=child, id="grandchild")
    assert tracer in child.tracers
    assert tracer in grandchild.tracers
    assert machine_ids(registry) == {"parent", "child", "grandchild"}
    other = CollectorRegistry()
    lone = PrometheusTracer(other, submachines=False)
    parent2 = am.Machine(SCHEMA, tracers=[lone], id="parent2")
    am.Machine({"X": {}}, parent=parent2, id="child2")
    assert machine_ids(other) == {"parent2"}


def test_disposed_machines_lose_their_series(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """dispose() drops the machine's series; later calls do not bring them back."""
    mach = am.Machine(SCHEMA, tracers=[tracer], id="gone")
    keep = am.Machine(SCHEMA, tracers=[tracer], id="kept")
    mach.add("A")
    mach.dispose()
    mach.add("B")
    assert machine_ids(registry) == {"kept"}
    assert (
        value(
            registry,
            "asyncmachine_transitions_total",
            machine_id="gone",
            result="executed",
        )
        is None
    )
    keep.add("A")


def test_collected_machines_lose_their_series(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """The tracer holds machines weakly: a collected machine disappears."""
    mach = am.Machine(SCHEMA, tracers=[tracer], id="temp")
    mach.add("A")
    assert machine_ids(registry) == {"temp"}
    ref = weakref.ref(mach)
    del mach
    # Freed by reference counting alone (no gc.collect(): it would also finalise
    # other tests' garbage here): nothing but the caller held the machine.
    assert ref() is None
    assert machine_ids(registry) == set()


def test_schema_change_shows_new_states(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """States added by set_schema appear at the next scrape."""
    mach = am.Machine({"A": {}}, tracers=[tracer], id="m")
    assert value(registry, "asyncmachine_state_tick", machine_id="m", state="B") is None
    mach.set_schema({"A": {}, "B": {}})
    mach.add("B")
    assert value(registry, "asyncmachine_state_tick", machine_id="m", state="B") == 1


def test_untrack(registry: CollectorRegistry, tracer: PrometheusTracer) -> None:
    """untrack() detaches the tracer and drops the series; twice is harmless."""
    mach = am.Machine(SCHEMA, tracers=[tracer], id="m")
    mach.add("A")
    tracer.untrack(mach)
    tracer.untrack(mach)
    assert tracer not in mach.tracers
    mach.add("B")
    assert machine_ids(registry) == set()


def test_default_registry_and_unregister() -> None:
    """registry=None registers in prometheus_client's default registry, once."""
    tracer = PrometheusTracer()
    try:
        mach = am.Machine(SCHEMA, tracers=[tracer], id="default-reg")
        mach.add("A")
        got = REGISTRY.get_sample_value(
            "asyncmachine_transitions_total",
            {"machine_id": "default-reg", "result": "executed"},
        )
        assert got == 2
        with pytest.raises(ValueError, match="asyncmachine_"):
            PrometheusTracer()
    finally:
        tracer.unregister()
    assert (
        REGISTRY.get_sample_value("asyncmachine_states", {"machine_id": "default-reg"})
        is None
    )


def test_lazy_access_from_the_package() -> None:
    """am.telemetry is reachable lazily; unknown names raise AttributeError."""
    assert am.telemetry.PrometheusTracer is PrometheusTracer
    assert am.telemetry.serve_metrics is serve_metrics
    with pytest.raises(AttributeError, match="nope"):
        am.telemetry.nope  # noqa: B018 - the attribute access is the test


@pytest.fixture
def no_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make prometheus_client unimportable and forget the telemetry modules."""
    for name in list(sys.modules):
        if name.startswith("asyncmachine.telemetry"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)


@pytest.mark.usefixtures("no_prometheus_client")
def test_missing_prometheus_client_names_the_extra() -> None:
    """Without prometheus_client the tracer's ImportError names the extra."""
    telemetry = importlib.import_module("asyncmachine.telemetry")
    assert telemetry.METRICS  # the table needs no extra
    dashboard = importlib.import_module("asyncmachine.telemetry.grafana")
    assert dashboard.grafana_dashboard(["m"])["panels"]
    with pytest.raises(ImportError, match=r"asyncmachine\[prometheus\]"):
        _ = telemetry.PrometheusTracer


# --- /metrics ---------------------------------------------------------------------------


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        assert resp.status == 200
    return body.decode()


def test_serve_metrics(registry: CollectorRegistry, tracer: PrometheusTracer) -> None:
    """The endpoint binds 127.0.0.1 by default, serves the registry, stops cleanly."""
    mach = am.Machine(SCHEMA, tracers=[tracer], id="served")
    mach.add("A")
    with serve_metrics(registry=registry) as server:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.addr == ("127.0.0.1", server.port)
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        text = fetch(server.url)
        assert (
            'asyncmachine_transitions_total{machine_id="served",result="executed"} 2.0'
            in text
        )
        assert 'asyncmachine_state_active{machine_id="served",state="A"} 1.0' in text
        mach.add("C")
        assert 'asyncmachine_state_active{machine_id="served",state="A"} 0.0' in fetch(
            server.url
        )
    server.close()  # idempotent
    with pytest.raises(urllib.error.URLError):
        fetch(server.url)


# --- aRPC metrics ----------------------------------------------------------------------

pytestmark_rpc = pytest.mark.anyio

RPC_SCHEMA: dict[str, am.State] = {
    "Foo": am.State(require=["Bar"]),
    "Bar": am.State(),
    "Multi": am.State(multi=True),
    **am.rpc.STATE_SOURCE_SCHEMA,
}


def rpc_value(
    registry: CollectorRegistry, name: str, mid: str, role: str, **labels: str
) -> float:
    got = registry.get_sample_value(name, {"machine_id": mid, "role": role, **labels})
    assert got is not None, (name, mid, role, labels)
    return got


def frames(
    registry: CollectorRegistry, mid: str, role: str, direction: str, kind: str
) -> float:
    return rpc_value(
        registry,
        "asyncmachine_rpc_frames_total",
        mid,
        role,
        direction=direction,
        kind=kind,
    )


async def until(pred: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll *pred* until it holds (scrape-time values have no event to wait on)."""
    with anyio.fail_after(limit):
        while not pred():  # noqa: ASYNC110 - metrics are read at scrape time
            await anyio.sleep(0.01)


@pytestmark_rpc
async def test_rpc_server_and_client_metrics(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """Frames and bytes by kind, connections, syncs and clock updates on both ends."""
    src = am.Machine(RPC_SCHEMA, id="src", tracers=[tracer])
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src, push_interval=0.01) as server:
            tracer.track_server(server)
            client = am.rpc.Client(server.addr, id="cli")
            tracer.track_client(client)
            async with client:
                tracer.track(client.netmach)
                nm = client.netmach
                assert await nm.add(["Foo", "Bar"]) == am.Result.EXECUTED
                src.add("Multi")
                assert await nm.when_ticks("Multi", 1)
                await client.sync()
                srv, cli = server.mach.id, client.mach.id
                assert (srv, cli) == ("rm-src", "rc-cli")
                assert frames(registry, srv, "server", "in", "hello") == 1
                assert frames(registry, srv, "server", "out", "welcome") == 1
                assert frames(registry, cli, "client", "out", "hello") == 1
                assert frames(registry, srv, "server", "in", "mutate") == 1
                assert frames(registry, cli, "client", "in", "result") >= 2
                assert frames(registry, srv, "server", "out", "clock") >= 1
                assert (
                    rpc_value(registry, "asyncmachine_rpc_syncs_total", srv, "server")
                    == 1
                )
                assert (
                    rpc_value(registry, "asyncmachine_rpc_syncs_total", cli, "client")
                    == 1
                )
                assert (
                    rpc_value(registry, "asyncmachine_rpc_connections", srv, "server")
                    == 1
                )
                assert (
                    rpc_value(registry, "asyncmachine_rpc_connections", cli, "client")
                    == 1
                )
                updates = rpc_value(
                    registry, "asyncmachine_rpc_clock_updates_total", cli, "client"
                )
                assert updates == client.stats["clocks"] >= 3
                assert (
                    rpc_value(
                        registry, "asyncmachine_rpc_clock_errors_total", cli, "client"
                    )
                    == 0
                )
                assert (
                    rpc_value(
                        registry, "asyncmachine_rpc_reconnects_total", cli, "client"
                    )
                    == 0
                )
                assert (
                    rpc_value(
                        registry, "asyncmachine_rpc_pending_requests", cli, "client"
                    )
                    == 0
                )
                assert (
                    rpc_value(registry, "asyncmachine_rpc_pending_waits", srv, "server")
                    == 0
                )
                assert (
                    rpc_value(
                        registry,
                        "asyncmachine_rpc_slow_consumer_closes_total",
                        srv,
                        "server",
                    )
                    == 0
                )
                # bytes by kind add up to the link's totals (the client has one link)
                link = client._link
                assert link is not None
                out_bytes = sum(
                    s.value
                    for fam in registry.collect()
                    if fam.name == "asyncmachine_rpc_bytes"
                    for s in fam.samples
                    if s.labels["machine_id"] == cli and s.labels["direction"] == "out"
                )
                assert out_bytes == link.bytes_out
                # the mirror is traced through its machine
                assert (
                    value(
                        registry,
                        "asyncmachine_state_active",
                        machine_id=nm.id,
                        state="Foo",
                    )
                    == 1
                )


@pytestmark_rpc
async def test_rpc_counters_survive_disconnects(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """A server's counters never go down when clients leave; connections do."""
    src = am.Machine(RPC_SCHEMA, id="src")
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server:
            tracer.track_server(server)
            srv = server.mach.id
            async with am.rpc.Client(server.addr, id="one") as one:
                await one.netmach.add("Bar")
            await until(
                lambda: (
                    not rpc_value(
                        registry, "asyncmachine_rpc_connections", srv, "server"
                    )
                )
            )
            assert frames(registry, srv, "server", "in", "hello") == 1
            assert frames(registry, srv, "server", "in", "mutate") == 1
            async with am.rpc.Client(server.addr, id="two") as two:
                await two.netmach.add("Foo")
                assert (
                    rpc_value(registry, "asyncmachine_rpc_connections", srv, "server")
                    == 1
                )
                assert frames(registry, srv, "server", "in", "hello") == 2
                assert frames(registry, srv, "server", "in", "mutate") == 2


@pytestmark_rpc
async def test_rpc_pending_waits(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """A remote when_args shows as a pending wait on the server until it resolves."""
    src = am.Machine(RPC_SCHEMA, id="src")
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            tracer.track_server(server)
            tracer.track_client(client)
            srv, cli = server.mach.id, client.mach.id
            got: list[bool] = []
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    got.append(await client.netmach.when_args("Multi", {"x": 1}))

                tg.start_soon(wait)
                await until(
                    lambda: bool(
                        rpc_value(
                            registry, "asyncmachine_rpc_pending_waits", srv, "server"
                        )
                    )
                )
                assert (
                    rpc_value(
                        registry, "asyncmachine_rpc_pending_requests", cli, "client"
                    )
                    == 1
                )
                src.add("Multi", {"x": 1})
            assert got == [True]
            assert (
                rpc_value(registry, "asyncmachine_rpc_pending_waits", srv, "server")
                == 0
            )
            assert (
                rpc_value(registry, "asyncmachine_rpc_pending_requests", cli, "client")
                == 0
            )


@pytestmark_rpc
async def test_link_kind_counters_add_up() -> None:
    """Link's per-kind counters sum to its frame and byte totals."""
    src = am.Machine(RPC_SCHEMA, id="src")
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, push_interval=0.01) as server,
            am.rpc.Client(server.addr) as client,
        ):
            await client.netmach.add("Bar")
            src.add("Multi")
            assert await client.netmach.when("Multi")
            links = [client._link, *(s.link for s in server.sessions.values())]
            for link in links:
                assert link is not None
                assert sum(link.frames_in_kind) == link.frames_in
                assert sum(link.frames_out_kind) == link.frames_out
                assert sum(link.bytes_out_kind) == link.bytes_out
                assert sum(link.bytes_in_kind) == link.bytes_in - link.conn.buffered
                assert link.frames_in_kind[0] == link.frames_out_kind[0] == 0


@pytestmark_rpc
async def test_track_twice_and_untrack_endpoints(
    registry: CollectorRegistry, tracer: PrometheusTracer
) -> None:
    """Tracking twice exports one set of series; untrack drops them."""
    src = am.Machine(RPC_SCHEMA, id="src")
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src) as server,
            am.rpc.Client(server.addr, id="c") as client,
        ):
            tracer.track_server(server)
            tracer.track_server(server)
            tracer.track_client(client)
            conns = [
                s
                for fam in registry.collect()
                if fam.name == "asyncmachine_rpc_connections"
                for s in fam.samples
            ]
            assert sorted(s.labels["machine_id"] for s in conns) == ["rc-c", "rm-src"]
            tracer.untrack(server)
            tracer.untrack(server)
            gone = registry.get_sample_value(
                "asyncmachine_rpc_connections",
                {"machine_id": "rm-src", "role": "server"},
            )
            assert gone is None
            assert rpc_value(registry, "asyncmachine_rpc_connections", "rc-c", "client")
