"""What a run reports, and where: ``sinks`` (the interface, JSONL, progress bar), ``prometheus``
(every process's ``/metrics`` and the scrape-targets file), ``tensorboard`` (event files in the run
directory), ``clock`` (a step's phases)."""

from dist_train.metrics.clock import StepClock
from dist_train.metrics.prometheus import MetricsConfig, PrometheusSink, start_prometheus
from dist_train.metrics.sinks import IntervalSink, JsonlSink, MetricsSink, ProgressBarSink, Sinks
from dist_train.metrics.tensorboard import start_tensorboard

__all__ = [
    "IntervalSink",
    "JsonlSink",
    "MetricsConfig",
    "MetricsSink",
    "ProgressBarSink",
    "PrometheusSink",
    "Sinks",
    "StepClock",
    "start_prometheus",
    "start_tensorboard",
]
