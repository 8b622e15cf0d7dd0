"""``kuailv audit run | verify | show | head`` (``add_audit_commands`` adds them to ``cli/main.py``'s parser).

The audit code is imported by the commands only (``audit/``, docs/audit.md).

Exit codes: 0 ok, 1 a chain is broken (verify, show) or the worker failed, 2 bad usage (no such chain,
no store at the configured path, malformed anchors or keys).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from config import settings as settings_mod


class UsageError(Exception):
    """Exit 2 with this message."""


def add_audit_commands(sub: Any) -> None:
    a = sub.add_parser("audit", help="the tamper-evident audit trail (docs/audit.md)")
    a_sub = a.add_subparsers(dest="audit_command", required=True)
    run = a_sub.add_parser("run", help="chain every order-log record (own consumer group <group>-audit)")
    run.add_argument("--loglevel", default="info")
    run.set_defaults(fn=cmd_audit_run)

    v = a_sub.add_parser("verify", help="check whole chains; name the first broken entry (exit 1 if broken)")
    which = v.add_mutually_exclusive_group()
    which.add_argument("--chain", default=None, help="one chain, e.g. order-events/3, api, subscriptions")
    which.add_argument("--all", action="store_true", help="every chain (the default)")
    v.add_argument("--anchors", default=None, help="JSON from `kuailv audit head --json` kept elsewhere: each "
                                                   "chain must still contain its anchored head")
    v.set_defaults(fn=cmd_audit_verify)

    s = a_sub.add_parser("show", help="entries of an order (incl. its signing record) or of a chain")
    s.add_argument("--order", default=None, help="entries about this order id (events and API actions)")
    s.add_argument("--chain", default=None, help="only this chain")
    s.add_argument("--from-seq", type=int, default=1, help="with --chain alone: the first seq to print")
    s.add_argument("--limit", type=int, default=50, help="with --chain alone: at most this many entries")
    s.add_argument("--json", action="store_true", help="one entry per line as JSON")
    s.add_argument("--no-verify", action="store_true", help="do not verify the chains shown")
    s.set_defaults(fn=cmd_audit_show)

    h = a_sub.add_parser("head", help="each chain's head hash and one digest of them all: what to anchor")
    h.add_argument("--json", action="store_true")
    h.set_defaults(fn=cmd_audit_head)
    for p in (v, s, h):
        p.add_argument("--store", default=None, help="audit store URL (default KUAILV_AUDIT_STORE)")


def cmd_audit_run(args: argparse.Namespace) -> int:
    from audit.worker import run_audit

    return run_audit(settings_mod.load(args.profile), args.loglevel)


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except UsageError as exc:
            print(f"kuailv audit {args.audit_command}: {exc}", file=sys.stderr)
            return 2
    return run


def _open(args: argparse.Namespace) -> Any:
    from audit.chain import AuditKeyError, Keys
    from audit.store import AuditStore, AuditStoreError, audit_target
    from webhooks.store_config import SqliteTarget

    s = settings_mod.load(args.profile)
    url = args.store or s.audit_store
    try:
        keys = Keys.parse(s.audit_hmac_keys)
        target = audit_target(url)
    except (AuditKeyError, AuditStoreError) as exc:
        raise UsageError(str(exc)) from None
    if isinstance(target, SqliteTarget) and target.path is not None and not target.path.exists():
        raise UsageError(f"no audit store at {target.path} (KUAILV_AUDIT_STORE, or --store URL)")
    return AuditStore.from_url(url, keys)


@_guarded
def cmd_audit_verify(args: argparse.Namespace) -> int:
    anchors = _anchors(Path(args.anchors)) if args.anchors else {}
    store = _open(args)
    try:
        every = store.chains()
        chains = every
        if args.chain is not None:
            if args.chain not in every and args.chain not in anchors:
                raise UsageError(f"no chain {args.chain!r} in {store.describe}; chains: {', '.join(every) or 'none'}")
            chains = [args.chain] if args.chain in every else []
        broken = 0
        entries = 0
        for chain in chains:
            verdict = store.verify(chain, anchors.get(chain, ()))
            entries += verdict.checked
            b = verdict.broken
            if b is None:
                print(f"ok      {chain:<18} {verdict.checked:>9} entries  head seq {verdict.head.seq} "
                      f"{verdict.head.hash}")
            else:
                broken += 1
                print(f"BROKEN  {chain:<18} at seq {b.seq}: {b.reason}: {b.detail}  "
                      f"({verdict.checked} intact entries before it)")
        for chain in sorted(set(anchors) - set(every)):
            if args.chain is None or chain == args.chain:
                broken += 1
                print(f"BROKEN  {chain:<18} at seq 1: removed: the anchors name this chain, the store has none of it")
        print(f"{len(chains)} chains, {entries} intact entries: "
              + (f"{broken} broken" if broken else "every chain intact"), file=sys.stderr)
        return 1 if broken else 0
    finally:
        store.close()


def _anchors(path: Path) -> dict[str, tuple[Any, ...]]:
    from audit.chain import Anchor

    try:
        doc = json.loads(path.read_text())
        return {c["chain"]: (Anchor(int(c["seq"]), str(c["hash"]), str(path)),) for c in doc["chains"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"anchors {path}: expected the JSON of `kuailv audit head --json`: "
                         f"{type(exc).__name__}: {exc}") from None


@_guarded
def cmd_audit_head(args: argparse.Namespace) -> int:
    from audit.chain import heads_digest

    store = _open(args)
    try:
        heads = store.heads()
    finally:
        store.close()
    digest = heads_digest(heads)
    if args.json:
        print(json.dumps({"store": store.describe, "chains": [{"chain": h.chain, "seq": h.seq, "hash": h.hash}
                                                             for h in heads], "digest": digest}, indent=2))
    else:
        for h in heads:
            print(f"{h.chain:<18} seq {h.seq:>9}  {h.hash}")
        print(f"digest of all heads: {digest}")
    return 0


@_guarded
def cmd_audit_show(args: argparse.Namespace) -> int:
    if not args.order and not args.chain:
        raise UsageError("give --order ID and/or --chain NAME")
    store = _open(args)
    try:
        if args.order:
            entries = store.by_subject(args.order, args.chain)
        else:
            entries = [e for _, e in zip(range(args.limit), store.entries(args.chain, args.from_seq - 1),
                                         strict=False)]
        if not entries:
            print(f"no entries for {'order ' + args.order if args.order else 'chain ' + args.chain}", file=sys.stderr)
        for e in entries:
            print(orjson.dumps(entry_json(e)).decode() if args.json else format_entry(e))
        if args.no_verify:
            return 0
        broken = 0
        for chain in sorted({e.chain for e in entries}):
            verdict = store.verify(chain)
            broken += not verdict.ok
            print(f"chain {chain}: " + (f"intact, {verdict.checked} entries, head {verdict.head.hash}" if verdict.ok
                                        else f"BROKEN: {verdict.broken}"), file=sys.stderr)
        return 1 if broken else 0
    finally:
        store.close()


def entry_json(e: Any) -> dict[str, Any]:
    return {"chain": e.chain, "seq": e.seq, "kind": e.kind, "subject": e.subject, "at_ms": e.at_ms,
            "actor": {"user": e.actor.user, "role": e.actor.role} if e.actor else None,
            "source": {"topic": e.source.topic, "partition": e.source.partition, "offset": e.source.offset}
            if e.source else None, "ref": e.ref, "payload": orjson.loads(e.payload), "key_id": e.key_id,
            "prev_hash": e.prev_hash, "hash": e.hash}


def format_entry(e: Any) -> str:
    """One entry for people: a header line, then its signing record or action."""
    where = (f"{e.source.topic}[{e.source.partition}]@{e.source.offset}" if e.source
             else f"by {e.actor.user} ({e.actor.role})" if e.actor else "")
    lines = [f"{e.chain} #{e.seq}  {_iso(e.at_ms)}  {e.kind}  {e.subject or '-'}  {where}  hash {e.hash[:16]}"]
    payload = orjson.loads(e.payload)
    signing = payload.get("signing") if isinstance(payload, dict) else None
    if signing:
        loc = signing.get("location") or {}
        lines.append(f"    signed by {signing.get('receiver')!r} at {_iso(signing.get('signed_at_ms'))}, "
                     f"location {loc.get('lat')},{loc.get('lng')}, signature {signing.get('signature_ref')}, "
                     f"photo {signing.get('photo_ref')}")
    elif isinstance(payload, dict) and "action" in payload:
        lines.append(f"    {payload['action']} {payload.get('target')}: "
                     f"{json.dumps(payload.get('details'), ensure_ascii=False, sort_keys=True)}")
    elif isinstance(payload, dict) and "undecodable" in payload:
        u = payload["undecodable"]
        lines.append(f"    {u.get('reason_code')}: {u.get('reason')}")
    return "\n".join(lines)


def _iso(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
