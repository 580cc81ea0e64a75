"""The trust protocol's benchmark: `main.py simulate` over nodes x strategies x seeds.

    .venv/bin/python bench/trust_sim.py --nodes 300 --seeds 20 --jobs 2 --out results.jsonl

Runs every strategy at --byzantine (default 0.3) for each seed, then the honest run and
`mixed` at the shares of --overhead-shares, and prints a Markdown table per strategy:
runs, runs drained, total falsely verified and honest lost (both must be 0), and the
median overhead, time to verify and detection latency. Every run's JSON object goes
to --out, one line each, so the table can be rebuilt and checked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from network.simulate import STRATEGIES, simulate  # noqa: E402


def _one(job: tuple[int, float, str, int, int, bool | None]) -> dict:
    nodes, share, strategy, seed, max_ticks, fetches = job
    started = time.perf_counter()
    out = simulate(nodes, share, strategy, seed, max_ticks=max_ticks, fetches=fetches)
    out["seed"] = seed
    out["share"] = share
    out["wall_s"] = round(time.perf_counter() - started, 2)
    return out


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def table(rows: list[dict]) -> str:
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["strategy"], r["share"]), []).append(r)
    lines = [
        "| strategy | byzantine | runs | drained | falsely_verified | honest_lost | "
        "overhead (median) | replication | audits | disputes | time_to_verify median / p99 "
        "(ticks) | detection latency (median) | units_reopened (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (strategy, share), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        # Runs whose evidence fetches went through the fetch queues are marked (+f).
        fetched = " (+f)" if any(r.get("fetch") for r in rs) else ""
        lines.append(
            f"| {strategy}{fetched} | {share:.0%} | {len(rs)} | {sum(r['drained'] for r in rs)} | "
            f"{sum(r['falsely_verified'] for r in rs)} | {sum(r['honest_lost'] for r in rs)} | "
            f"{_median([r['overhead']['total'] for r in rs])} | "
            f"{_median([r['overhead']['replication'] for r in rs])} | "
            f"{_median([r['overhead']['audits'] for r in rs])} | "
            f"{_median([r['overhead']['disputes'] for r in rs])} | "
            f"{_median([r['time_to_verify']['median'] for r in rs])} / "
            f"{_median([r['time_to_verify']['p99'] for r in rs])} | "
            f"{_median([r['detection_latency']['median'] for r in rs])} | "
            f"{_median([r['units_reopened'] for r in rs])} |"
        )
    fetch_rows = [
        (k, rs)
        for k, rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        if any(r.get("fetch") for r in rs)
    ]
    if fetch_rows:
        lines += [
            "",
            "| strategy | byzantine | timeouts (median) | dropped (median) | peers on hold "
            "(max) | backlog (max) | junk slot share (median) | evidence wait median / max "
            "(ticks, medians) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (strategy, share), rs in fetch_rows:
            f = [r["fetch"] for r in rs if r.get("fetch")]
            lines.append(
                f"| {strategy} | {share:.0%} | {_median([x['timeouts'] for x in f])} | "
                f"{_median([x['dropped'] for x in f])} | "
                f"{max(x['peers_on_hold_max'] for x in f)} | {max(x['backlog_max'] for x in f)} | "
                f"{_median([x['junk_slot_share'] for x in f])} | "
                f"{_median([x['evidence_wait']['median'] for x in f])} / "
                f"{_median([x['evidence_wait']['max'] for x in f])} |"
            )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=300)
    p.add_argument("--byzantine", type=float, default=0.3)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--overhead-shares", default="0,0.1,0.3,0.45")
    p.add_argument("--max-ticks", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument(
        "--fetches",
        choices=("auto", "on"),
        default="auto",
        help="model evidence fetches in every run (auto: only where a jammer is), "
        "e.g. the honest baseline for `jam`",
    )
    p.add_argument("--out", type=Path, default=None, help="append each run's JSON here")
    p.add_argument("--table", type=Path, default=None, help="only print the table of a --out file")
    args = p.parse_args()
    if args.table is not None:
        rows = [json.loads(line) for line in args.table.read_text().splitlines() if line]
        print(table(rows))
        return 1 if sum(r["falsely_verified"] + r["honest_lost"] for r in rows) else 0
    fetches = True if args.fetches == "on" else None
    jobs = [
        (args.nodes, args.byzantine, s, seed, args.max_ticks, fetches)
        for s in args.strategies.split(",")
        if s
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    for share in (float(x) for x in args.overhead_shares.split(",") if x):
        strategy = "honest" if share == 0 else "mixed"
        if share == args.byzantine and strategy in args.strategies.split(","):
            continue
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        jobs += [(args.nodes, share, strategy, seed, args.max_ticks, fetches) for seed in seeds]
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for row in pool.map(_one, jobs):
            rows.append(row)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row, sort_keys=True) + "\n")
            print(
                f"{row['strategy']:>17} {row['share']:.2f} seed {row['seed']:>3}: "
                f"false {row['falsely_verified']} lost {row['honest_lost']} "
                f"drained {row['drained']} overhead {row['overhead']['total']} "
                f"({row['wall_s']} s)",
                file=sys.stderr,
                flush=True,
            )
    print(table(rows))
    bad = sum(r["falsely_verified"] + r["honest_lost"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
