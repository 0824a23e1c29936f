"""Task templates: loading Tasker's YAML format, rejecting bad templates clearly, storage."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasker.state.templates import (
    RetryPolicy,
    TaskTemplate,
    TemplateError,
    find_cycles,
    load_template_directory,
    load_template_file,
    load_template_text,
    template_from_json,
    template_to_json,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"
SOURCE = "examples/x.yaml"


def step(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    handler = fields.pop("handler", {"callable": f"tests.{name}"})
    return {"name": name, "handler": handler, "dependencies": list(deps), **fields}


def document(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    default_steps = [step("a"), step("b", "a"), step("c", "b")]
    return {
        "name": "t",
        "namespace_name": "tests",
        "version": "1.2.3",
        "steps": list(steps) or default_steps,
        **fields,
    }


def load(doc: dict[str, Any], env: str | None = None) -> TaskTemplate:
    return load_template_text(yaml.safe_dump(doc, sort_keys=False), source=SOURCE, env=env)


def rejection(doc: dict[str, Any]) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        load(doc)
    return caught.value


def messages(error: TemplateError) -> list[str]:
    return [str(problem) for problem in error.problems]


# --- The examples ------------------------------------------------------------------------


def test_linear_example_is_a_chain_of_four_steps() -> None:
    template = load_template_file(EXAMPLES / "linear_workflow.yaml")

    assert template.identity == "examples/linear_workflow@1.0.0"
    assert template.topological_order() == tuple(f"linear_step_{i}" for i in range(1, 5))
    assert template.parents("linear_step_3") == ("linear_step_2",)
    assert template.step("linear_step_1").handler.callable == "examples.linear.step_1"
    assert template.step("linear_step_1").handler.initialization == {"exponent": 2}


def test_diamond_example_fans_out_and_joins() -> None:
    template = load_template_file(EXAMPLES / "diamond_workflow.yaml")

    assert template.identity == "examples/diamond_workflow@1.0.0"
    assert template.parents("diamond_end") == ("diamond_branch_b", "diamond_branch_c")
    assert template.children("diamond_start") == ("diamond_branch_b", "diamond_branch_c")
    assert template.topological_order()[0] == "diamond_start"
    assert template.topological_order()[-1] == "diamond_end"


def test_example_directory_loads_every_template() -> None:
    identities = {template.identity for template in load_template_directory(EXAMPLES)}

    assert {"examples/linear_workflow@1.0.0", "examples/diamond_workflow@1.0.0"} <= identities


# --- Model defaults and helpers ----------------------------------------------------------


def test_defaults_follow_tasker() -> None:
    template = load(document())
    first = template.step("a")

    assert first.type == "standard"
    assert first.handler.method == "call"
    assert first.handler.resolver is None
    assert first.retry == RetryPolicy(retryable=True)
    assert first.timeout_seconds is None
    assert template.step_names == ("a", "b", "c")


def test_retry_resolved_fills_only_unset_fields_from_config_defaults() -> None:
    policy = RetryPolicy(max_attempts=7, backoff="linear")

    resolved = policy.resolved(3, "exponential", 1000, 30000)

    assert resolved == RetryPolicy(True, 7, "linear", 1000, 30000)


def test_depends_on_is_accepted_as_dependencies() -> None:
    doc = document({"name": "a", "handler": {"callable": "x"}}, {**step("b"), "depends_on": ["a"]})
    del doc["steps"][1]["dependencies"]

    assert load(doc).parents("b") == ("a",)


def test_dependencies_and_depends_on_together_are_rejected() -> None:
    doc = document(step("a"), {**step("b", "a"), "depends_on": ["a"]})

    assert "step 'b': field 'dependencies'" in str(rejection(doc))


def test_topological_order_follows_declaration_order_among_ready_steps() -> None:
    doc = document(step("z"), step("y", "x"), step("x"), step("w", "z"))

    assert load(doc).topological_order() == ("z", "x", "y", "w")


def test_step_lookup_names_the_known_steps() -> None:
    with pytest.raises(KeyError, match="steps: a, b, c"):
        load(document()).step("nope")


# --- Rejections: each names the file, the step and the field -----------------------------


def test_wrong_type_names_step_by_name_and_nested_field() -> None:
    doc = document(step("a"), step("b"), step("charge", retry={"max_attempts": "three"}))

    error = rejection(doc)

    assert str(error) == (
        "examples/x.yaml: step 'charge': field 'retry.max_attempts': expected int, got str"
    )
    assert (error.source, error.step, error.field) == (SOURCE, "charge", "retry.max_attempts")


def test_type_errors_in_several_steps_are_all_reported() -> None:
    doc = document(step("a", timeout_seconds="soon"), step("b", type="magic"))

    found = messages(rejection(doc))

    assert found[0] == (
        "examples/x.yaml: step 'a': field 'timeout_seconds': expected float, got str"
    )
    assert found[1].startswith("examples/x.yaml: step 'b': field 'type': invalid value 'magic'")
    assert "standard, decision" in found[1]


def test_missing_required_fields_are_named() -> None:
    doc = document(step("a"), {"name": "b", "handler": {"method": "run"}})
    del doc["namespace_name"]

    found = messages(rejection(doc))

    assert "examples/x.yaml: field 'namespace_name': missing required field" in found
    assert "examples/x.yaml: step 'b': field 'handler.callable': missing required field" in found


def test_missing_steps_is_named() -> None:
    doc = document()
    del doc["steps"]

    assert str(rejection(doc)) == "examples/x.yaml: field 'steps': missing required field"


def test_empty_steps_are_rejected() -> None:
    doc = document()
    doc["steps"] = []

    assert "field 'steps': a template needs at least one step" in str(rejection(doc))


def test_duplicate_step_names_are_rejected() -> None:
    error = rejection(document(step("a"), step("b", "a"), step("a")))

    assert error.step == "a"
    assert "step 'a': field 'name': duplicate step name" in str(error)


def test_unknown_dependency_names_the_step_and_the_dependency() -> None:
    error = rejection(document(step("a"), step("b", "a", "ghost")))

    assert (error.step, error.field) == ("b", "dependencies")
    assert "depends on unknown step 'ghost'" in str(error)


def test_self_dependency_is_rejected() -> None:
    error = rejection(document(step("a", "a")))

    assert "step 'a': field 'dependencies': a step cannot depend on itself" in str(error)


def test_cycle_is_named_in_order() -> None:
    error = rejection(document(step("a", "c"), step("b", "a"), step("c", "b"), step("d", "c")))

    assert (error.step, error.field) == ("a", "dependencies")
    assert "dependency cycle a -> c -> b -> a" in str(error)


def test_every_separate_cycle_is_reported() -> None:
    doc = document(step("a", "b"), step("b", "a"), step("c", "d"), step("d", "c"))

    found = [problem.message for problem in rejection(doc).problems]

    assert any("a -> b -> a" in message for message in found)
    assert any("c -> d -> c" in message for message in found)


def test_valid_template_has_no_cycles() -> None:
    assert find_cycles(load(document())) == []


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "latest", 1.0])
def test_invalid_version_is_rejected(version: object) -> None:
    error = rejection(document(version=version))

    assert error.field == "version"
    assert "expected a semantic version like 1.0.0" in str(error)


def test_semver_prerelease_version_is_accepted() -> None:
    assert load(document(version="2.0.0-rc.1")).version == "2.0.0-rc.1"


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts", "must be at least 1, got 0"),
        ({"retry": {"backoff_base_ms": -5}}, "retry.backoff_base_ms", "must not be negative"),
        ({"retry": {"max_backoff_ms": -1}}, "retry.max_backoff_ms", "must not be negative"),
        ({"timeout_seconds": -1}, "timeout_seconds", "must be positive"),
        ({"retry": {"backoff": "random"}}, "retry.backoff", "expected one of: exponential"),
    ],
)
def test_bad_retry_and_timeout_values_are_rejected(
    fields: dict[str, Any], field: str, text: str
) -> None:
    error = rejection(document(step("a"), step("pay", "a", **fields)))

    assert (error.source, error.step, error.field) == (SOURCE, "pay", field)
    assert text in str(error)


def test_decision_step_needs_a_dependency() -> None:
    error = rejection(document(step("route", type="decision")))

    assert (error.step, error.field) == ("route", "dependencies")
    assert "decision step needs at least one dependency" in str(error)


def test_batch_worker_needs_batch_config() -> None:
    doc = document(step("split"), step("work", "split", type="batch_worker"))

    error = rejection(doc)

    assert (error.step, error.field) == ("work", "batch_config")


def test_batchable_worker_template_must_name_a_batch_worker_step() -> None:
    batchable = step("split", type="batchable", batch_config={"worker_template": "work"})
    worker = step("work", "split", type="standard")

    error = rejection(document(batchable, worker))

    assert (error.step, error.field) == ("split", "batch_config.worker_template")
    assert "must name a batch_worker step" in str(error)


def test_batch_pair_is_accepted() -> None:
    batchable = step("split", type="batchable", batch_config={"worker_template": "work"})
    worker = step("work", "split", type="batch_worker", batch_config={"batch_size": 200})

    template = load(document(batchable, worker))

    assert template.step("work").batch_config is not None


def test_all_rule_problems_of_a_file_are_reported_together() -> None:
    doc = document(step("a", "ghost", timeout_seconds=-1), step("b", "b"), version="x")

    error = rejection(doc)

    assert len(error.problems) == 4
    assert str(error).startswith("4 problems in task templates:")


def test_non_mapping_document_is_rejected() -> None:
    with pytest.raises(TemplateError, match="expected a mapping of fields, got list"):
        load_template_text("- a\n- b\n", source=SOURCE)


def test_invalid_yaml_is_rejected_with_the_file_name() -> None:
    with pytest.raises(TemplateError, match=r"^examples/x.yaml: invalid YAML"):
        load_template_text("name: [unclosed", source=SOURCE)


# --- Unknown keys warn, they do not fail --------------------------------------------------


def test_unknown_keys_warn_naming_file_step_and_key(caplog: pytest.LogCaptureFixture) -> None:
    doc = document(step("a", retry={"max_attempt": 2}, colour="red"), owner="me")

    with caplog.at_level(logging.WARNING, logger="tasker.templates"):
        template = load(doc)

    assert template.step("a").retry.max_attempts is None
    warnings = [record.getMessage() for record in caplog.records]
    assert "examples/x.yaml: unknown key 'owner' ignored" in warnings
    assert "examples/x.yaml: step 'a': unknown key 'colour' ignored" in warnings
    assert (
        "examples/x.yaml: step 'a': unknown key 'retry.max_attempt' ignored "
        "(did you mean 'max_attempts'?)"
    ) in warnings
    assert all(record.levelno == logging.WARNING for record in caplog.records)


# --- Environments ------------------------------------------------------------------------

ENVIRONMENTS = {
    "test": {
        "steps": [
            {"name": "ALL", "timeout_seconds": 5, "retry": {"max_attempts": 1}},
            {
                "name": "b",
                "retry": {"backoff": "none"},
                "handler": {"initialization": {"url": "http://test"}},
            },
        ]
    }
}


def env_document() -> dict[str, Any]:
    handler = {"callable": "tests.b", "initialization": {"url": "http://prod", "keep": 1}}
    b = step("b", "a", handler=handler, retry={"retryable": False, "max_attempts": 9})
    return document(step("a", timeout_seconds=60), b, environments=copy.deepcopy(ENVIRONMENTS))


def test_environment_overrides_apply_to_all_and_named_steps() -> None:
    template = load(env_document(), env="test")

    assert template.step("a").timeout_seconds == 5
    assert template.step("a").retry.max_attempts == 1
    b = template.step("b")
    assert b.retry == RetryPolicy(retryable=False, max_attempts=1, backoff="none")
    assert b.handler.initialization == {"url": "http://test", "keep": 1}


def test_no_or_unknown_environment_changes_nothing() -> None:
    plain = load(env_document())

    assert load(env_document(), env="staging") == plain
    assert plain.step("a").timeout_seconds == 60
    assert plain.step("b").handler.initialization["url"] == "http://prod"


def test_environment_override_of_unknown_step_is_rejected() -> None:
    doc = document(environments={"test": {"steps": [{"name": "ghost", "timeout_seconds": 1}]}})

    error = rejection(doc)

    assert error.field == "environments.test.steps[0].name"
    assert "unknown step 'ghost'" in str(error)


def test_environment_with_wrong_types_is_rejected() -> None:
    doc = document(environments={"test": {"steps": [{"name": "a", "timeout_seconds": "x"}]}})

    error = rejection(doc)

    assert error.field == "environments.test.steps[0].timeout_seconds"


# --- Directories --------------------------------------------------------------------------


def write(directory: Path, name: str, doc: dict[str, Any] | str) -> Path:
    path = directory / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_directory_reports_problems_of_every_file_together(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", document())
    write(tmp_path, "cycle.yml", document(step("a", "b"), step("b", "a"), name="c"))
    write(tmp_path, "typo.yaml", document(step("a", retry={"max_attempts": "x"}), name="d"))
    write(tmp_path, "notes.txt", "not a template")

    with pytest.raises(TemplateError) as caught:
        load_template_directory(tmp_path)

    text = str(caught.value)
    assert text.startswith("2 problems in task templates:")
    assert f"{tmp_path / 'cycle.yml'}: step 'a': field 'dependencies': dependency cycle" in text
    assert f"{tmp_path / 'typo.yaml'}: step 'a': field 'retry.max_attempts'" in text


def test_directory_rejects_the_same_template_in_two_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", document())
    second = write(tmp_path, "b.yaml", document())

    with pytest.raises(TemplateError) as caught:
        load_template_directory(tmp_path)

    assert str(caught.value).startswith(f"{second}: template tests/t@1.2.3 is already defined")
    assert str(first) in str(caught.value)


def test_directory_applies_the_environment(tmp_path: Path) -> None:
    write(tmp_path, "env.yaml", env_document())

    [template] = load_template_directory(tmp_path, env="test")

    assert template.step("a").timeout_seconds == 5


# --- Storage -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear_workflow.yaml", "diamond_workflow.yaml"])
def test_json_roundtrip_preserves_the_template(name: str) -> None:
    template = load_template_file(EXAMPLES / name)

    assert template_from_json(template_to_json(template)) == template


def test_json_roundtrip_keeps_every_field() -> None:
    batchable = step("split", type="batchable", batch_config={"worker_template": "work"})
    worker = step(
        "work", "split", type="batch_worker", batch_config={"failure_strategy": "isolate"}
    )
    environments = {"prod": {"steps": [{"name": "work", "handler": {"initialization": {}}}]}}
    template = load(
        document(batchable, worker, environments=environments, input_schema={"type": "object"})
    )

    assert template_from_json(template_to_json(template)) == template


def test_invalid_stored_json_is_rejected() -> None:
    with pytest.raises(TemplateError, match="<json>: invalid JSON"):
        template_from_json(b"{not json")
