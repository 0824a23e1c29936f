"""Properties of DAG validation over random templates.

Edges only go from a lower to a higher index, so generated graphs are acyclic; the steps are
declared in a random order so declaration order and dependency order differ.
"""

from __future__ import annotations

import itertools
from typing import Any

import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tasker.state.templates import TaskTemplate, TemplateError, load_template_text

Dag = dict[str, list[str]]  # step -> the steps it depends on


@st.composite
def dags(draw: st.DrawFn) -> tuple[Dag, list[str]]:
    """(dependencies of each step, declaration order) for a random acyclic graph."""
    size = draw(st.integers(min_value=1, max_value=12))
    names = [f"s{index}" for index in range(size)]
    graph: Dag = {name: [] for name in names}
    for later in range(size):
        for earlier in range(later):
            if draw(st.booleans()):
                graph[names[later]].append(names[earlier])
    return graph, draw(st.permutations(names))


def load_dag(graph: Dag, declared: list[str]) -> TaskTemplate:
    steps: list[dict[str, Any]] = [
        {"name": name, "handler": {"callable": f"h.{name}"}, "dependencies": graph[name]}
        for name in declared
    ]
    doc = {"name": "dag", "namespace_name": "props", "version": "1.0.0", "steps": steps}
    return load_template_text(yaml.safe_dump(doc), source="dag.yaml")


def reaches(graph: Dag, start: str, goal: str) -> bool:
    """Whether `start` depends on `goal`, directly or through other steps."""
    seen: set[str] = set()
    pending = [start]
    while pending:
        node = pending.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            pending.extend(graph[node])
    return False


@settings(max_examples=100, deadline=None)
@given(dags())
def test_acyclic_graphs_are_accepted_and_ordered_by_every_edge(dag: tuple[Dag, list[str]]) -> None:
    graph, declared = dag

    order = load_dag(graph, declared).topological_order()

    assert sorted(order) == sorted(declared)
    position = {name: index for index, name in enumerate(order)}
    for step, dependencies in graph.items():
        for dependency in dependencies:
            assert position[dependency] < position[step]


@settings(max_examples=100, deadline=None)
@given(dags())
def test_topological_order_picks_the_earliest_declared_ready_step(
    dag: tuple[Dag, list[str]],
) -> None:
    graph, declared = dag

    order = load_dag(graph, declared).topological_order()

    for index, name in enumerate(order):
        done = set(order[:index])
        ready = [s for s in declared if s not in done and set(graph[s]) <= done]
        assert name == ready[0]


@settings(max_examples=100, deadline=None)
@given(dags(), st.data())
def test_one_back_edge_is_rejected_as_a_named_cycle(
    dag: tuple[Dag, list[str]], data: st.DataObject
) -> None:
    graph, declared = dag
    pairs = [(a, b) for a in graph for b in graph if a != b and reaches(graph, b, a)]
    assume(pairs)
    earlier, later = data.draw(st.sampled_from(pairs))  # `later` depends on `earlier`
    graph[earlier] = [*graph[earlier], later]  # the back edge closes a cycle

    try:
        load_dag(graph, declared)
    except TemplateError as error:
        cycles = [cycle_in(problem.message) for problem in error.problems]
    else:
        raise AssertionError("a cyclic template was accepted")

    assert cycles and all(cycle is not None for cycle in cycles)
    for cycle in cycles:
        assert cycle is not None
        assert cycle[0] == cycle[-1]
        assert {earlier, later} <= set(cycle)
        for step, dependency in itertools.pairwise(cycle):
            assert dependency in graph[step]


def cycle_in(message: str) -> list[str] | None:
    """The step names of "dependency cycle a -> b -> a (...)", or None for other messages."""
    prefix = "dependency cycle "
    if not message.startswith(prefix):
        return None
    return message.removeprefix(prefix).split(" (", 1)[0].split(" -> ")
