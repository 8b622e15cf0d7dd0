"""The hash chain (``audit.chain``, pure): every kind of tampering is found, and the FIRST broken entry is
the one named, with what was done to it."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from audit.canonical import canonical_json
from audit.chain import (
    PLAIN,
    Actor,
    Anchor,
    AuditKeyError,
    Draft,
    Entry,
    Head,
    Keys,
    Position,
    append,
    genesis,
    header,
    heads_digest,
    verify,
)

T0 = 1_780_293_600_000
CHAIN = "order-events/2"
KEYS = Keys.parse("k2:" + "b" * 32 + ",k1:" + "a" * 32)


def draft(i: int, chain: str = CHAIN) -> Draft:
    pos = Position("kuailv.order-events.v1", 2, 100 + i)
    return Draft(chain, "OrderCreated", canonical_json({"i": i, "note": "鲜"}), f"KL{i % 3}", T0 + i, None, pos,
                 pos.ref)


def build(n: int, keys: Keys = PLAIN, chain: str = CHAIN) -> list[Entry]:
    head, out = Head.empty(chain), []
    for i in range(1, n + 1):
        e = append(head, draft(i, chain), keys)
        out.append(e)
        head = Head(chain, e.seq, e.hash)
    return out


def forged(prev: Entry, payload: bytes, seq: int | None = None, keys: Keys = PLAIN) -> Entry:
    """What someone who can write the store but has no key computes: a well-formed entry after ``prev``."""
    e = append(Head(prev.chain, prev.seq, prev.hash), Draft(prev.chain, "OrderCancelled", payload, "KL9"), keys)
    return e if seq is None else _rehash(replace(e, seq=seq), keys)


def _rehash(e: Entry, keys: Keys = PLAIN) -> Entry:
    return replace(e, hash=keys.digest(e.key_id, header(e)) or "")


def first_break(entries: list[Entry], keys: Keys = PLAIN, **kw: object) -> tuple[int, str]:
    broken = verify(CHAIN, entries, keys, **kw).broken  # type: ignore[arg-type]
    assert broken is not None, "tampering went unnoticed"
    return broken.seq, broken.reason


@pytest.mark.parametrize("keys", [PLAIN, KEYS], ids=["sha256", "hmac"])
def test_an_intact_chain_verifies(keys: Keys) -> None:
    entries = build(20, keys)
    verdict = verify(CHAIN, entries, keys)
    assert verdict.ok and verdict.checked == 20 and verdict.head == Head(CHAIN, 20, entries[-1].hash)
    assert entries[0].prev_hash == genesis(CHAIN) and all(e.key_id == keys.current for e in entries)
    assert verify(CHAIN, [], keys).ok  # an empty chain is intact


def test_each_entry_links_to_the_previous_and_the_hash_covers_every_field() -> None:
    entries = build(3)
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    e = entries[1]
    assert e.hash == hashlib.sha256(header(e)).hexdigest()
    assert e.payload_sha256 == hashlib.sha256(e.payload).hexdigest()
    for field, value in [("seq", 9), ("prev_hash", "0" * 64), ("kind", "X"), ("subject", "KL?"), ("at_ms", 1),
                         ("actor", Actor("u", "operator")), ("source", Position("t", 0, 0)), ("ref", "r"),
                         ("payload_sha256", "0" * 64), ("key_id", "k1"), ("chain", "api")]:
        assert header(replace(e, **{field: value})) != header(e), field


@pytest.mark.parametrize("k", [1, 7, 20])
def test_an_edited_payload_is_named(k: int) -> None:
    entries = build(20)
    entries[k - 1] = replace(entries[k - 1], payload=b'{"i":0}')
    assert first_break(entries) == (k, "edited")


def test_an_edited_field_is_named_even_with_a_matching_payload_digest() -> None:
    entries = build(10)
    entries[4] = replace(entries[4], subject="KL-SOMEONE-ELSE")
    assert first_break(entries) == (5, "edited")
    entries = build(10)
    payload = b'{"i":0}'
    entries[4] = replace(entries[4], payload=payload, payload_sha256=hashlib.sha256(payload).hexdigest())
    assert first_break(entries) == (5, "edited")


@pytest.mark.parametrize("k", [1, 5, 19])
def test_a_deleted_entry_is_named(k: int) -> None:
    entries = build(20)
    del entries[k - 1]
    assert first_break(entries) == (k, "removed")


def test_deleted_entries_with_renumbered_successors_are_found() -> None:
    entries = build(10)
    del entries[4]
    entries[4:] = [replace(e, seq=e.seq - 1) for e in entries[4:]]  # seq made gap-free again, hashes left
    assert first_break(entries) == (5, "reordered")


@pytest.mark.parametrize("i,j", [(3, 4), (3, 9), (1, 2)])
def test_swapped_entries_are_named(i: int, j: int) -> None:
    entries = build(12)
    entries[i - 1], entries[j - 1] = entries[j - 1], entries[i - 1]  # read in the wrong order
    assert first_break(entries) == (i, "reordered")
    entries = build(12)
    a, b = entries[i - 1], entries[j - 1]  # the store way: the seq numbers exchanged, read in seq order
    entries[i - 1], entries[j - 1] = replace(b, seq=a.seq), replace(a, seq=b.seq)
    assert first_break(entries) == (i, "reordered")


def test_an_inserted_entry_is_named_whether_or_not_the_rest_is_renumbered() -> None:
    entries = build(10)
    x = forged(entries[3], b'{"fake":true}')  # a well-formed seq 5 after seq 4 (plain SHA-256 is computable)
    assert first_break([*entries[:4], x, *entries[4:]]) == (5, "inserted")  # two entries claim seq 5
    renumbered = [replace(e, seq=e.seq + 1) for e in entries[4:]]
    assert first_break([*entries[:4], x, *renumbered]) == (5, "inserted")
    rehashed = [_rehash(e) for e in renumbered]  # even with every later hash recomputed
    assert first_break([*entries[:4], x, *rehashed]) == (5, "inserted")
    bogus = replace(x, hash="f" * 64)
    assert first_break([*entries[:4], bogus, *renumbered]) == (5, "edited")


def test_an_entry_replaced_with_a_recomputed_hash_breaks_the_next_link() -> None:
    entries = build(10)
    entries[5] = _rehash(replace(entries[5], subject="KL-OTHER"))
    assert first_break(entries) == (7, "reordered")  # the first entry that no longer links


def test_the_first_of_several_breaks_is_named() -> None:
    entries = build(20)
    entries[14] = replace(entries[14], payload=b"{}")
    del entries[8]
    entries[2] = replace(entries[2], kind="OrderCancelled")
    assert first_break(entries) == (3, "edited")


def test_a_cut_or_foreign_start_is_a_genesis_break() -> None:
    entries = build(5)
    other = build(5, chain="order-events/3")
    assert first_break([_rehash(replace(e, chain=CHAIN)) for e in other]) == (1, "genesis")
    assert first_break([other[0], *entries[1:]]) == (1, "wrong-chain")
    assert first_break(entries[2:]) == (1, "removed")


def test_anchors_catch_a_truncated_tail_and_a_recomputed_chain() -> None:
    entries = build(10)
    anchor = Anchor(10, entries[-1].hash, "anchors.json")
    assert verify(CHAIN, entries, anchors=[anchor]).ok
    assert first_break(entries[:7], anchors=[anchor]) == (8, "truncated")
    head, rewritten = Head.empty(CHAIN), []  # every entry recomputed by someone who can write the store
    for e in entries:
        new = append(head, replace(draft(e.seq), payload=b'{"rewritten":true}'))
        rewritten.append(new)
        head = Head(CHAIN, new.seq, new.hash)
    assert verify(CHAIN, rewritten).ok  # plain SHA-256 alone cannot tell
    assert first_break(rewritten, anchors=[anchor]) == (10, "anchor")


def test_hmac_keys_stop_forgery_by_whoever_can_write_the_store() -> None:
    entries = build(6, KEYS)
    x = forged(entries[2], b'{"fake":true}')  # plain SHA-256: no key
    assert first_break([*entries[:3], x], KEYS) == (4, "key")
    guessed = forged(entries[2], b'{"fake":true}', keys=Keys.parse("k2:" + "z" * 32))  # right id, wrong secret
    assert first_break([*entries[:3], guessed, *entries[3:]], KEYS) == (4, "edited")
    assert first_break(entries) == (1, "key")  # no keys configured: keyed entries cannot be vouched for
    old = build(3, Keys.parse("k1:" + "a" * 32))  # rotated: the older key still verifies
    assert verify(CHAIN, old, KEYS).ok


def test_keys_parse_and_refuse_with_reasons() -> None:
    assert KEYS.current == "k2" and set(KEYS.secrets) == {"k1", "k2"} and "bbbb" not in repr(KEYS)
    assert not Keys.parse("").keyed
    for spec, reason in [("k1", "id:secret"), ("k1:short", "16 bytes"), (f"k:{'a' * 16},k:{'b' * 16}", "twice")]:
        with pytest.raises(AuditKeyError, match=reason):
            Keys.parse(spec)


def test_the_entry_format_is_stable() -> None:
    """A fixed entry hashes to a fixed value: changing the encoding would break every stored chain."""
    d = Draft("api", "order.cancel", canonical_json({"target": "KL1"}), "KL1", T0, Actor("op-1", "operator"), None,
              "req-1")
    e = append(Head.empty("api"), d)
    assert header(e) == (
        b'{"actor":["op-1","operator"],"at":1780293600000,"chain":"api","key":"","kind":"order.cancel",'
        b'"payload_sha256":"' + hashlib.sha256(b'{"target":"KL1"}').hexdigest().encode() + b'","prev":"'
        + genesis("api").encode() + b'","ref":"req-1","seq":1,"source":null,"subject":"KL1","v":1}')
    assert genesis("api") == "217a3424030b07a6ee9d78a2d0f806fa627691aa79b2a4e949dbddeff00ffe9b"
    assert e.hash == hashlib.sha256(header(e)).hexdigest() == \
        "a292079b9865088946d71ddc558da3870d064e7f3fc30b99c71384874a01ad22"
    keyed = append(Head.empty("api"), d, Keys.parse("k1:" + "a" * 32))  # HMAC-SHA256
    assert keyed.hash == "4e97f63068a2e64502b8b32fb9f356f66d6c762110d008ddef0e5801907c6201"
    assert heads_digest([Head("b", 1, "x"), Head("a", 2, "y")]) == heads_digest([Head("a", 2, "y"), Head("b", 1, "x")])


def test_append_refuses_a_draft_for_another_chain() -> None:
    with pytest.raises(ValueError, match="'api'"):
        append(Head.empty(CHAIN), Draft("api", "x", b"{}"))
