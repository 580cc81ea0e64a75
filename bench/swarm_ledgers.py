"""Read a kept swarm's ledgers: who computed what, when, and what each node held.

    .venv/bin/python bench/swarm_ledgers.py /tmp/swarm-XXXX [--out ledgers.json]

`bench/swarm.py --keep` leaves every node's profile in its base folder. This reads
each `n###/ledger.sqlite3` (read-only) and reports, per node, when it stored its
first own record (its start), how many units it computed, how many of those were
*extra* (a third or later account's report of a unit, and how long after the unit's
second report), and how many work records and records it held at the end; and for
the swarm, when each unit got its second report. A node's own records are those it
stored with no source (PROTOCOL §9: `source` names the peer or "fetch" otherwise);
times are each node's own `received_at`, so on one machine they compare.

It answers the question a swarm report cannot: were the extra reports made by late
nodes that had not heard of the earlier reports, or by a race at the frontier?
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
from pathlib import Path

# A unit needs this many accounts' reports (PROTOCOL §10); the rest are extra.
REPORTS_NEEDED = 2


def _read_node(db: Path) -> dict:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        own = con.execute(
            "SELECT cid, kind, account, unit, received_at FROM records WHERE source IS NULL OR source = ''"
        ).fetchall()
        held = dict(con.execute("SELECT kind, count(*) FROM records GROUP BY kind").fetchall())
    finally:
        con.close()
    works = [(cid, account, unit, at) for cid, kind, account, unit, at in own if kind == "work"]
    return {
        "start": min((at for *_, at in own), default=None),
        "works": works,
        "held": held,
    }


def analyse(base: Path) -> dict:
    nodes = {p.parent.name: _read_node(p) for p in sorted(base.glob("n*/ledger.sqlite3"))}
    if not nodes:
        raise SystemExit(f"no n*/ledger.sqlite3 under {base}")
    t0 = min(n["start"] for n in nodes.values() if n["start"] is not None)
    # Each unit's reports in the order they were made: (time, account, node).
    reports: dict[int, list[tuple[float, bytes, str]]] = {}
    for name, n in nodes.items():
        for _cid, account, unit, at in n["works"]:
            reports.setdefault(unit, []).append((at, account, name))
    verified_at: dict[int, float] = {}
    extras: list[dict] = []
    for unit, rs in reports.items():
        rs.sort()
        accounts: list[bytes] = []
        for at, account, name in rs:
            if account in accounts:
                continue  # a second node of one account: not a report of its own
            accounts.append(account)
            if len(accounts) == REPORTS_NEEDED:
                verified_at[unit] = at
            elif len(accounts) > REPORTS_NEEDED:
                extras.append(
                    {
                        "unit": unit,
                        "node": name,
                        "after_verified_s": round(at - verified_at[unit], 1),
                    }
                )
    per_node = {}
    for name, n in nodes.items():
        mine = [e for e in extras if e["node"] == name]
        per_node[name] = {
            "start_s": None if n["start"] is None else round(n["start"] - t0, 1),
            "units_computed": len(n["works"]),
            "extra": len(mine),
            "extra_after_verified_s": sorted(e["after_verified_s"] for e in mine),
            "held_work": n["held"].get("work", 0),
            "held_records": sum(n["held"].values()),
        }
    lateness = [e["after_verified_s"] for e in extras]
    held_work = [p["held_work"] for p in per_node.values()]
    return {
        "base": str(base),
        "nodes": len(nodes),
        "units": len(reports),
        "work_records": sum(len(rs) for rs in reports.values()),
        "extra_reports": len(extras),
        "extra_after_verified_s": (
            None
            if not lateness
            else {
                "median": statistics.median(lateness),
                "min": min(lateness),
                "max": max(lateness),
                "within_5s": sum(1 for x in lateness if x <= 5) / len(lateness),
            }
        ),
        "last_unit_verified_s": (
            None if not verified_at else round(max(verified_at.values()) - t0, 1)
        ),
        "held_work_per_node": {
            "min": min(held_work),
            "median": statistics.median(held_work),
            "max": max(held_work),
        },
        "per_node": per_node,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="a swarm's base folder (bench/swarm.py --keep)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    report = analyse(args.base)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    summary = {k: v for k, v in report.items() if k != "per_node"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
