"""Schemathesis against the live OpenAPI spec: no input makes the service answer 5xx, and
valid requests get answers that match the spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from service_util import Served, served

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with served("--token", TOKEN, "--interval-ms", "100", "--auto-register",
                "--max-agents", "5000", token=TOKEN) as s:
        s.post("/v1/agents", json={"agents": [{"id": "known"}]})
        yield s


@pytest.fixture(scope="module")
def api(server: Served) -> Any:
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


# Every operation of the spec but the endless /v1/events stream (see test_service_events).
OPERATIONS = [("POST", "/v1/agents"), ("DELETE", "/v1/agents/{agent_id}"),
              ("GET", "/v1/agents/{agent_id}"), ("GET", "/v1/agents"),
              ("GET", "/v1/agents/{agent_id}/history"), ("POST", "/v1/heartbeats"),
              ("GET", "/v1/stats"), ("GET", "/v1/intervals"), ("GET", "/healthz"),
              ("GET", "/metrics")]


def test_the_list_covers_the_spec(api: Any) -> None:
    found = {(r.ok().method.upper(), r.ok().path) for r in api.get_all_operations()}
    assert found == {*OPERATIONS, ("GET", "/v1/events")}


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_server_errors(api: Any, server: Served, method: str, path: str) -> None:
    operation = api[path][method]

    # Generated cases, valid and invalid (schemathesis' negative mode breaks the schemas),
    # run against the live service. Only valid cases must get answers conforming to the spec.
    @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                          operation.as_strategy(GenerationMode.NEGATIVE)))
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        checks = [not_a_server_error, content_type_conformance]
        if case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE:
            checks += [status_code_conformance, response_schema_conformance]
        case.call_and_validate(base_url=server.url,
                               headers={"authorization": f"Bearer {TOKEN}"}, checks=checks)

    run()
