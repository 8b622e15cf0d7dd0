"""``audit.record_action`` (API actions, subscription changes, erasures) and ``kuailv audit verify | show |
head`` on a SQLite file: exit 1 and the first broken entry named after an edit behind the store's back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from audit import record_action
from audit.actions import action_draft, chain_of_action
from audit.chain import Keys
from audit.order_events import draft_of
from audit.store import AuditStore
from cli.main import main
from schemas.codec import AvroCodec
from schemas.dead_letters import SourceRecord
from simulator.events import T0, order_story


def test_actions_go_to_the_chain_of_their_area() -> None:
    assert [chain_of_action(a) for a in ("subscription.create", "erasure.customer", "order.cancel", "x")] == \
        ["subscriptions", "erasures", "api", "api"]


def test_an_action_records_who_did_what_to_what_and_when() -> None:
    store = AuditStore.from_url("memory://", Keys.parse("k1:" + "k" * 32))
    try:
        e = record_action(store, "cs-7", "customer_service", "erasure.customer", "CUST-1", {"ticket": "T-9"}, T0)
        assert e is not None and (e.chain, e.seq, e.subject, e.at_ms, e.key_id) == ("erasures", 1, "CUST-1", T0, "k1")
        assert e.actor is not None and (e.actor.user, e.actor.role) == ("cs-7", "customer_service")
        assert orjson.loads(e.payload) == {"action": "erasure.customer", "target": "CUST-1",
                                           "details": {"ticket": "T-9"}}
        assert store.verify("erasures").ok
    finally:
        store.close()


@pytest.mark.parametrize("args,error", [
    (("", "operator", "order.cancel", "KL1", {}, T0), "non-empty"),
    (("u", "operator", "order.cancel", "KL1", {"at": object()}, T0), "details cannot be recorded"),
    (("u", "operator", "order.cancel", "KL1", {}, 1.5), "at_ms must be an int"),
])
def test_bad_actions_are_refused_with_the_action_and_actor(args: tuple[Any, ...], error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error) as err:
        action_draft(*args)
    assert "order.cancel" in str(err.value)


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.sqlite"
    store = AuditStore.from_url(f"sqlite:///{path}")
    codec = AvroCodec(epoch_ms=True)
    recs = [SourceRecord("kuailv.order-events.v1", 2, i, b"KL1", AvroCodec().encode(t, e), T0)
            for i, (t, e) in enumerate(order_story("KL1", T0))]
    store.append([draft_of(codec, r) for r in recs])
    record_action(store, "op-1", "operator", "order.cancel", "KL1", {"reason": "test"}, T0 + 1)
    store.close()
    return path


def run(path: Path, *args: str) -> int:
    return main(["audit", *args, "--store", f"sqlite:///{path}"])


def tamper(path: Path, *statements: str) -> None:
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER audit_entries_no_update")
    con.execute("DROP TRIGGER audit_entries_no_delete")
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


def test_verify_show_and_head_on_an_intact_trail(audit_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(audit_file, "verify") == 0
    out = capsys.readouterr().out
    assert "ok      api" in out and "ok      order-events/2" in out
    assert run(audit_file, "show", "--order", "KL1") == 0
    out, err = capsys.readouterr()
    assert "OrderDelivered" in out and "signed by '李厨师'" in out and "signature sig/KL1.png" in out
    assert "order.cancel KL1" in out and "by op-1 (operator)" in out and "chain order-events/2: intact" in err
    assert run(audit_file, "show", "--chain", "order-events/2", "--json", "--limit", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    assert run(audit_file, "head", "--json") == 0
    heads = json.loads(capsys.readouterr().out)
    assert [c["chain"] for c in heads["chains"]] == ["api", "order-events/2"] and len(heads["digest"]) == 64


@pytest.mark.parametrize("statements,named", [
    (["UPDATE audit_entries SET payload = replace(payload, '李厨师', '王五') WHERE chain = 'order-events/2' "
      "AND kind = 'OrderDelivered'"], "at seq 10: edited"),
    (["DELETE FROM audit_entries WHERE chain = 'order-events/2' AND seq = 4"], "at seq 4: removed"),
    (["UPDATE audit_entries SET seq = -1 WHERE chain = 'order-events/2' AND seq = 5",
      "UPDATE audit_entries SET seq = 5 WHERE chain = 'order-events/2' AND seq = 6",
      "UPDATE audit_entries SET seq = 6 WHERE chain = 'order-events/2' AND seq = -1"], "at seq 5: reordered"),
])
def test_verify_names_the_first_broken_entry_and_exits_1(audit_file: Path, statements: list[str], named: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    tamper(audit_file, *statements)
    assert run(audit_file, "verify") == 1
    out = capsys.readouterr().out
    assert f"BROKEN  order-events/2     {named}" in out and "ok      api" in out
    assert run(audit_file, "verify", "--chain", "api") == 0
    assert run(audit_file, "show", "--order", "KL1") == 1  # the shown chain does not verify


def test_anchors_kept_elsewhere_catch_a_cut_tail(audit_file: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run(audit_file, "head", "--json") == 0
    anchors = tmp_path / "anchors.json"
    anchors.write_text(capsys.readouterr().out)
    tamper(audit_file, "DELETE FROM audit_entries WHERE chain = 'order-events/2' AND seq >= 9",
           "UPDATE audit_heads SET seq = 8, hash = (SELECT hash FROM audit_entries WHERE chain = 'order-events/2' "
           "AND seq = 8) WHERE chain = 'order-events/2'")  # head row rewritten too: only the anchor knows
    assert run(audit_file, "verify") == 0
    capsys.readouterr()
    assert run(audit_file, "verify", "--anchors", str(anchors)) == 1
    assert "order-events/2     at seq 9: truncated" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path: Path, audit_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path / "nothing.sqlite", "verify") == 2
    assert "no audit store at" in capsys.readouterr().err
    assert run(audit_file, "verify", "--chain", "nope") == 2
    assert "no chain 'nope'" in capsys.readouterr().err
    assert run(audit_file, "show") == 2
