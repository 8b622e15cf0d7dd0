"""``kuailv``: query orders, replay history, run workers, the relay and the simulator.

Every subcommand reads configuration from the environment (``config.settings``);
``--profile test`` targets the test stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import orjson

from config import settings as settings_mod


def _dump(obj: Any, pretty: bool = False) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=2 if pretty else None)


def cmd_order(args: argparse.Namespace) -> int:
    from streams.queries import order_document

    s = settings_mod.load(args.profile)
    doc = order_document(s, args.order_id)
    if doc is None:
        print(f"order {args.order_id} not found in Redis {s.redis_url} (prefix {s.redis_prefix})", file=sys.stderr)
        return 1
    if args.reveal:  # decryption at the edge, for an operator at the console (docs/privacy.md)
        from service.reveal import Revealer

        doc = Revealer(s).opened(doc)
    print(_dump(doc, pretty=not args.compact))
    return 0


def cmd_orders(args: argparse.Namespace) -> int:
    from streams.queries import order_ids

    s = settings_mod.load(args.profile)
    ids = order_ids(s, status=args.status, customer=args.customer, driver=args.driver)
    for oid in sorted(ids):
        print(oid)
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from streams.queries import alert_listing, alert_row

    s = settings_mod.load(args.profile)
    alerts = alert_listing(s, order_id=args.order, open_only=args.open, limit=args.limit)
    if args.json:
        for a in alerts:
            print(_dump(a))
        return 0
    if not alerts:
        what = f"open alerts of order {args.order}" if args.order else "open alerts" if args.open else "alerts"
        print(f"no {what} in Redis {s.redis_url} (prefix {s.redis_prefix})", file=sys.stderr)
        return 0
    for a in alerts:
        print(alert_row(a))
    return 0


def _report(summary: Any, what: str) -> None:
    rate = summary.events / summary.seconds if summary.seconds else 0.0
    print(f"{what} {summary.events:,} events into {summary.orders:,} orders in {summary.seconds:.1f}s "
          f"({rate:,.0f} events/s, {len(summary.shares)} processes, peak RSS {summary.peak_rss_mb:.0f} MiB/process); "
          f"{summary.dead_letter_count} dead letters", file=sys.stderr)
    for line in summary.dead_letters[:20]:
        print(f"  dead letter: {line}", file=sys.stderr)


def cmd_replay(args: argparse.Namespace) -> int:
    from schemas.topics import ORDER_EVENTS
    from streams import replay_parallel
    from streams.replay import is_record_log, replay_lines
    from streams.worker import make_codec

    s = settings_mod.load(args.profile)
    if args.projection != "orders":
        return _replay_stream_projection(args, s)
    workers = args.workers or os.cpu_count() or 1
    if args.topic or is_record_log(args.file):
        source = (replay_parallel.Source(path=args.file) if args.file else
                  replay_parallel.Source(bootstrap=s.kafka_bootstrap,
                                          topic=args.topic_name or s.topic_renames.get(ORDER_EVENTS.name,
                                                                                       ORDER_EVENTS.name)))
        summary = replay_parallel.run(source, workers, views_out=sys.stdout.buffer)
        sys.stdout.flush()
        _report(summary, "replayed")
        return 0
    with open(args.file, encoding="utf-8") as fh:  # JSON lines: one process, line by line
        result = replay_lines(fh, make_codec(s, epoch_ms=False), source=args.file)
    for view in result.views():
        sys.stdout.buffer.write(orjson.dumps(view, option=orjson.OPT_SORT_KEYS) + b"\n")
    sys.stdout.flush()
    print(f"replayed {result.events} events into {len(result.states)} orders; "
          f"{len(result.rejections)} rejected, {len(result.dead_letters)} undecodable", file=sys.stderr)
    for line in result.dead_letters[:20]:
        print(f"  dead letter: {line}", file=sys.stderr)
    for r in result.rejections[:20]:
        print(f"  rejected: {r.reason_code} {r.event_type} v{r.version} ({r.event_id}): {r.reason}", file=sys.stderr)
    return 0


def _replay_stream_projection(args: argparse.Namespace, s: settings_mod.Settings) -> int:
    """``--projection geofences|alerts|fleet|kpis``: the worker's agents' projections over their input topics."""
    import time

    from schemas.topics import FLEET, ORDER_EVENTS, SENSORS
    from streams import replay_streams
    from streams.projection_builders import GEOFENCE_TOPICS, alert_projection, fleet_projection, geofence_projection
    from streams.worker import make_codec

    if not args.topic:
        print(f"--projection {args.projection} replays from the topics: give --topic", file=sys.stderr)
        return 2
    codec = make_codec(s)
    t0 = time.monotonic()
    if args.projection == "geofences":
        topics = list(GEOFENCE_TOPICS)
        partitions = replay_streams.read_merged(s.kafka_bootstrap, topics, s.topic_renames)
        result = replay_streams.replay_geofences(geofence_projection(s, codec), partitions)
        names = {"transition": "GeofenceTransition", "alert": "Alert", "eta": "OrderEta", "status": "DriverStatus"}
        rows = [{"record_type": names[kind], **value} for kind, value in result.outputs]
    elif args.projection == "kpis":  # the three KPI stages over the alerts and the order views (docs/kpis.md)
        from schemas.topics import ALERTS, ORDER_STATE

        topics = [ALERTS.name, ORDER_STATE.name]
        result = replay_streams.replay_kpis(codec, *(replay_streams.read_merged(s.kafka_bootstrap, [t],
                                                                                s.topic_renames) for t in topics))
        figures = result.figures()
        rows = [{"record_type": "KpiFigures", **figures[k]} for k in sorted(figures)]
    elif args.projection == "stock":  # levels, low-stock alerts, replenishment suggestions (docs/stock.md)
        from schemas.topics import STOCK
        from streams.projection_builders import stock_projection

        topics = [STOCK.name]
        partitions = replay_streams.read_merged(s.kafka_bootstrap, topics, s.topic_renames)
        result = replay_streams.replay_stock(stock_projection(s, codec), partitions)
        names = {"replenishment": "ReplenishmentSuggestion", "alert": "Alert"}
        rows = [{"record_type": names[kind], **value} for kind, value in result.outputs]
    elif args.projection == "fleet":
        topics = [FLEET.name]
        partitions = replay_streams.read_merged(s.kafka_bootstrap, topics, s.topic_renames)
        result = replay_streams.replay_fleet(fleet_projection(s, codec), partitions)
        names = {"suggestion": "RedispatchSuggestion", "alert": "Alert"}
        rows = [{"record_type": names[kind], **value} for kind, value in result.outputs]
    else:
        topics = [ORDER_EVENTS.name, SENSORS.name]
        partitions = replay_streams.read_merged(s.kafka_bootstrap, topics, s.topic_renames)
        result = replay_streams.replay_alerts(alert_projection(s, codec), partitions, s.alert_lateness_ms)
        rows = [result.alerts()[k] for k in sorted(result.alerts())]
    for row in rows:
        sys.stdout.buffer.write(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n")
    sys.stdout.flush()
    print(f"replayed {result.records:,} records of {', '.join(topics)} through {args.projection} in "
          f"{time.monotonic() - t0:.1f}s: {len(result.transitions()):,} transitions, "
          f"{sum(k == 'eta' for k, _ in result.outputs):,} ETAs, {len(result.alerts()):,} alerts, "
          f"{len(result.dead_letters):,} dead letters", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from streams.worker import make_codec

    s = settings_mod.load(args.profile)
    host, port = args.host or s.api_host, args.port or s.api_port
    if not s.api_secret:
        print("kuailv serve: KUAILV_API_SECRET is not set: tokens are signed with the local development key "
              "(fine on this machine, never in production)", file=sys.stderr)
    if bool(s.api_tls_cert) != bool(s.api_tls_key):
        print("kuailv serve: set both KUAILV_API_TLS_CERT and KUAILV_API_TLS_KEY (or neither)", file=sys.stderr)
        return 2
    scheme = "https" if s.api_tls_cert else "http"
    print(f"kuailv serve: {scheme}://{host}:{port} (OpenAPI /openapi.json, index /docs, GraphQL /graphql, "
          f"WebSocket /ws, metrics /metrics), profile {s.profile}", file=sys.stderr)
    options: dict[str, Any] = {"ssl_certfile": s.api_tls_cert, "ssl_keyfile": s.api_tls_key} if s.api_tls_cert else {}
    if s.log_format == "json":
        from service.observability import json_logging

        options["log_config"] = json_logging(args.loglevel)
    uvicorn.run(create_app(s, make_codec(s)), host=host, port=port, log_level=args.loglevel,
                ws_max_queue=64, **options)
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    import getpass

    from privacy.erasure import erase_customer
    from service.reveal import process_keystore
    from streams.worker import make_codec

    s = settings_mod.load(args.profile)
    if not args.yes:
        print(f"kuailv erase: this destroys customer {args.id}'s keys: their names, phones and addresses can never be "
              "read again, anywhere. Add --yes to go on.", file=sys.stderr)
        return 2
    report = erase_customer(s, args.id, keys=process_keystore(s), codec=make_codec(s),
                            actor=(f"cli:{getpass.getuser()}", "operator"))
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from service.auth import issue

    s = settings_mod.load(args.profile)
    try:
        token = issue(s.api_secret, args.subject or args.role, args.role, args.tenant,
                      ttl_s=args.ttl or s.api_token_ttl_s)
        scheme = "https" if s.api_tls_cert else "http"
        # the dashboard takes the token from the URL fragment, which browsers never send to a server
        print(f"{scheme}://{s.api_host}:{s.api_port}/ui/#token={token}" if args.url else token)
    except ValueError as exc:
        print(f"kuailv token: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from schemas.topics import ORDER_EVENTS
    from streams import replay_parallel

    s = settings_mod.load(args.profile)
    source = (replay_parallel.Source(path=args.file) if args.file else
              replay_parallel.Source(bootstrap=s.kafka_bootstrap,
                                          topic=args.topic_name or s.topic_renames.get(ORDER_EVENTS.name,
                                                                                       ORDER_EVENTS.name)))
    prefix = args.prefix or s.redis_prefix
    print(f"rebuilding Redis {s.redis_url} prefix {prefix!r} from {source.describe()}", file=sys.stderr)
    summary = replay_parallel.run(source, args.workers or os.cpu_count() or 1,
                                  redis_target=replay_parallel.RedisTarget(s.redis_url, prefix))
    _report(summary, "rebuilt from")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from schemas.topics import ORDER_EVENTS
    from streams.replay import export_lines, read_topic, read_topic_batches, write_record_log
    from streams.worker import make_codec

    s = settings_mod.load(args.profile)
    topic = args.topic_name or ORDER_EVENTS.name
    json_lines = args.format == "jsonl" or (args.format is None and (args.out == "-" or
                                                                      args.out.endswith((".jsonl", ".json"))))
    if json_lines:
        out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
        try:
            n = export_lines(read_topic(s.kafka_bootstrap, topic), make_codec(s, epoch_ms=False), out)
        finally:
            if out is not sys.stdout:
                out.close()
        print(f"exported {n} order events as JSON lines", file=sys.stderr)
        return 0
    if args.out == "-":
        print("a record log is binary: give --out FILE.avro (or --format jsonl for stdout)", file=sys.stderr)
        return 2
    with open(args.out, "wb") as fh:
        n = write_record_log(read_topic_batches(s.kafka_bootstrap, topic), fh)
    print(f"exported {n} records of {topic} as a record log to {args.out}", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker import AGENTS, run_worker

    agents = [a.strip() for a in args.agents.split(",") if a.strip()] if args.agents else list(AGENTS)
    unknown = sorted(set(agents) - set(AGENTS))
    if unknown:
        print(f"unknown agent(s) {', '.join(unknown)}; known: {', '.join(AGENTS)}", file=sys.stderr)
        return 2
    return run_worker(settings_mod.load(args.profile), agents, args.loglevel)


def cmd_relay(args: argparse.Namespace) -> int:
    from commands.relay_main import main as relay_main

    return relay_main(settings_mod.load(args.profile), interval=args.interval, once=args.once)


def cmd_webhooks_run(args: argparse.Namespace) -> int:
    from webhooks.worker import run_webhooks

    return run_webhooks(settings_mod.load(args.profile), args.loglevel)


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

    print(_dump(progress(settings_mod.load(args.profile)), pretty=True))
    return 0


def cmd_kpis(args: argparse.Namespace) -> int:
    """The KPI figures of a day per dimension (or one id), from Redis (docs/kpis.md)."""
    import redis

    from streams.sinks.redis_kpis import RedisKpis

    s = settings_mod.load(args.profile)
    client = redis.Redis.from_url(s.redis_url)
    store = RedisKpis(client, s.redis_prefix)
    found = store.day(args.dimension, args.day) if args.id is None else \
        [f for f in [store.figures(args.dimension, args.id, args.day)] if f is not None]
    if not found:
        print(f"no {args.dimension} KPIs for {args.day} in Redis {s.redis_url} (prefix {s.redis_prefix})",
              file=sys.stderr)
        return 0
    for f in found:
        if args.json:
            print(orjson.dumps(f, option=orjson.OPT_SORT_KEYS).decode())
            continue

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v * 100:.1f}%"

        def minutes(v: int | None) -> str:
            return "-" if v is None else f"{v / 60_000:.0f}m"

        print(f"{f['dimension']} {f['dimension_id']} {f['day']}: {f['orders']} orders ({f['orders_decided']} decided), "
              f"fulfilment {pct(f['fulfilment_rate'])} ({f['lines_full']}/{f['lines_ordered']} lines), on time "
              f"{pct(f['on_time_rate'])} ({f['on_time']}/{f['delivered']}), delivery p50/p90/p95 "
              f"{minutes(f['delivery_p50_ms'])}/{minutes(f['delivery_p90_ms'])}/{minutes(f['delivery_p95_ms'])}, "
              f"loss {pct(f['loss_rate'])} ({f['lost_kg']:.1f}/{f['scale_kg']:.1f} kg)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kuailv", description=__doc__)
    p.add_argument("--profile", default=None, help="stack profile: dev (default) or test; or set KUAILV_PROFILE")
    sub = p.add_subparsers(dest="command", required=True)

    o = sub.add_parser("order", help="print the current projection of one order as JSON")
    o.add_argument("order_id")
    o.add_argument("--compact", action="store_true", help="one line instead of indented JSON")
    o.add_argument("--reveal", action="store_true", help="open the sealed personal data (names, phones) with the "
                   "key store (KUAILV_KEYSTORE); erased values print as null")
    o.set_defaults(fn=cmd_order)

    ls = sub.add_parser("orders", help="list order ids by status, customer or driver")
    g = ls.add_mutually_exclusive_group(required=True)
    g.add_argument("--status")
    g.add_argument("--customer")
    g.add_argument("--driver")
    ls.set_defaults(fn=cmd_orders)
    al = sub.add_parser("alerts", help="list alerts: the newest, the open ones, or one order's open alerts")
    al.add_argument("--order", default=None, help="only this order's open alerts")
    al.add_argument("--open", action="store_true", help="only open alerts (newest opened first)")
    al.add_argument("--limit", type=int, default=50)
    al.add_argument("--json", action="store_true", help="one Alert record per line, as JSON")
    al.set_defaults(fn=cmd_alerts)

    r = sub.add_parser("replay", help="fold history (file or topic) and print projections as JSON lines")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", help="a record log (.avro, from kuailv export) or JSON lines "
                                             "({\"event_type\": ..., \"event\": {Avro JSON}})")
    src.add_argument("--topic", action="store_true", help="read the order-event topic from the beginning")
    r.add_argument("--topic-name", default=None, help="another topic than kuailv.order-events.v1")
    r.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    r.add_argument("--projection", choices=("orders", "geofences", "alerts", "fleet", "kpis", "stock"),
                   default="orders",
                   help="orders (default): order views; geofences: transitions, ETAs, notices and driver statuses "
                        "from GPS + van orders; alerts: the latest record of every alert from order events + "
                        "sensors; fleet: re-dispatch suggestions from kuailv.fleet.v1; kpis: the latest KPI figures "
                        "per window from the alerts and order views; stock: low-stock alerts and replenishment "
                        "suggestions from kuailv.stock.v1 (--topic only)")
    r.set_defaults(fn=cmd_replay)

    sv = sub.add_parser("serve", help="run the query API (REST, roles) on KUAILV_API_HOST:KUAILV_API_PORT")
    sv.add_argument("--host", default=None)
    sv.add_argument("--port", type=int, default=None)
    sv.add_argument("--loglevel", default="warning")
    sv.set_defaults(fn=cmd_serve)

    er = sub.add_parser("erase", help="erase a customer's personal data (crypto-shredding; docs/privacy.md)")
    er.add_argument("kind", choices=["customer"])
    er.add_argument("id", help="the customer id")
    er.add_argument("--yes", action="store_true", help="really destroy the keys (there is no undo)")
    er.set_defaults(fn=cmd_erase)

    tk = sub.add_parser("token", help="issue an API token for local use (signed with KUAILV_API_SECRET)")
    tk.add_argument("--role", required=True,
                    choices=["operator", "customer_service", "merchant", "customer", "driver", "warehouse_staff"])
    tk.add_argument("--tenant", default=None, help="customer id (merchant, customer), driver id, or warehouse id")
    tk.add_argument("--subject", default=None, help="who the token is for (default: the role)")
    tk.add_argument("--ttl", type=int, default=None, help="seconds (default KUAILV_API_TOKEN_TTL_S)")
    tk.add_argument("--url", action="store_true", help="print the dashboard's URL (/ui/) signed in with the token")
    tk.set_defaults(fn=cmd_token)

    rb = sub.add_parser("rebuild", help="rebuild the Redis order store from the log (topic or record-log file)")
    rb.add_argument("--file", default=None, help="a record log (.avro) instead of the topic")
    rb.add_argument("--topic-name", default=None, help="another topic than kuailv.order-events.v1")
    rb.add_argument("--prefix", default=None, help="Redis key prefix (default: KUAILV_REDIS_PREFIX)")
    rb.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    rb.set_defaults(fn=cmd_rebuild)

    e = sub.add_parser("export", help="write the order-event topic as a record log (.avro) or JSON lines")
    e.add_argument("--out", default="-", help="FILE.avro (record log), or FILE.jsonl / - (JSON lines, the default)")
    e.add_argument("--format", choices=["avro", "jsonl"], default=None, help="default: from the file name")
    e.add_argument("--topic-name", default=None, help="another topic than kuailv.order-events.v1")
    e.set_defaults(fn=cmd_export)

    w = sub.add_parser("worker", help="run the projection worker (start several to scale out)")
    w.add_argument("--loglevel", default="info")
    w.add_argument("--agents", default=None,
                   help="comma-separated subset of: orders,telemetry,geofences,alerts,fleet,kpi-exposures,"
                        "kpi-orders,kpis,stock (default: all)")
    w.set_defaults(fn=cmd_worker)

    rl = sub.add_parser("relay", help="publish recorded order events from the event store to Kafka")
    rl.add_argument("--interval", type=float, default=0.2, help="poll interval in seconds")
    rl.add_argument("--once", action="store_true", help="publish what is there and exit")
    rl.set_defaults(fn=cmd_relay)

    wh = sub.add_parser("webhooks", help="webhook push delivery (docs/webhooks.md)")
    wh_sub = wh.add_subparsers(dest="webhooks_command", required=True)
    whr = wh_sub.add_parser("run", help="run the delivery worker: alerts and order changes -> signed webhooks "
                                        "(subscriptions via the API)")
    whr.add_argument("--loglevel", default="info")
    whr.set_defaults(fn=cmd_webhooks_run)

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

    kp = sub.add_parser("kpis", help="print a day's KPI figures per warehouse, merchant, driver or the city (Redis)")
    kp.add_argument("--dimension", choices=("city", "warehouse", "merchant", "driver"), default="city")
    kp.add_argument("--day", required=True, help="Beijing date of the delivery windows, YYYY-MM-DD")
    kp.add_argument("--id", default=None, help="only this warehouse, merchant (customer) or driver id")
    kp.add_argument("--json", action="store_true", help="one KpiFigures record per line, as JSON")
    kp.set_defaults(fn=cmd_kpis)

    from cli.audit import add_audit_commands

    add_audit_commands(sub)  # kuailv audit run | verify | show | head

    from cli.train import add_parsers as add_model_commands

    add_model_commands(sub)  # kuailv train | report (models/)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())


