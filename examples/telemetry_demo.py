# Prometheus metrics for a machine, served on /metrics and read back over HTTP.
#
# It shows:
#   - one PrometheusTracer (in its own registry) observing a machine,
#   - serve_metrics(): a /metrics endpoint on 127.0.0.1 with a free port,
#   - what a scrape sees: transitions by result, state activity and ticks, handler
#     durations and the Exception counter,
#   - a Grafana dashboard generated from the same metric table.
#
# Run it:   python examples/telemetry_demo.py      (needs the `prometheus` extra)
# Then try:
#   - point Prometheus at the printed URL (see docs/telemetry.md) and keep the
#     process alive with a loop of mutations,
#   - write the dashboard to a file: python -m asyncmachine.telemetry.grafana
#     --ids door --states Open,Closed,Locked -o door.json
from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry

import asyncmachine as am
from asyncmachine.telemetry import PrometheusTracer, grafana_dashboard, serve_metrics

SCHEMA: dict[str, am.State] = {
    "Open": am.State(remove=["Closed"]),
    "Closed": am.State(remove=["Open"]),
    "Locked": am.State(require=["Closed"]),
}


class Door:
    """Handlers: locking takes a moment; opening a locked door is refused."""

    def Locked_state(self, e: am.Event) -> None:
        print("  the bolt slides in")

    def Open_enter(self, e: am.Event) -> bool:
        return not e.machine.is_active("Locked")

    def Open_state(self, e: am.Event) -> None:
        if e.args.get("force"):
            raise RuntimeError("the frame cracked")


def main() -> None:
    registry = CollectorRegistry()  # the default registry works too: registry=None
    tracer = PrometheusTracer(registry)
    door = am.Machine(SCHEMA, handlers=Door(), tracers=[tracer], id="door")

    print("mutations:")
    for op, states, args in [
        ("add", "Closed", None),
        ("add", "Locked", None),
        ("add", "Open", None),  # canceled: Open_enter refuses while Locked
        ("remove", "Locked", None),
        ("add", "Open", {"force": True}),  # Open_state raises: Exception
    ]:
        result = getattr(door, op)(states, args)
        print(f"  {op} {states}: {result}")

    with serve_metrics(registry=registry) as server:
        print(f"\nscraping {server.url}")
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            text = resp.read().decode()
    wanted = (
        "asyncmachine_transitions_total",
        "asyncmachine_exceptions_total",
        "asyncmachine_state_active",
        "asyncmachine_handler_duration_seconds_count",
    )
    for line in text.splitlines():
        if line.startswith(wanted):
            print(f"  {line}")

    dashboard = grafana_dashboard(["door"], SCHEMA, title="Door")
    panels = dashboard["panels"]
    assert isinstance(panels, list)
    print(f"\nGrafana dashboard {dashboard['title']!r}: {len(panels)} top-level panels")


if __name__ == "__main__":
    main()
