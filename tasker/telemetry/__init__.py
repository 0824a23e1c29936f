"""Observability helpers: traces, metrics, log context and domain events.

Imports only the OpenTelemetry API and `tasker.config`/`tasker.messaging`, never
`tasker.state` or `tasker.actors`, so every layer (the worker side too) may use it.
"""
