"""The GraphQL schema (service.graphql_api) as SDL, snapshot-tested against the committed
``graphql_schema.graphql``, and the query limits that reject a query before any resolver runs.

A change of the schema fails here with the difference; when it is intended, refresh the snapshot with
``KUAILV_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/service/test_graphql_schema.py`` and commit
the file (clients generate their code from it)."""

from __future__ import annotations

import asyncio
import difflib
import os
from pathlib import Path

import pytest
from graphql import ExecutionResult

from service.auth import Principal
from service.graphql_api import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, schema

SNAPSHOT = Path(__file__).with_name("graphql_schema.graphql")


def test_the_schema_is_the_committed_snapshot() -> None:
    sdl = schema.as_str() + "\n"
    if os.environ.get("KUAILV_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(sdl, encoding="utf-8")
    committed = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if sdl != committed:
        diff = "".join(difflib.unified_diff(committed.splitlines(True), sdl.splitlines(True), str(SNAPSHOT), "schema"))
        pytest.fail(f"the GraphQL schema differs from {SNAPSHOT.name}; if intended, refresh it with "
                    f"KUAILV_UPDATE_SNAPSHOTS=1 and commit the file:\n{diff}")


class NoData:
    """Reads that find nothing (the limits are checked before any read)."""

    def alerts(self, who: Principal, **_: object) -> list[dict[str, object]]:
        return []


def run(query: str) -> ExecutionResult:
    context = {"reads": NoData(), "who": Principal("u-op", "operator", None)}
    return asyncio.run(schema.execute(query, context_value=context))


def _alert_order_cycle(depth: int) -> str:
    """``alerts { order { alerts { order ... { orderId } } } }`` whose leaf is at ``depth``."""
    fields = ["alerts" if i % 2 == 0 else "order" for i in range(depth)]
    return "{ " + " { ".join(fields) + " { orderId" + " }" * (depth + 1)


def test_a_query_deeper_than_the_limit_is_rejected_before_it_runs() -> None:
    deep = run(_alert_order_cycle(MAX_DEPTH + 1))
    assert deep.errors and "exceeds maximum operation depth of 6" in deep.errors[0].message, deep.errors
    assert deep.data is None
    ok = run(_alert_order_cycle(MAX_DEPTH))
    assert ok.errors is None and ok.data == {"alerts": []}, ok.errors


def test_the_deepest_path_without_the_cycle_is_within_the_limit() -> None:
    ok = run("{ alerts { order { driver { info { location { lat } } } } } }")
    assert ok.errors is None, ok.errors


def test_too_many_aliases_are_rejected() -> None:
    q = "{ " + " ".join(f"a{i}: alerts {{ alertId }}" for i in range(MAX_ALIASES + 1)) + " }"
    result = run(q)
    assert result.errors and "aliases" in result.errors[0].message.lower(), result.errors


def test_an_oversized_query_is_rejected() -> None:
    q = "{ alerts { " + " ".join(["alertId"] * MAX_TOKENS) + " } }"
    result = run(q)
    assert result.errors and "token" in result.errors[0].message.lower(), result.errors
