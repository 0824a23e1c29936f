"""RabbitMQ is not transactional with PostgreSQL: a step committed as enqueued whose publish
was lost (a crash between commit and confirm) is found and re-published by the sweeper."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tasker.actors.messages import RepublishUnconfirmed
from tasker.actors.step_enqueuer import StepEnqueuer
from tasker.cli.commands import prepare_database, register_templates
from tasker.config import load_config
from tasker.examples import TEMPLATE_DIRECTORY
from tasker.ids import new_id
from tasker.messaging.backends import broker_from_config
from tasker.messaging.messages import StepMessage, decode, worker_queue
from tasker.state.db import Database
from tasker.state.repository import StateRepository, TaskSpec
from tasker.state.templates import load_template_directory

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def test_a_claimed_step_whose_publish_was_lost_is_republished_once(
    make_database: Callable[[], str], request: pytest.FixtureRequest
) -> None:
    vhost_url = request.getfixturevalue("make_vhost")(request)
    config = load_config(
        overrides={
            "database_url": make_database(),
            "broker": "rabbitmq",
            "rabbitmq_url": vhost_url,
        },
        environ={},
    )
    prepare_database(config)
    register_templates(config, load_template_directory(TEMPLATE_DIRECTORY))
    database = Database(config.database_url)
    repository = StateRepository(database)
    broker = broker_from_config(config)
    queue = worker_queue("examples")
    broker.ensure_queue(queue)
    enqueuer = StepEnqueuer.start(broker, database, repository)
    try:
        # Given a root step claimed for a non-transactional broker, and the process died
        # before publishing it
        registered = repository.get_template("examples", "linear_workflow", "1.0.0")
        with database.transaction() as unit:
            creation = repository.create_task(unit, registered, TaskSpec(task_uuid=new_id()))
            claimed = repository.claim_steps(unit, creation.ready_steps, published=False)
        assert broker.receive(queue, wait=0.2) == []

        # When the sweeper asks for unconfirmed publishes
        enqueuer.ask(RepublishUnconfirmed(older_than=0.0))

        # Then the step's message for the same attempt is on the queue
        deliveries = broker.receive(queue, max_messages=5, wait=5.0)
        messages = [decode(d.body) for d in deliveries]
        assert [(m.step_uuid, m.attempt) for m in messages if isinstance(m, StepMessage)] == [
            (claimed[0].step_uuid, 1)
        ]
        # And once confirmed it is not sent again
        enqueuer.ask(RepublishUnconfirmed(older_than=0.0))
        assert broker.receive(queue, wait=0.5) == []
    finally:
        enqueuer.stop()
        broker.close()
        database.close()
