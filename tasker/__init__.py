"""Tasker for Python: DAG workflows of Python step handlers on PostgreSQL, PGMQ or RabbitMQ.

The architecture lives in the repository's top-level folders (`actors/`, `messaging/`,
`state/`, `handlers/`); this package maps them into the single `tasker` namespace.
"""

__version__ = "0.1.0"
