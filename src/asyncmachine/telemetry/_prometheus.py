"""
Prometheus metrics for machines and aRPC links; the only importer of prometheus_client.

Theory of operation:

- :class:`PrometheusTracer` is a tracer and a prometheus_client collector at once.
  Its hooks only bump plain integers in a per-machine record (no locks, no label
  lookups, no string formatting); everything is turned into metric families when
  Prometheus scrapes. State ticks, active states and queue lengths are not traced at
  all: they are read from the machines at scrape time.
- A record is keyed by machine id and holds the machine weakly. It is created the
  first time a machine shows up in a hook (``machine_init`` for tracers given to the
  constructor, otherwise the first mutation) or by :meth:`PrometheusTracer.track`,
  and dropped when the machine is disposed or garbage-collected.
- aRPC servers and clients are tracked explicitly. Their links (one per session or
  connection) carry counters; a link that closed is folded into per-endpoint totals,
  so counters never go down when a client disconnects or reconnects.
- Scrapes may run in another thread (prometheus_client's HTTP server does): hooks
  never take the lock, scrapes and (rare) registrations do.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

try:
    from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.metrics_core import Metric
except ImportError as exc:
    raise ImportError(
        "asyncmachine.telemetry.PrometheusTracer and serve_metrics need "
        "prometheus_client; install the extra: pip install 'asyncmachine[prometheus]'"
    ) from exc

from .._core._mutation import MutationType
from .._core._schema import EXCEPTION
from .._machine import Machine
from .._tracing import TracerNoOp
from ..rpc._client import Client
from ..rpc._events import Kind
from ..rpc._netmach import NetMach
from ..rpc._server import Server
from ..rpc._transport import KIND_SLOTS, Link
from ._metrics import METRICS, MetricSpec, metric

if TYPE_CHECKING:
    from .._core._mutation import Mutation
    from .._transition import Transition

__all__ = ("MetricsServer", "PrometheusTracer", "serve_metrics")

_REMOVE: Final = MutationType.REMOVE
_BOUNDS: Final = metric("asyncmachine_transition_duration_seconds").buckets
_HANDLER_BOUNDS: Final = metric("asyncmachine_handler_duration_seconds").buckets
_KIND_NAMES: Final = tuple(
    Kind(i).name.lower() if i in set(Kind) else "unknown" for i in range(KIND_SLOTS)
)
_SYNC: Final = int(Kind.SYNC)

_now = time.perf_counter


class _Hist:
    """Histogram buckets as plain counts; ``counts[-1]`` is the ``+Inf`` bucket."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self, les: tuple[str, ...]) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs and the sum, from one snapshot."""
        counts = list(self.counts)
        total = self.sum
        out: list[tuple[str, float]] = []
        acc = 0
        for le, n in zip(les, counts, strict=True):
            acc += n
            out.append((le, acc))
        return out, total


def _les(bounds: tuple[float, ...]) -> tuple[str, ...]:
    # Go formatting, as prometheus_client writes it: 1e-05, 0.001, 1.0
    return (*(repr(float(b)) for b in bounds), "+Inf")


_TX_LES: Final = _les(_BOUNDS)
_HANDLER_LES: Final = _les(_HANDLER_BOUNDS)


class _MachineRecord:
    """What the hooks count for one machine id."""

    __slots__ = (
        "canceled",
        "exceptions",
        "executed",
        "h_t0",
        "handlers",
        "id",
        "mutations",
        "ref",
        "tx",
        "tx_t0",
    )

    def __init__(self, mach: Machine) -> None:
        self.ref = weakref.ref(mach)
        self.id = mach.id
        self.executed = 0
        self.canceled = 0
        self.exceptions = 0
        self.mutations = 0
        self.tx_t0 = 0.0
        self.tx = _Hist(_BOUNDS)
        self.h_t0 = 0.0
        self.handlers: dict[str, _Hist] = {}


def _executed(tx: Transition) -> bool:
    """The transition's :class:`~asyncmachine.Result` was EXECUTED (rule H13)."""
    if not tx.accepted:
        return False
    mut = tx.mutation
    if mut.type is _REMOVE:
        after = tx.clock_after if tx.clock_after is not None else tx.clock_before
        return not any(after[s] % 2 for s in mut.called)
    if mut.is_auto:
        return len(tx.target) > len(tx.states_before)
    return True


class _Totals:
    """Per-kind frame and byte counts, summed over links."""

    __slots__ = ("bytes_in", "bytes_out", "frames_in", "frames_out", "slow")

    def __init__(self) -> None:
        self.frames_in = [0] * KIND_SLOTS
        self.frames_out = [0] * KIND_SLOTS
        self.bytes_in = [0] * KIND_SLOTS
        self.bytes_out = [0] * KIND_SLOTS
        self.slow = 0

    def add(self, other: _Totals | Link) -> None:
        if isinstance(other, Link):
            pairs = (
                (self.frames_in, other.frames_in_kind),
                (self.frames_out, other.frames_out_kind),
                (self.bytes_in, other.bytes_in_kind),
                (self.bytes_out, other.bytes_out_kind),
            )
            self.slow += other.stalled_out
        else:
            pairs = (
                (self.frames_in, other.frames_in),
                (self.frames_out, other.frames_out),
                (self.bytes_in, other.bytes_in),
                (self.bytes_out, other.bytes_out),
            )
            self.slow += other.slow
        for mine, theirs in pairs:
            for i, n in enumerate(list(theirs)):
                mine[i] += n


class _Endpoint:
    """A tracked aRPC server or client: its links, live and folded."""

    def __init__(self, obj: Server | Client, hook: _EndpointHook | None) -> None:
        self.ref: weakref.ref[Server | Client] = weakref.ref(obj)
        self.role = "server" if isinstance(obj, Server) else "client"
        self.machine_id = obj.mach.id
        self.hook = hook
        # Links seen and not folded yet, by identity.
        self.links: dict[int, Link] = {}
        # Counts of links that closed and left their endpoint.
        self.base = _Totals()

    def current(self, obj: Server | Client) -> list[Link]:
        if isinstance(obj, Server):
            return [s.link for s in list(obj.sessions.values())]
        link = obj._link
        return [] if link is None else [link]

    def poll(self, obj: Server | Client) -> list[Link]:
        """Pick up new links (the caller holds the tracer's lock)."""
        now = self.current(obj)
        for link in now:
            self.links.setdefault(id(link), link)
        return now

    def totals(self, obj: Server | Client) -> _Totals:
        """Fold closed links, then sum (the caller holds the tracer's lock)."""
        live = {id(link) for link in self.poll(obj)}
        for key, link in list(self.links.items()):
            if key not in live and link.closed:
                self.base.add(link)
                del self.links[key]
        out = _Totals()
        out.add(self.base)
        for link in self.links.values():
            out.add(link)
        return out


class _EndpointHook(TracerNoOp):
    """Traces a server's or client's own machine to notice new links early."""

    def __init__(self, tracer: PrometheusTracer) -> None:
        self.tracer = weakref.ref(tracer)
        self.endpoint: _Endpoint | None = None

    def transition_end(self, tx: Transition) -> None:
        tracer = self.tracer()
        endpoint = self.endpoint
        if tracer is None or endpoint is None:
            return
        obj = endpoint.ref()
        if obj is not None:
            with tracer._lock:
                endpoint.poll(obj)


class PrometheusTracer(TracerNoOp):
    """
    A tracer exporting Prometheus metrics for every machine it observes.

    One tracer observes any number of machines (``Machine(..., tracers=[t])``,
    ``mach.add_tracer(t)`` or :meth:`track`); every series carries a ``machine_id``
    label, and metric names start with ``asyncmachine_`` (see
    :data:`asyncmachine.telemetry.METRICS`). aRPC servers and clients are added with
    :meth:`track_server` and :meth:`track_client`.

    The tracer is also a prometheus_client collector and registers itself in
    *registry* (default: prometheus_client's default registry); one tracer per
    registry. Hooks only count: the metric families are built at scrape time, when
    state ticks, active states and queue lengths are read from the machines.

    Args:
        registry: the registry to register in; ``None`` means
            ``prometheus_client.REGISTRY``.
        submachines: also trace machines created with ``parent=`` a traced machine
            (like the Go exporter does).

    Raises:
        ValueError: the registry already holds metrics with these names (for example
            another :class:`PrometheusTracer`).
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, submachines: bool = True
    ) -> None:
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry
        self.submachines = submachines
        self._lock = threading.Lock()
        self._recs: dict[str, _MachineRecord] = {}
        self._endpoints: dict[int, _Endpoint] = {}
        self.registry.register(self)

    # -- tracking ---------------------------------------------------------------------

    def track(self, mach: Machine | NetMach) -> None:
        """
        Trace *mach* (``mach.add_tracer(self)``) and export its series right away,
        before its first transition. A :class:`~asyncmachine.rpc.NetMach` is traced
        through its mirror.
        """
        mach.add_tracer(self)
        self._register(mach.mirror if isinstance(mach, NetMach) else mach)

    def track_server(self, server: Server) -> None:
        """
        Export the aRPC metrics of *server* (and of all its sessions), labelled with
        the server's machine id (``rm-<source id>``) and ``role="server"``.
        """
        self._track_endpoint(server)

    def track_client(self, client: Client) -> None:
        """
        Export the aRPC metrics of *client* (across reconnections), labelled with
        the client's machine id (``rc-<client id>``) and ``role="client"``.
        """
        self._track_endpoint(client)

    def untrack(self, obj: Machine | NetMach | Server | Client) -> None:
        """Stop tracing *obj* and drop its series (no error if it was not tracked)."""
        if isinstance(obj, Server | Client):
            with self._lock:
                endpoint = self._endpoints.pop(id(obj), None)
            if endpoint is not None and endpoint.hook is not None:
                with contextlib.suppress(ValueError):
                    obj.mach.detach_tracer(endpoint.hook)
            return
        with contextlib.suppress(ValueError):
            obj.detach_tracer(self)
        mach = obj.mirror if isinstance(obj, NetMach) else obj
        with self._lock:
            rec = self._recs.get(mach.id)
            if rec is not None and rec.ref() is mach:
                del self._recs[mach.id]

    def unregister(self) -> None:
        """Remove the tracer's metrics from its registry (it keeps counting)."""
        self.registry.unregister(self)

    def _track_endpoint(self, obj: Server | Client) -> None:
        with self._lock:
            known = self._endpoints.get(id(obj))
            if known is not None and known.ref() is obj:
                return
            hook = _EndpointHook(self)
            endpoint = _Endpoint(obj, hook)
            hook.endpoint = endpoint
            self._endpoints[id(obj)] = endpoint
            endpoint.poll(obj)
        obj.mach.add_tracer(hook)

    def _register(self, mach: Machine) -> _MachineRecord | None:
        if mach.is_disposed:
            return None
        with self._lock:
            rec = self._recs.get(mach.id)
            if rec is None or rec.ref() is None:
                rec = self._recs[mach.id] = _MachineRecord(mach)
            return rec

    # -- hooks (hot path: no locks, no formatting) -------------------------------------

    def machine_init(self, mach: Machine) -> object:
        """Start exporting a machine created with this tracer."""
        self._register(mach)
        return None

    def new_submachine(self, parent: Machine, mach: Machine) -> None:
        """Follow a child machine of a traced machine (with ``submachines=True``)."""
        if self.submachines:
            mach.add_tracer(self)
            self._register(mach)

    def mutation_queued(self, mach: Machine, mutation: Mutation) -> None:
        """Count a mutation."""
        rec = self._recs.get(mach.id) or self._register(mach)
        if rec is not None:
            rec.mutations += 1

    def transition_start(self, tx: Transition) -> None:
        """Start timing a transition."""
        rec = self._recs.get(tx.machine.id) or self._register(tx.machine)
        if rec is not None:
            rec.tx_t0 = _now()

    def handler_start(self, tx: Transition, binding_id: int, name: str) -> None:
        """Start timing a handler."""
        rec = self._recs.get(tx.machine.id)
        if rec is not None:
            rec.h_t0 = _now()

    def handler_end(self, tx: Transition, binding_id: int, name: str) -> None:
        """Record a handler's duration."""
        t = _now()
        rec = self._recs.get(tx.machine.id)
        if rec is None or not rec.h_t0:
            return
        hist = rec.handlers.get(name)
        if hist is None:
            hist = rec.handlers[name] = _Hist(_HANDLER_BOUNDS)
        hist.observe(t - rec.h_t0)
        rec.h_t0 = 0.0

    def transition_end(self, tx: Transition) -> None:
        """Count a completed transition by result, and an activated Exception."""
        if tx.mutation.is_check:
            return
        t = _now()
        rec = self._recs.get(tx.machine.id) or self._register(tx.machine)
        if rec is None:
            return
        if rec.tx_t0:
            rec.tx.observe(t - rec.tx_t0)
            rec.tx_t0 = 0.0
        if _executed(tx):
            rec.executed += 1
            if EXCEPTION in tx.enters:
                rec.exceptions += 1
        else:
            rec.canceled += 1

    def schema_change(self, mach: Machine, old_schema: dict[str, object]) -> None:
        """New states show up at the next scrape (states are read then)."""
        if self._recs.get(mach.id) is None:
            self._register(mach)

    def machine_dispose(self, machine_id: str) -> None:
        """Drop the series of a disposed machine."""
        with self._lock:
            self._recs.pop(machine_id, None)

    # -- prometheus_client collector ---------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """The metric families (without samples), for the registry's name checks."""
        return [_family(spec) for spec in METRICS]

    def collect(self) -> Iterable[Metric]:
        """Build every metric family from the current counts and machine states."""
        fams = {spec.name: _family(spec) for spec in METRICS}
        with self._lock:
            recs = list(self._recs.values())
            for rec in recs:
                if rec.ref() is None and self._recs.get(rec.id) is rec:
                    del self._recs[rec.id]
            endpoints = []
            for key, endpoint in list(self._endpoints.items()):
                obj = endpoint.ref()
                if obj is None:
                    del self._endpoints[key]
                    continue
                endpoints.append((endpoint, obj, endpoint.totals(obj)))
        for rec in recs:
            mach = rec.ref()
            if mach is not None and not mach.is_disposed:
                _collect_machine(fams, rec, mach)
        for endpoint, obj, totals in endpoints:
            _collect_endpoint(fams, endpoint, obj, totals)
        return list(fams.values())


def _family(spec: MetricSpec) -> Metric:
    labels = list(spec.labels)
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=labels, unit=spec.unit)
    if spec.kind == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, labels=labels, unit=spec.unit)
    return HistogramMetricFamily(spec.name, spec.help, labels=labels, unit=spec.unit)


def _add(fams: dict[str, Metric], name: str, labels: list[str], value: float) -> None:
    fam = fams[name]
    assert isinstance(fam, CounterMetricFamily | GaugeMetricFamily)
    fam.add_metric(labels, value)


def _add_hist(
    fams: dict[str, Metric],
    name: str,
    labels: list[str],
    hist: _Hist,
    les: tuple[str, ...],
) -> None:
    fam = fams[name]
    assert isinstance(fam, HistogramMetricFamily)
    buckets, total = hist.buckets(les)
    fam.add_metric(labels, buckets, total)


def _collect_machine(
    fams: dict[str, Metric], rec: _MachineRecord, mach: Machine
) -> None:
    mid = rec.id
    _add(fams, "asyncmachine_transitions", [mid, "executed"], rec.executed)
    _add(fams, "asyncmachine_transitions", [mid, "canceled"], rec.canceled)
    _add(fams, "asyncmachine_exceptions", [mid], rec.exceptions)
    _add(fams, "asyncmachine_mutations", [mid], rec.mutations)
    _add_hist(fams, "asyncmachine_transition_duration_seconds", [mid], rec.tx, _TX_LES)
    for name, hist in sorted(rec.handlers.items()):
        _add_hist(
            fams,
            "asyncmachine_handler_duration_seconds",
            [mid, name],
            hist,
            _HANDLER_LES,
        )
    clock = mach.clock()
    _add(fams, "asyncmachine_states", [mid], len(clock))
    _add(fams, "asyncmachine_queue_length", [mid], mach.queue_len())
    for state, tick in clock.items():
        _add(fams, "asyncmachine_state_active", [mid, state], tick % 2)
        _add(fams, "asyncmachine_state_tick", [mid, state], tick)


def _collect_endpoint(
    fams: dict[str, Metric],
    endpoint: _Endpoint,
    obj: Server | Client,
    totals: _Totals,
) -> None:
    base = [endpoint.machine_id, endpoint.role]
    for direction, frames, nbytes in (
        ("in", totals.frames_in, totals.bytes_in),
        ("out", totals.frames_out, totals.bytes_out),
    ):
        for kind, name in enumerate(_KIND_NAMES):
            if kind == 0 and not frames[0]:
                continue
            labels = [*base, direction, name]
            _add(fams, "asyncmachine_rpc_frames", labels, frames[kind])
            _add(fams, "asyncmachine_rpc_bytes", labels, nbytes[kind])
    _add(fams, "asyncmachine_rpc_slow_consumer_closes", base, totals.slow)
    if isinstance(obj, Server):
        sessions = list(obj.sessions.values())
        _add(fams, "asyncmachine_rpc_connections", base, len(sessions))
        _add(fams, "asyncmachine_rpc_syncs", base, totals.frames_in[_SYNC])
        _add(
            fams,
            "asyncmachine_rpc_pending_requests",
            base,
            sum(len(s._pending) for s in sessions),
        )
        _add(
            fams,
            "asyncmachine_rpc_pending_waits",
            base,
            sum(len(s._waits) for s in sessions),
        )
        return
    stats = dict(obj.stats)
    _add(fams, "asyncmachine_rpc_connections", base, int(obj._link is not None))
    _add(fams, "asyncmachine_rpc_reconnects", base, stats.get("reconnects", 0))
    _add(fams, "asyncmachine_rpc_syncs", base, stats.get("syncs", 0))
    _add(fams, "asyncmachine_rpc_clock_updates", base, stats.get("clocks", 0))
    _add(fams, "asyncmachine_rpc_clock_errors", base, stats.get("clock_errors", 0))
    _add(fams, "asyncmachine_rpc_pending_requests", base, len(obj._pending))


# --- the /metrics endpoint ------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged."""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """
    A running ``/metrics`` endpoint (see :func:`serve_metrics`).

    Attributes:
        host: the bound address.
        port: the bound port.
    """

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry | None
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class _Server(_ThreadingWSGIServer):
            address_family = family

        app = make_wsgi_app(REGISTRY if registry is None else registry)
        self._httpd = make_server(
            host, port, app, server_class=_Server, handler_class=_QuietHandler
        )
        addr = self._httpd.server_address
        self.host: str = str(addr[0])
        self.port: int = int(addr[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"asyncmachine-metrics-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def addr(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """The full URL of the metrics page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (idempotent; blocks for up to ~50 ms)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"<MetricsServer {self.url} {state}>"


def serve_metrics(
    host: str = "127.0.0.1", port: int = 0, registry: CollectorRegistry | None = None
) -> MetricsServer:
    """
    Serve *registry* on ``http://host:port/metrics`` from a background thread.

    Args:
        host: the interface to bind; ``127.0.0.1`` by default (pass ``0.0.0.0`` or
            ``::`` explicitly to expose the metrics on the network).
        port: the port; 0 picks a free one (see :attr:`MetricsServer.port`).
        registry: the registry to serve; ``None`` means prometheus_client's default.

    Returns:
        The running server; ``close()`` it (or use ``with``) to stop.

    Raises:
        OSError: the address cannot be bound.
    """
    return MetricsServer(host, port, registry)
