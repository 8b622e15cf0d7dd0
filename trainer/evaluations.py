"""Print one decision evaluation of the model report on its own (the pure maths is in ``models/``).

    .venv/bin/python -m trainer.evaluations stock  [--seed 42] [--weeks 4] [--seeds 3]
    .venv/bin/python -m trainer.evaluations routes [--seed 42] [--days 2] [--seeds 1] [--no-calm]

``stock``: the current replenishment policy vs the suggestions (``models.stock_evaluation``);
``routes``: the simulator's stop order vs OR-Tools (``models.route_evaluation``). Both print the
markdown section ``kuailv report`` puts in ``docs/model-report/index.md``.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trainer.evaluations", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="which", required=True)
    stock = sub.add_parser("stock", help="current replenishment policy vs the suggestions, simulated weeks")
    stock.add_argument("--seed", type=int, default=42)
    stock.add_argument("--weeks", type=int, default=4)
    stock.add_argument("--seeds", type=int, default=1, help="repeat over this many seeds (robustness line)")
    routes = sub.add_parser("routes", help="nearest-neighbour vs OR-Tools stop order, simulated days")
    routes.add_argument("--seed", type=int, default=42)
    routes.add_argument("--days", type=int, default=2)
    routes.add_argument("--seeds", type=int, default=1, help="repeat over this many seeds (robustness line)")
    routes.add_argument("--gps-interval-s", type=float, default=None, help="finer fixes run slower")
    routes.add_argument("--no-calm", action="store_true", help="skip the table without jams and accidents")
    args = p.parse_args(argv)
    if args.which == "stock":
        from models.stock_evaluation import stock_report_section

        title, body = stock_report_section(args.seed, args.weeks, args.seeds)
    else:
        from models.route_evaluation import FAST, route_report_section

        gps = args.gps_interval_s if args.gps_interval_s is not None else FAST["gps_interval_s"]
        title, body = route_report_section(args.seed, args.days, args.seeds, not args.no_calm, gps_interval_s=gps)
    print(f"## {title}\n\n{body}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
