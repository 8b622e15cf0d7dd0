"""``kuailv``: query orders, replay history, run workers, the relay and the simulator.

Every subcommand reads configuration from the environment (``config.settings``);
``--profile test`` targets the test stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from config import settings as settings_mod


def _dump(obj: Any, pretty: bool = False) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=2 if pretty else None)


def cmd_order(args: argparse.Namespace) -> int:
    from streams.queries import order_document

    s = settings_mod.load(args.profile)
    doc = asyncio.run(order_document(s, args.order_id))
    if doc is None:
        print(f"order {args.order_id} not found in Redis {s.redis_url} (prefix {s.redis_prefix})", file=sys.stderr)
        return 1
    print(_dump(doc, pretty=not args.compact))
    return 0


def cmd_orders(args: argparse.Namespace) -> int:
    from streams.queries import order_ids

    s = settings_mod.load(args.profile)
    ids = asyncio.run(order_ids(s, status=args.status, customer=args.customer, driver=args.driver))
    for oid in sorted(ids):
        print(oid)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from schemas.topics import ORDER_EVENTS
    from streams.replay import read_topic, replay_lines, replay_records
    from streams.resources import make_codec

    s = settings_mod.load(args.profile)
    codec = make_codec(s)
    if args.topic:
        result = replay_records(read_topic(s.kafka_bootstrap, args.topic_name or ORDER_EVENTS.name), codec)
    else:
        with open(args.file, encoding="utf-8") as fh:
            result = replay_lines(fh, codec, source=args.file)
    for view in result.views():
        print(_dump(view))
    print(f"replayed {result.events} events into {len(result.states)} orders; "
          f"{len(result.rejections)} rejected, {len(result.dead_letters)} undecodable", file=sys.stderr)
    for line in result.dead_letters[:20]:
        print(f"  dead letter: {line}", file=sys.stderr)
    for r in result.rejections[:20]:
        print(f"  rejected: {r.reason_code} {r.event_type} v{r.version} ({r.event_id}): {r.reason}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from schemas.topics import ORDER_EVENTS
    from streams.replay import export_lines, read_topic
    from streams.resources import make_codec

    s = settings_mod.load(args.profile)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        n = export_lines(read_topic(s.kafka_bootstrap, ORDER_EVENTS.name), make_codec(s), out)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {n} order events", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.faust_app import run_worker

    sys.argv = [sys.argv[0], "worker", "--loglevel", args.loglevel]
    run_worker(settings_mod.load(args.profile), args.loglevel)
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    from streams.commands.relay_main import main as relay_main

    return relay_main(settings_mod.load(args.profile), interval=args.interval, once=args.once)


def cmd_simulate(args: argparse.Namespace) -> int:
    from streams.simulation_runner import run_simulation

    s = settings_mod.load(args.profile)
    return run_simulation(s, orders=args.orders, seed=args.seed, speedup=args.speedup, relay=not args.no_relay)


def cmd_run(args: argparse.Namespace) -> int:
    from streams.main_job import run_main_job

    return run_main_job(settings_mod.load(args.profile), orders=args.orders, seed=args.seed, speedup=args.speedup,
                        workers=args.workers)


def cmd_stats(args: argparse.Namespace) -> int:
    from streams.queries import progress

    print(_dump(asyncio.run(progress(settings_mod.load(args.profile))), pretty=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kuailv", description=__doc__)
    p.add_argument("--profile", default=None, help="stack profile: dev (default) or test; or set KUAILV_PROFILE")
    sub = p.add_subparsers(dest="command", required=True)

    o = sub.add_parser("order", help="print the current projection of one order as JSON")
    o.add_argument("order_id")
    o.add_argument("--compact", action="store_true", help="one line instead of indented JSON")
    o.set_defaults(fn=cmd_order)

    ls = sub.add_parser("orders", help="list order ids by status, customer or driver")
    g = ls.add_mutually_exclusive_group(required=True)
    g.add_argument("--status")
    g.add_argument("--customer")
    g.add_argument("--driver")
    ls.set_defaults(fn=cmd_orders)

    r = sub.add_parser("replay", help="fold history (file or topic) and print projections as JSON lines")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", help="JSON lines: {\"event_type\": ..., \"event\": {Avro JSON}}")
    src.add_argument("--topic", action="store_true", help="read the order-event topic from the beginning")
    r.add_argument("--topic-name", default=None, help="another topic than kuailv.order-events.v1")
    r.set_defaults(fn=cmd_replay)

    e = sub.add_parser("export", help="write the order-event topic as replay JSON lines")
    e.add_argument("--out", default="-")
    e.set_defaults(fn=cmd_export)

    w = sub.add_parser("worker", help="run a Faust worker (start several to scale out)")
    w.add_argument("--loglevel", default="info")
    w.set_defaults(fn=cmd_worker)

    rl = sub.add_parser("relay", help="publish recorded order events from the event store to Kafka")
    rl.add_argument("--interval", type=float, default=0.2, help="poll interval in seconds")
    rl.add_argument("--once", action="store_true", help="publish what is there and exit")
    rl.set_defaults(fn=cmd_relay)

    sm = sub.add_parser("simulate", help="drive seeded city traffic through the command side and Kafka")
    sm.add_argument("--orders", type=int, default=200)
    sm.add_argument("--seed", type=int, default=7)
    sm.add_argument("--speedup", type=float, default=0.0, help="event-time/wall-time ratio; 0 = as fast as possible")
    sm.add_argument("--no-relay", action="store_true", help="only record commands; a separate relay publishes")
    sm.set_defaults(fn=cmd_simulate)

    rn = sub.add_parser("run", help="the main job: workers + relay + simulator with live progress")
    rn.add_argument("--orders", type=int, default=300)
    rn.add_argument("--seed", type=int, default=7)
    rn.add_argument("--speedup", type=float, default=0.0)
    rn.add_argument("--workers", type=int, default=1)
    rn.set_defaults(fn=cmd_run)

    st = sub.add_parser("stats", help="print pipeline counters and orders per status")
    st.set_defaults(fn=cmd_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())


