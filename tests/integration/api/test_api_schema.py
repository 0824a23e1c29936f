"""Property-based conformance: schemathesis drives every operation of the live server from
its own OpenAPI document; no answer may be a 5xx, and every answer must match the schema
(status code, content type and body). Examples are bounded to keep the run short."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Err, Ok

from tests.integration.api.conftest import InProcessCluster

pytestmark = pytest.mark.postgres
MAX_EXAMPLES = 8

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# schemathesis itself types the operations it yields as a bare `APIOperation`.
Operation = schemathesis.APIOperation[Any, Any, Any, Any]


def _operation(result: Ok[Operation] | Err[InvalidSchema]) -> Operation:
    """The operation, or the schema error that kept schemathesis from building it."""
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


def _check_operation(operation: Operation) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case[Operation]) -> None:
        case.call_and_validate(checks=CHECKS)

    conforms()


def test_every_operation_answers_within_its_schema(api_cluster: InProcessCluster) -> None:
    schema = schemathesis.openapi.from_url(f"{api_cluster.url}/openapi.json")
    failures: dict[str, str] = {}
    operations = [_operation(result) for result in schema.get_all_operations()]

    for operation in operations:
        try:
            _check_operation(operation)
        except Exception as exc:  # collect them all, then report
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]

    assert len(operations) >= 15
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
