"""flujo-otel: every Flujo run as an OpenTelemetry trace.

Kept empty on purpose: Flujo imports ``flujo_otel.plugin`` (and so this package) at every
startup. The pieces live in submodules: :mod:`flujo_otel.settings` (``[otel]``),
:mod:`flujo_otel.tracing` (the spans), :mod:`flujo_otel.records` (the run and step spans as
the hooks record them), :mod:`flujo_otel.scrub` (what leaves the process), :mod:`flujo_otel.ids`
(a run's trace id).
"""
