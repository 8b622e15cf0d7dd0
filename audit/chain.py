"""The audit chain: the entry format, its hash, ``append`` and ``verify``. Pure: no I/O, no clock.

A chain is a named, gap-free sequence of entries (``order-events/3``, ``api``, ...). Entry ``n``
carries the hash of entry ``n-1`` (entry 1: the chain's genesis hash, derived from its name), and its
own hash covers every field, its sequence number and that previous hash included. The hashed bytes
are the canonical JSON (``audit.canonical``) of the entry's header::

    {"v": 1, "chain": ..., "seq": ..., "prev": ..., "kind": ..., "subject": ..., "at": ...,
     "actor": [user, role] | null, "source": [topic, partition, offset] | null, "ref": ...,
     "payload_sha256": ..., "key": ...}

``hash = SHA-256(header)`` when ``key`` is "" and ``HMAC-SHA256(secret of key, header)`` otherwise
(``Keys``). The payload (canonical JSON bytes) enters the header through its SHA-256, so an entry's
hash commits to every payload byte.

``verify`` walks a chain in the order it is given and names the FIRST broken entry with what is wrong:
``edited`` (content no longer matches its hash), ``removed`` (a sequence gap), ``reordered`` (an
entry out of its place: seq out of order, rewritten seq numbers, a prev-hash that does not link),
``inserted`` (entries that a later entry skips over), ``genesis`` (the first entry does not start the
chain), ``wrong-chain``, ``key`` (plain or unknown-key hashes where HMAC keys are configured),
``anchor``/``truncated`` (disagrees with a head hash kept elsewhere). What plain SHA-256 and HMAC
protect against: docs/audit.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from audit.canonical import canonical_json

FORMAT_VERSION = 1
RECENT = 4096  # entries remembered by hash while verifying (to tell an insertion from a move)
NEARBY = 64  # seq numbers tried when an entry's hash only matches under another seq
LOOKAHEAD = 4096  # entries read past a sequence jump to tell a swap from a removal


class AuditKeyError(ValueError):
    """``KUAILV_AUDIT_HMAC_KEYS`` is malformed (the message says how)."""


def genesis(chain: str) -> str:
    """The ``prev`` hash of a chain's first entry: bound to the chain's name."""
    return hashlib.sha256(b"kuailv-audit/v1 genesis\n" + chain.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Actor:
    user: str
    role: str


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record was on the log."""

    topic: str
    partition: int
    offset: int

    @property
    def ref(self) -> str:
        return f"kafka:{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class Draft:
    """What a writer wants recorded; ``append`` adds seq, prev hash and hash. ``ref`` is the
    idempotency key (the source position for log records, a request id for actions): the store never
    appends a second entry with the same ref to a chain."""

    chain: str
    kind: str
    payload: bytes  # canonical JSON
    subject: str | None = None  # the order id (or other target) the entry is about
    at_ms: int | None = None  # event time, epoch ms
    actor: Actor | None = None
    source: Position | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Head:
    """The last entry of a chain (seq 0 and the genesis hash: empty)."""

    chain: str
    seq: int
    hash: str

    @staticmethod
    def empty(chain: str) -> Head:
        return Head(chain, 0, genesis(chain))


@dataclass(frozen=True, slots=True)
class Entry:
    chain: str
    seq: int
    prev_hash: str
    kind: str
    subject: str | None
    at_ms: int | None
    actor: Actor | None
    source: Position | None
    ref: str | None
    payload: bytes
    payload_sha256: str
    key_id: str  # "": plain SHA-256
    hash: str


@dataclass(frozen=True)
class Keys:
    """HMAC keys by id. ``current`` signs new entries ("" = plain SHA-256); every key verifies."""

    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    current: str = ""

    @classmethod
    def parse(cls, spec: str) -> Keys:
        """``id:secret[,id:secret...]`` (``KUAILV_AUDIT_HMAC_KEYS``): the first key signs, all verify."""
        secrets: dict[str, bytes] = {}
        for item in filter(None, (x.strip() for x in spec.split(","))):
            key_id, sep, secret = item.partition(":")
            if not sep or not key_id or not secret:
                raise AuditKeyError(f"KUAILV_AUDIT_HMAC_KEYS: expected id:secret, got an item starting "
                                    f"{item[:6]!r}")
            if len(secret.encode()) < 16:
                raise AuditKeyError(f"KUAILV_AUDIT_HMAC_KEYS: key {key_id!r} is shorter than 16 bytes")
            if key_id in secrets:
                raise AuditKeyError(f"KUAILV_AUDIT_HMAC_KEYS: key id {key_id!r} given twice")
            secrets[key_id] = secret.encode()
        return cls(secrets, next(iter(secrets), ""))

    @property
    def keyed(self) -> bool:
        return bool(self.current)

    def digest(self, key_id: str, header: bytes) -> str | None:
        """The hash of a header under ``key_id`` (None: that key is not configured)."""
        if not key_id:
            return hashlib.sha256(header).hexdigest()
        secret = self.secrets.get(key_id)
        return None if secret is None else hmac.new(secret, header, hashlib.sha256).hexdigest()


PLAIN = Keys()


def header(e: Entry, seq: int | None = None) -> bytes:
    """The canonical bytes an entry's hash covers (``seq`` overrides its seq: used to diagnose moves)."""
    return canonical_json({
        "v": FORMAT_VERSION, "chain": e.chain, "seq": e.seq if seq is None else seq, "prev": e.prev_hash,
        "kind": e.kind, "subject": e.subject, "at": e.at_ms,
        "actor": [e.actor.user, e.actor.role] if e.actor else None,
        "source": [e.source.topic, e.source.partition, e.source.offset] if e.source else None,
        "ref": e.ref, "payload_sha256": e.payload_sha256, "key": e.key_id,
    })


def append(prev: Head, draft: Draft, keys: Keys = PLAIN) -> Entry:
    """The entry that follows ``prev`` (``Head.empty(chain)`` for a chain's first entry)."""
    if prev.chain != draft.chain:
        raise ValueError(f"audit append: draft for chain {draft.chain!r} after the head of chain {prev.chain!r}")
    if not draft.kind:
        raise ValueError(f"audit append to {draft.chain!r}: an entry needs a kind")
    if not isinstance(draft.payload, bytes):
        raise TypeError(f"audit append to {draft.chain!r}: payload must be canonical JSON bytes, "
                        f"got {type(draft.payload).__name__}")
    unsigned = Entry(draft.chain, prev.seq + 1, prev.hash, draft.kind, draft.subject, draft.at_ms, draft.actor,
                     draft.source, draft.ref, draft.payload, hashlib.sha256(draft.payload).hexdigest(),
                     keys.current, "")
    digest = keys.digest(keys.current, header(unsigned))
    assert digest is not None  # the current key is always configured
    return replace(unsigned, hash=digest)


def heads_digest(heads: Iterable[Head]) -> str:
    """One SHA-256 over every chain's head (sorted by chain): a single value to anchor elsewhere."""
    return hashlib.sha256(canonical_json(sorted([h.chain, h.seq, h.hash] for h in heads))).hexdigest()


# --- verification ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Anchor:
    """A head hash kept elsewhere: the chain must contain entry ``seq`` with this ``hash``."""

    seq: int
    hash: str
    source: str  # named in messages: "the store's head row", "anchors.json"


@dataclass(frozen=True, slots=True)
class Break:
    chain: str
    seq: int  # the first broken entry
    reason: str  # edited | removed | reordered | inserted | genesis | wrong-chain | key | anchor | truncated
    detail: str

    def __str__(self) -> str:
        return f"{self.chain} seq {self.seq}: {self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Verdict:
    chain: str
    checked: int  # intact entries before the break (all of them when ok)
    head: Head  # the last intact entry
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(chain: str, entries: Iterable[Entry], keys: Keys = PLAIN, anchors: Sequence[Anchor] = ()) -> Verdict:
    """Check a whole chain given in its stored order; the first broken entry, or ok."""
    rest = iter(entries)
    head = Head.empty(chain)
    recent: dict[str, int] = {}
    order: deque[str] = deque()
    checked = 0
    for e in rest:
        broken = _check(chain, e, head, keys, recent, rest)
        if broken is None:
            broken = next((Break(chain, e.seq, "anchor", f"its hash {e.hash[:16]}... differs from {a.source}'s "
                                 f"{a.hash[:16]}...: the chain was rewritten up to here")
                           for a in anchors if a.seq == e.seq and a.hash != e.hash), None)
        if broken is not None:
            return Verdict(chain, checked, head, broken)
        checked += 1
        head = Head(chain, e.seq, e.hash)
        recent[e.hash] = e.seq
        order.append(e.hash)
        if len(order) > RECENT:
            recent.pop(order.popleft(), None)
    beyond = max((a for a in anchors if a.seq > head.seq), key=lambda a: a.seq, default=None)
    if beyond is not None:
        return Verdict(chain, checked, head, Break(
            chain, head.seq + 1, "truncated", f"the chain ends at seq {head.seq} but {beyond.source} names seq "
            f"{beyond.seq}: {_span(head.seq + 1, beyond.seq)} removed from the end"))
    return Verdict(chain, checked, head, None)


def _check(chain: str, e: Entry, head: Head, keys: Keys, recent: dict[str, int], rest: Iterator[Entry]) -> Break | None:
    exp = head.seq + 1
    if e.chain != chain:
        return Break(chain, exp, "wrong-chain", f"the entry in this place belongs to chain {e.chain!r} (seq {e.seq})")
    if e.seq != exp and e.prev_hash == head.hash and keys.digest(e.key_id, header(e, exp)) == e.hash:
        return Break(chain, exp, "edited", f"its seq was changed from {exp} to {e.seq}")
    if e.seq > exp:
        if any(later.seq == exp for later, _ in zip(rest, range(LOOKAHEAD), strict=False)):
            return Break(chain, exp, "reordered", f"seq {e.seq} comes before seq {exp} (entries swapped)")
        return Break(chain, exp, "removed", f"{_span(exp, e.seq - 1)} missing: seq {e.seq} follows {_after(head)}")
    if e.seq < exp:
        if recent.get(e.prev_hash) == e.seq - 1:
            return Break(chain, e.seq, "inserted", f"seq {e.seq} appears again after seq {head.seq}, linked to seq "
                         f"{e.seq - 1} like the first one: the chain forks, an entry was inserted")
        return Break(chain, e.seq, "reordered", f"seq {e.seq} comes after seq {head.seq}")
    problem = _key_problem(e, keys)
    if problem:
        return Break(chain, exp, "key", problem)
    if hashlib.sha256(e.payload).hexdigest() != e.payload_sha256:
        return Break(chain, exp, "edited", "its payload does not match its SHA-256 (the payload was changed)")
    intact = keys.digest(e.key_id, header(e)) == e.hash
    linked = e.prev_hash == head.hash
    if intact and linked:
        return None
    earlier = recent.get(e.prev_hash)  # it links to an entry before the one preceding it
    if not intact:
        if linked:
            return Break(chain, exp, "edited", "its content does not match its hash (a field was changed)")
        if earlier is not None and keys.digest(e.key_id, header(e, earlier + 1)) == e.hash:
            return Break(chain, earlier + 1, "inserted", f"{_span(earlier + 1, head.seq)} inserted: the entry "
                         f"stored as seq {exp} was appended as seq {earlier + 1}, right after seq {earlier}")
        written = _written_as(e, exp, keys)
        if written is not None:
            return Break(chain, exp, "reordered", f"the entry stored as seq {exp} was appended as seq {written}: "
                         "seq numbers were rewritten (entries swapped or moved)")
        return Break(chain, exp, "edited", "its content does not match its hash, and it does not link to the "
                     "entry before it")
    if exp == 1:
        return Break(chain, 1, "genesis", "the first entry does not start from the chain's genesis hash "
                     "(the start of the chain was cut off or replaced)")
    if earlier is not None:
        return Break(chain, earlier + 1, "inserted", f"{_span(earlier + 1, head.seq)} inserted: seq {exp} links "
                     f"to seq {earlier}")
    return Break(chain, exp, "reordered", f"it does not link to seq {head.seq} (prev hash mismatch): it was moved "
                 f"here, or seq {head.seq} was replaced by an entry with a recomputed hash")


def _key_problem(e: Entry, keys: Keys) -> str | None:
    if not e.key_id:
        return ("hashed with plain SHA-256 although HMAC keys are configured: anyone who can write the store "
                "could have computed it") if keys.keyed else None
    if e.key_id not in keys.secrets:
        return f"hashed with HMAC key {e.key_id!r}, which is not configured (KUAILV_AUDIT_HMAC_KEYS)"
    return None


def _written_as(e: Entry, exp: int, keys: Keys) -> int | None:
    """The seq an out-of-place entry was appended as, if it is near ``exp``."""
    for seq in range(max(1, exp - NEARBY), exp + NEARBY + 1):
        if seq != exp and keys.digest(e.key_id, header(e, seq)) == e.hash:
            return seq
    return None


def _span(first: int, last: int) -> str:
    return f"entry {first} was" if first == last else f"entries {first}..{last} were"


def _after(head: Head) -> str:
    return f"seq {head.seq}" if head.seq else "the start of the chain"
