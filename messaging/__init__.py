"""Messaging: one Broker interface, its backends (PGMQ, RabbitMQ, in-memory) and wire messages.

Depends on neither `actors` nor `handlers`; nothing outside `messaging/pgmq*` may assume PGMQ.
"""
