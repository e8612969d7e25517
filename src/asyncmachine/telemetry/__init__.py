"""
Telemetry: Prometheus metrics for machines and aRPC links, and Grafana dashboards.

``am.telemetry.PrometheusTracer(registry=None)`` is a tracer: attach it to any number
of machines and their series appear, labelled by ``machine_id``, under names starting
with ``asyncmachine_``. :func:`serve_metrics` serves a registry on ``/metrics``.
:func:`grafana_dashboard` builds a dashboard from the same metric table
(:data:`METRICS`). See ``docs/telemetry.md``.

The metric table and the Grafana generator need only the standard library;
:class:`PrometheusTracer`, :class:`MetricsServer` and :func:`serve_metrics` need the
``prometheus`` extra (``pip install 'asyncmachine[prometheus]'``) and raise an
:exc:`ImportError` naming it when prometheus_client is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._metrics import METRICS as METRICS, MetricSpec as MetricSpec, metric as metric

if TYPE_CHECKING:
    from ._prometheus import (
        MetricsServer as MetricsServer,
        PrometheusTracer as PrometheusTracer,
        serve_metrics as serve_metrics,
    )
    from .grafana import grafana_dashboard as grafana_dashboard

__all__ = (
    "METRICS",
    "MetricSpec",
    "MetricsServer",
    "PrometheusTracer",
    "grafana_dashboard",
    "metric",
    "serve_metrics",
)

_LAZY = {
    "MetricsServer": "._prometheus",
    "PrometheusTracer": "._prometheus",
    "serve_metrics": "._prometheus",
    "grafana_dashboard": ".grafana",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
