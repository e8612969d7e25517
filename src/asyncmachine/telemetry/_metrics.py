"""
The metric table: every metric :mod:`asyncmachine.telemetry` exports, as data.

This table is the single source of truth: the Prometheus collector builds its metric
families from it, the Grafana generator builds its queries and panel descriptions
from it, and ``docs/telemetry.md`` lists the same rows (a test checks that). It
imports nothing outside the standard library, so the Grafana generator works without
the ``prometheus`` extra.

Rules: every name starts with ``asyncmachine_``; a name carries its unit as a suffix
(``_seconds``, ``_bytes``); counters are named without ``_total`` (Prometheus adds it
to the series, see :attr:`MetricSpec.series`); every series has a ``machine_id``
label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

__all__ = (
    "DURATION_BUCKETS",
    "METRICS",
    "PREFIX",
    "MetricGroup",
    "MetricKind",
    "MetricSpec",
    "metric",
)

MetricKind: TypeAlias = Literal["counter", "gauge", "histogram"]
#: ``machine``: from the tracer (per traced machine); ``rpc``: from tracked aRPC
#: servers and clients (``machine_id`` is then the RPC machine: ``rm-*`` or ``rc-*``).
MetricGroup: TypeAlias = Literal["machine", "rpc"]

PREFIX: Final = "asyncmachine_"

#: Upper bounds (seconds) of the duration histograms: transitions and handlers are
#: usually microseconds, a blocking handler can take seconds.
DURATION_BUCKETS: Final = (
    0.00001,
    0.00005,
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """
    One metric family.

    Attributes:
        name: the family name (counters without ``_total``, units included).
        kind: ``counter``, ``gauge`` or ``histogram``.
        help: the help text Prometheus shows.
        unit: the base unit the name ends with (``seconds``, ``bytes``) or ``""``.
        labels: label names, ``machine_id`` first.
        group: ``machine`` (tracer) or ``rpc`` (tracked servers and clients).
        buckets: upper bounds of a histogram's buckets (``+Inf`` is implied).
    """

    name: str
    kind: MetricKind
    help: str
    unit: str = ""
    labels: tuple[str, ...] = ("machine_id",)
    group: MetricGroup = "machine"
    buckets: tuple[float, ...] = ()

    @property
    def series(self) -> str:
        """
        The series name to query: ``<name>_total`` for a counter, ``<name>_bucket``
        for a histogram, the name itself for a gauge.
        """
        if self.kind == "counter":
            return f"{self.name}_total"
        if self.kind == "histogram":
            return f"{self.name}_bucket"
        return self.name


_RPC: Final = ("machine_id", "role")

#: Every exported metric, in documentation order.
METRICS: Final[tuple[MetricSpec, ...]] = (
    # --- machines (PrometheusTracer) ---------------------------------------------
    MetricSpec(
        "asyncmachine_transitions",
        "counter",
        "Completed transitions by result (executed or canceled); "
        "can_add/can_remove checks are not counted.",
        labels=("machine_id", "result"),
    ),
    MetricSpec(
        "asyncmachine_transition_duration_seconds",
        "histogram",
        "Wall time of a transition, from the start of negotiation to its end.",
        unit="seconds",
        buckets=DURATION_BUCKETS,
    ),
    MetricSpec(
        "asyncmachine_exceptions",
        "counter",
        "Activations of the Exception state (handler errors and add_err).",
    ),
    MetricSpec(
        "asyncmachine_mutations",
        "counter",
        "Mutations that entered the queue (auto and Exception mutations included).",
    ),
    MetricSpec(
        "asyncmachine_queue_length",
        "gauge",
        "Mutations waiting in the queue (read at scrape time).",
    ),
    MetricSpec(
        "asyncmachine_states",
        "gauge",
        "Number of states in the machine's schema, Exception included.",
    ),
    MetricSpec(
        "asyncmachine_state_active",
        "gauge",
        "1 while the state is active, else 0.",
        labels=("machine_id", "state"),
    ),
    MetricSpec(
        "asyncmachine_state_tick",
        "gauge",
        "The state's tick: odd while active, +1 on every activation and deactivation.",
        labels=("machine_id", "state"),
    ),
    MetricSpec(
        "asyncmachine_handler_duration_seconds",
        "histogram",
        "Wall time of handler calls, by handler method name.",
        unit="seconds",
        labels=("machine_id", "handler"),
        buckets=DURATION_BUCKETS,
    ),
    # --- aRPC (PrometheusTracer.track_server / track_client) -----------------------
    MetricSpec(
        "asyncmachine_rpc_frames",
        "counter",
        "aRPC frames sent (out) and received (in), by frame kind.",
        labels=(*_RPC, "direction", "kind"),
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_bytes",
        "counter",
        "aRPC bytes of whole frames sent and received (length prefix included), "
        "by frame kind.",
        unit="bytes",
        labels=(*_RPC, "direction", "kind"),
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_connections",
        "gauge",
        "Open connections: a server's live sessions; 1 or 0 for a client.",
        labels=_RPC,
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_reconnects",
        "counter",
        "Reconnections of a client after a lost connection.",
        labels=_RPC,
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_syncs",
        "counter",
        "Full clock syncs (Go's MetricSync): done by a client, answered by a server.",
        labels=_RPC,
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_clock_updates",
        "counter",
        "Clock updates (pushes and replies) a client applied to its mirror.",
        labels=_RPC,
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_clock_errors",
        "counter",
        "Clock updates a client refused (checksum mismatch or gap); each one "
        "triggers a full sync.",
        labels=_RPC,
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_pending_requests",
        "gauge",
        "Requests waiting for a reply: a client's mutations, syncs and remote "
        "waits; a server's unacknowledged payloads.",
        labels=_RPC,
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_pending_waits",
        "gauge",
        "Remote waits (when_args) a server runs for its clients.",
        labels=_RPC,
        group="rpc",
    ),
    MetricSpec(
        "asyncmachine_rpc_slow_consumer_closes",
        "counter",
        "Connections closed because a write to the peer stalled (slow consumer).",
        labels=_RPC,
        group="rpc",
    ),
)

_BY_NAME: Final[Mapping[str, MetricSpec]] = MappingProxyType(
    {m.name: m for m in METRICS}
)


def metric(name: str) -> MetricSpec:
    """
    The spec of the metric family *name* (with or without the ``asyncmachine_``
    prefix).

    Raises:
        KeyError: no such metric.
    """
    spec = _BY_NAME.get(name) or _BY_NAME.get(PREFIX + name)
    if spec is None:
        raise KeyError(f"no metric named {name!r}")
    return spec
