"""The example gallery end to end: orchestrator and worker processes on real PostgreSQL, on
each broker. Every example must create exactly its expected steps and produce exact
results; the batch example also runs at 10,000 rows (50 batches) and with none."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tasker.cli.commands import register_templates
from tasker.client import TaskerApiError
from tasker.examples import HANDLER_MODULES
from tasker.state.templates import HandlerDefinition, StepDefinition, TaskTemplate
from tests.acceptance.conftest import BROKERS, RunningCluster, running_cluster
from tests.gallery_expectations import GALLERY, batch_csv, check


@pytest.fixture(scope="module", params=BROKERS)
def gallery_cluster(
    request: pytest.FixtureRequest, make_database: Callable[[], str]
) -> Iterator[RunningCluster]:
    yield from running_cluster(request, make_database, HANDLER_MODULES)


@pytest.mark.parametrize("example", sorted(GALLERY))
def test_gallery_example_creates_its_steps_and_exact_results(
    gallery_cluster: RunningCluster, example: str
) -> None:
    expected = GALLERY[example]
    client = gallery_cluster.client

    task = client.create_task("examples", expected.template, "1.0.0", expected.context)
    view = client.wait(task, timeout=120)

    check(expected, view.status, {step.name: step for step in view.steps})


def test_a_10000_row_batch_completes_in_50_batches(gallery_cluster: RunningCluster) -> None:
    expected = batch_csv(10_000)
    client = gallery_cluster.client

    task = client.create_task("examples", expected.template, "1.0.0", expected.context)
    view = client.wait(task, timeout=300)

    check(expected, view.status, {step.name: step for step in view.steps})
    assert len(view.steps) == 52


def test_a_context_that_breaks_the_input_schema_is_rejected_at_creation(
    gallery_cluster: RunningCluster,
) -> None:
    client = gallery_cluster.client

    with pytest.raises(TaskerApiError) as rejected:
        client.create_task("examples", "conditional_approval", "1.0.0", {"amount": -5})

    message = str(rejected.value)
    assert "'requester' is a required property" in message
    assert "context.amount" in message


def fan_out_fan_in(width: int) -> TaskTemplate:
    """root -> `width` parallel leaves -> one sink joining them all (width + 2 steps)."""
    leaves = tuple(f"leaf_{i:04d}" for i in range(width))
    power = "examples.math.power"
    steps = (
        StepDefinition("root", HandlerDefinition(power, initialization={"exponent": 1})),
        *(
            StepDefinition(
                leaf,
                HandlerDefinition(power, initialization={"input": "root", "exponent": 1}),
                dependencies=("root",),
            )
            for leaf in leaves
        ),
        StepDefinition(
            "sink",
            HandlerDefinition("examples.math.sum", initialization={"inputs": list(leaves)}),
            dependencies=leaves,
        ),
    )
    return TaskTemplate(f"fan_{width}", "examples", "1.0.0", steps)


def test_a_1000_step_fan_out_fan_in_completes(gallery_cluster: RunningCluster) -> None:
    register_templates(gallery_cluster.config, [fan_out_fan_in(1000)])
    client = gallery_cluster.client

    task = client.create_task("examples", "fan_1000", "1.0.0", {"even_number": 2})
    view = client.wait(task, timeout=300)

    assert view.status == "complete"
    assert len(view.steps) == 1002
    assert {step.name: step for step in view.steps}["sink"].results == {"result": 2000}
