"""
Grafana dashboards for the metrics of :mod:`asyncmachine.telemetry`.

:func:`grafana_dashboard` returns a dashboard JSON model (a plain ``dict``, no SDK)
built from the metric table (:data:`asyncmachine.telemetry.METRICS`): every query and
panel description comes from it. Like Go's ``am-gen grafana`` it takes machine ids
and a schema; unlike it, one dashboard serves any number of machines through the
template variables ``job``, ``machine_id`` (multi-select) and ``rpc_id``, and the
per-machine row repeats for every selected machine.

Command line (writes the JSON to a file or stdout)::

    python -m asyncmachine.telemetry.grafana --ids root,worker \\
        --schema myapp.states:SCHEMA --title "My app" -o dashboard.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeAlias

from .._core._schema import EXCEPTION
from .._typed import Schema
from ._metrics import MetricSpec, metric

__all__ = ("SchemaArg", "grafana_dashboard", "main")

#: What :func:`grafana_dashboard` accepts as a schema: a schema mapping, a typed
#: :class:`~asyncmachine.Schema` class, or state names.
SchemaArg: TypeAlias = Mapping[str, object] | type[Schema] | Iterable[str]

_DS: Final = {"type": "prometheus", "uid": "${datasource}"}
_RATE: Final = "$__rate_interval"
_SEL: Final = 'job=~"$job", machine_id=~"$machine_id"'
_RPC_SEL: Final = 'job=~"$job", machine_id=~"$rpc_id"'
_WIDTH: Final = 24
_HEIGHT: Final = 8


def _state_names(schema: SchemaArg | None) -> list[str]:
    if schema is None:
        return []
    if isinstance(schema, str):
        raise TypeError("schema must be a mapping, a Schema class or a list of names")
    if isinstance(schema, type) and issubclass(schema, Schema):
        names = list(schema.schema())
    else:
        names = [str(n) for n in schema]
    if names and EXCEPTION not in names:
        names.append(EXCEPTION)
    return names


def _promql_regex(names: Iterable[str]) -> str:
    """An alternation of *names*, escaped as a regex and then as a PromQL string."""
    pattern = "|".join(re.escape(n) for n in names)
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


def _unit(spec: MetricSpec, rate: bool) -> str:
    if spec.unit == "seconds":
        return "s"
    if spec.unit == "bytes":
        return "Bps" if rate else "bytes"
    return "ops" if rate else "short"


def _rate(spec: MetricSpec, sel: str, by: str) -> str:
    return f"sum by ({by}) (rate({spec.series}{{{sel}}}[{_RATE}]))"


def _quantile(q: float, spec: MetricSpec, sel: str, by: str) -> str:
    inner = f"sum by ({by}, le) (rate({spec.series}{{{sel}}}[{_RATE}]))"
    return f"histogram_quantile({q}, {inner})"


class _Builder:
    """Lays panels out on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[dict[str, object]] = []
        self._id = 0
        self._y = 0
        self._x = 0
        self._row: dict[str, object] | None = None

    def _next_id(self) -> int:
        self._id += 1
        return self._id

    def row(
        self, title: str, *, collapsed: bool = False, repeat: str | None = None
    ) -> None:
        if self._x:
            self._y += _HEIGHT
            self._x = 0
        row: dict[str, object] = {
            "id": self._next_id(),
            "type": "row",
            "title": title,
            "collapsed": collapsed,
            "gridPos": {"x": 0, "y": self._y, "w": _WIDTH, "h": 1},
            "panels": [],
        }
        if repeat is not None:
            row["repeat"] = repeat
        self.panels.append(row)
        self._row = row if collapsed else None
        self._y += 1

    def panel(
        self,
        title: str,
        targets: Sequence[tuple[str, str]],
        specs: Sequence[MetricSpec],
        *,
        rate: bool = False,
        kind: str = "timeseries",
        width: int = 12,
        unit: str | None = None,
    ) -> None:
        if self._x + width > _WIDTH:
            self._y += _HEIGHT
            self._x = 0
        description = " ".join(f"{s.series}: {s.help}" for s in specs)
        panel: dict[str, object] = {
            "id": self._next_id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": _DS,
            "gridPos": {"x": self._x, "y": self._y, "w": width, "h": _HEIGHT},
            "targets": [
                {
                    "refId": chr(ord("A") + i),
                    "datasource": _DS,
                    "expr": expr,
                    "legendFormat": legend,
                    "range": True,
                }
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {
                "defaults": {"unit": unit or _unit(specs[0], rate)},
                "overrides": [],
            },
            "options": {
                "legend": {
                    "displayMode": "list",
                    "placement": "bottom",
                    "showLegend": True,
                },
                "tooltip": {"mode": "multi", "sort": "desc"},
            },
        }
        if kind == "state-timeline":
            panel["fieldConfig"] = {
                "defaults": {
                    "unit": "short",
                    "color": {"mode": "thresholds"},
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [
                            {"color": "transparent", "value": None},
                            {"color": "green", "value": 1},
                        ],
                    },
                    "mappings": [
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "inactive"},
                                "1": {"text": "active"},
                            },
                        }
                    ],
                },
                "overrides": [],
            }
            panel["options"] = {
                "showValue": "never",
                "mergeValues": True,
                "rowHeight": 0.8,
                "legend": {"showLegend": False},
            }
        if self._row is not None:
            nested = self._row["panels"]
            assert isinstance(nested, list)
            nested.append(panel)
        else:
            self.panels.append(panel)
        self._x += width
        if self._x >= _WIDTH:
            self._x = 0
            self._y += _HEIGHT


def _variables(ids: list[str], job: str | None) -> list[dict[str, object]]:
    def query_var(
        name: str, label: str, query: str, all_value: str | None
    ) -> dict[str, object]:
        var: dict[str, object] = {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": _DS,
            "definition": query,
            "query": {"query": query, "refId": f"{name}-variable"},
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
            "hide": 0,
        }
        if all_value is not None:
            var["allValue"] = all_value
        return var

    variables: list[dict[str, object]] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        },
        query_var("job", "Job", f"label_values({metric('states').name}, job)", ".+"),
    ]
    if job is not None:
        variables[1]["current"] = {"selected": True, "text": [job], "value": [job]}
    if ids:
        escaped = [i.replace(",", "\\,") for i in ids]
        variables.append(
            {
                "name": "machine_id",
                "label": "Machine",
                "type": "custom",
                "query": ",".join(escaped),
                "options": [{"selected": False, "text": i, "value": i} for i in ids],
                "multi": True,
                "includeAll": True,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "hide": 0,
            }
        )
    else:
        variables.append(
            query_var(
                "machine_id",
                "Machine",
                f'label_values({metric("states").name}{{job=~"$job"}}, machine_id)',
                None,
            )
        )
    variables.append(
        query_var(
            "rpc_id",
            "aRPC endpoint",
            f'label_values({metric("rpc_connections").name}{{job=~"$job"}}, '
            "machine_id)",
            ".*",
        )
    )
    return variables


def grafana_dashboard(
    machine_ids: Iterable[str] = (),
    schema: SchemaArg | None = None,
    *,
    title: str = "asyncmachine",
    job: str | None = None,
    uid: str | None = None,
    refresh: str = "5s",
    time_from: str = "now-5m",
) -> dict[str, object]:
    """
    A Grafana dashboard (JSON model) for machines exported by ``PrometheusTracer``.

    Args:
        machine_ids: the ids offered by the ``machine_id`` variable; empty means all
            ids Prometheus knows for the selected job.
        schema: the machines' schema (a mapping, a typed ``Schema`` class or state
            names); the per-machine state panels show these states (``Exception``
            added). ``None`` shows every state.
        title: the dashboard title; the uid is derived from it unless *uid* is given.
        job: the Prometheus job selected by default (all jobs otherwise).
        uid: the dashboard uid (at most 40 characters).
        refresh: the auto-refresh interval.
        time_from: the start of the default time range.

    Returns:
        A JSON-serialisable dict; import it in Grafana (Dashboards, New, Import) or
        POST ``{"dashboard": ..., "overwrite": true}`` to ``/api/dashboards/db``.

    Raises:
        TypeError: *schema* is a plain string.
    """
    ids = list(dict.fromkeys(machine_ids))
    names = _state_names(schema)
    state_sel = _SEL
    if names:
        state_sel = f'{_SEL}, state=~"{_promql_regex(names)}"'

    tx = metric("transitions")
    tx_time = metric("transition_duration_seconds")
    exc = metric("exceptions")
    muts = metric("mutations")
    queue = metric("queue_length")
    states = metric("states")
    active = metric("state_active")
    tick = metric("state_tick")
    handler = metric("handler_duration_seconds")

    b = _Builder()
    b.row("Machines")
    b.panel(
        "Transitions / s",
        [(_rate(tx, _SEL, "machine_id, result"), "{{machine_id}} {{result}}")],
        [tx],
        rate=True,
    )
    b.panel(
        "Exceptions / s",
        [(_rate(exc, _SEL, "machine_id"), "{{machine_id}}")],
        [exc],
        rate=True,
    )
    b.panel(
        "Transition time",
        [
            (_quantile(0.5, tx_time, _SEL, "machine_id"), "{{machine_id}} p50"),
            (_quantile(0.95, tx_time, _SEL, "machine_id"), "{{machine_id}} p95"),
        ],
        [tx_time],
    )
    b.panel(
        "Slowest handlers (p95, top 10)",
        [
            (
                f"topk(10, {_quantile(0.95, handler, _SEL, 'machine_id, handler')})",
                "{{machine_id}} {{handler}}",
            )
        ],
        [handler],
    )
    b.panel(
        "Mutations / s",
        [(_rate(muts, _SEL, "machine_id"), "{{machine_id}}")],
        [muts],
        rate=True,
    )
    b.panel(
        "Queue length and active states",
        [
            (f"max by (machine_id) ({queue.series}{{{_SEL}}})", "{{machine_id}} queue"),
            (
                f"sum by (machine_id) ({active.series}{{{_SEL}}})",
                "{{machine_id}} active",
            ),
            (
                f"max by (machine_id) ({states.series}{{{_SEL}}})",
                "{{machine_id}} states",
            ),
        ],
        [queue, active, states],
    )

    b.row("Machine $machine_id", repeat="machine_id")
    b.panel(
        "Active states",
        [(f"max by (state) ({active.series}{{{state_sel}}})", "{{state}}")],
        [active],
        kind="state-timeline",
        width=_WIDTH,
    )
    b.panel(
        "State ticks",
        [(f"max by (state) ({tick.series}{{{state_sel}}})", "{{state}}")],
        [tick],
        width=_WIDTH,
    )

    frames = metric("rpc_frames")
    nbytes = metric("rpc_bytes")
    conns = metric("rpc_connections")
    recon = metric("rpc_reconnects")
    syncs = metric("rpc_syncs")
    clocks = metric("rpc_clock_updates")
    clock_err = metric("rpc_clock_errors")
    slow = metric("rpc_slow_consumer_closes")
    pending = metric("rpc_pending_requests")
    waits = metric("rpc_pending_waits")

    b.row("aRPC", collapsed=True)
    b.panel(
        "Frames / s",
        [
            (
                _rate(frames, _RPC_SEL, "machine_id, direction, kind"),
                "{{machine_id}} {{direction}} {{kind}}",
            )
        ],
        [frames],
        rate=True,
    )
    b.panel(
        "Bytes / s",
        [
            (
                _rate(nbytes, _RPC_SEL, "machine_id, direction"),
                "{{machine_id}} {{direction}}",
            )
        ],
        [nbytes],
        rate=True,
    )
    b.panel(
        "Connections",
        [(f"max by (machine_id) ({conns.series}{{{_RPC_SEL}}})", "{{machine_id}}")],
        [conns],
    )
    b.panel(
        "Pending requests and waits",
        [
            (
                f"max by (machine_id) ({pending.series}{{{_RPC_SEL}}})",
                "{{machine_id}} requests",
            ),
            (
                f"max by (machine_id) ({waits.series}{{{_RPC_SEL}}})",
                "{{machine_id}} waits",
            ),
        ],
        [pending, waits],
    )
    b.panel(
        "Clock updates / s",
        [(_rate(clocks, _RPC_SEL, "machine_id"), "{{machine_id}}")],
        [clocks],
        rate=True,
    )
    b.panel(
        "Recovery events / s",
        [
            (_rate(spec, _RPC_SEL, "machine_id"), f"{{{{machine_id}}}} {label}")
            for spec, label in (
                (recon, "reconnects"),
                (syncs, "syncs"),
                (clock_err, "clock errors"),
                (slow, "slow-consumer closes"),
            )
        ],
        [recon, syncs, clock_err, slow],
        rate=True,
    )

    digest = hashlib.sha256(title.encode()).hexdigest()[:12]
    return {
        "title": title,
        "uid": uid if uid is not None else f"asyncmachine-{digest}",
        "description": "Generated by asyncmachine.telemetry.grafana from the "
        "asyncmachine metric table.",
        "tags": ["asyncmachine", "generated"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": _variables(ids, job)},
        "panels": b.panels,
    }


def _load_schema(ref: str) -> SchemaArg:
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--schema needs MODULE:ATTRIBUTE, got {ref!r}")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, type) and issubclass(obj, Schema):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): v for k, v in obj.items()}
    raise ValueError(f"{ref} is neither a schema mapping nor a Schema class")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Write a dashboard as JSON; returns the exit status (0, or 2 for bad arguments).
    """
    parser = argparse.ArgumentParser(
        prog="python -m asyncmachine.telemetry.grafana",
        description="Generate a Grafana dashboard for asyncmachine metrics.",
    )
    parser.add_argument("--ids", default="", help="machine ids, comma-separated")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--schema", help="MODULE:ATTRIBUTE of a schema mapping or Schema class"
    )
    group.add_argument("--states", help="state names, comma-separated")
    parser.add_argument("--title", default="asyncmachine", help="dashboard title")
    parser.add_argument("--job", help="the Prometheus job selected by default")
    parser.add_argument("--uid", help="dashboard uid (default: from the title)")
    parser.add_argument("-o", "--output", help="output file (default: stdout)")
    args = parser.parse_args(argv)

    schema: SchemaArg | None = None
    if args.schema:
        try:
            schema = _load_schema(args.schema)
        except (ImportError, AttributeError, ValueError) as exc:
            sys.stderr.write(f"error: cannot load --schema {args.schema}: {exc}\n")
            return 2
    elif args.states:
        schema = [s.strip() for s in args.states.split(",") if s.strip()]
    ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    dashboard = grafana_dashboard(
        ids, schema, title=args.title, job=args.job, uid=args.uid
    )
    text = json.dumps(dashboard, indent=2) + "\n"
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            sys.stderr.write(f"error: cannot write {args.output}: {exc}\n")
            return 2
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
