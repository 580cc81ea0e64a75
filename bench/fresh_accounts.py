"""A flood of fresh accounts: what each held identity costs a node afterwards.

    .venv/bin/python bench/fresh_accounts.py --steps 0,10000,30000 --out fresh.json

Every well-formed account and delegation record signed by a fresh key is valid, so
a node stores all of them (PROTOCOL §11, "A flood of fresh accounts' records"). This
bench measures what that costs the node for everything it does next: a real
`Node` (embedded kubo on 127.0.0.1, its SQLite ledger) ingests fresh accounts (an
account record and a delegation each, in batches as sync delivers them) up to each
step, then times, with the flood held:
- ingest: fresh identity records a second while the flood arrives;
- honest: one honest delegation and then `--honest` work-shaped records (checks of
  a held work) from one account, each ingested alone as gossip delivers it (ms a
  record);
- state: deriving the network state from scratch (ms; the node does it whenever a
  record arrived since the last time it was asked, e.g. for each status);
- head: building and publishing our head after one more record arrived (ms; a node
  does it every head interval while records arrive, 5 s by default);
- read by kind: reading the held work records (`RecordStore.by_kind`), which the
  planner, the checks and the trust duty do every loop (ms);
- held again: ingesting records already held, as a page's bundle or a replay brings
  them (ms a record);
- RSS: the process's resident memory (MiB) and its growth a held record (bytes).
The node is started but its loop is not polled, so nothing else runs meanwhile and
each figure is that operation's own. Bounded by --steps and --timeout; the node stops
at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil
from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import DEV, verify_range  # noqa: E402
from network import codec  # noqa: E402
from network.node import Node, NodeConfig  # noqa: E402
from network.records import AccountRecord, CheckRecord, DelegationRecord  # noqa: E402
from tests.netutil import make_profile  # noqa: E402

BATCH = 256  # records per ingest call, as one fetched batch
DUPLICATES = 2048  # held records ingested again at each step


def fresh_accounts(count: int, created: int) -> list[bytes]:
    """`count` fresh accounts: an account record and a delegation each."""
    out: list[bytes] = []
    for i in range(count):
        acct, node = SigningKey.generate(), SigningKey.generate()
        pub = bytes(acct.verify_key)
        out.append(codec.encode(codec.sign(AccountRecord(account=pub, username=f"flood{i}", created=created), acct)))
        out.append(codec.encode(codec.sign(
            DelegationRecord(account=pub, node=bytes(node.verify_key), created=created), acct)))
    return out


def honest_records(node, count: int, created: int) -> list[bytes]:
    """A fresh honest delegation, then `count` checks it authorises of our own work
    record (block i of it, so each is a new record validation must authorise)."""
    acct, key = SigningKey.generate(), SigningKey.generate()
    out = [codec.encode(codec.sign(DelegationRecord(
        account=bytes(acct.verify_key), node=bytes(key.verify_key), created=created), acct))]
    work_cid = node._store.works()[0][0]
    for i in range(count):
        c = CheckRecord(work_cid=work_cid, block=i % 8, leaf=i.to_bytes(32, "big"), match=False,
                        node=bytes(key.verify_key), account=bytes(acct.verify_key), created=created + i)
        out.append(codec.encode(codec.sign(c, key)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", default="0,10000,30000", help="fresh accounts held at each measurement")
    p.add_argument("--honest", type=int, default=50, help="honest records ingested at each step")
    p.add_argument("--timeout", type=float, default=1200.0, help="stop after this many seconds")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    steps = sorted({int(s) for s in args.steps.split(",")})
    end = time.monotonic() + args.timeout
    base = Path(tempfile.mkdtemp(prefix="fresh-accounts-"))
    proc = psutil.Process()
    profile = make_profile(base / "target", "target")
    config = NodeConfig(data_dir=base / "target", params=DEV, listen=("/ip4/127.0.0.1/tcp/0",),
                        bootstrap=())
    node = Node(config, profile, profile.node_key())
    rows: list[dict] = []
    try:
        node.start()
        created = int(time.time()) - 3600  # (every record's `created` in the past)
        a = node.next_assignment()  # one held work record for the honest checks to name
        node.submit_unit(a, verify_range(DEV, a.lo, a.hi, "cpu"))
        held = 0
        for step in steps:
            flood = fresh_accounts(step - held, created)
            t0 = time.perf_counter()
            for i in range(0, len(flood), BATCH):
                if time.monotonic() > end:
                    raise TimeoutError(f"--timeout {args.timeout:g} s passed at {held} accounts")
                node._store.ingest_many([(r, "flood") for r in flood[i:i + BATCH]])
            flood_s = time.perf_counter() - t0
            again = flood[-DUPLICATES:]  # (none at a step that adds nothing)
            held = step
            del flood
            gc.collect()
            node._publish_head()  # (the flood's head: what follows changes one page)
            honest = honest_records(node, args.honest, created + 1)
            t0 = time.perf_counter()
            for r in honest[:-1]:
                verdict = node._store.ingest(r, "peer")
                if verdict is None or hasattr(verdict, "reason_code"):
                    raise SystemExit(f"an honest record was not accepted: {verdict}")
            honest_ms = (time.perf_counter() - t0) * 1000 / (len(honest) - 1)
            node._publish_head()
            node._store.ingest(honest[-1], "peer")
            t0 = time.perf_counter()
            node._publish_head()
            head_ms = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            node._store.by_kind("work")
            read_ms = (time.perf_counter() - t0) * 1000
            again_ms = None
            if again:
                t0 = time.perf_counter()
                for i in range(0, len(again), BATCH):
                    node._store.ingest_many([(r, "bundle") for r in again[i:i + BATCH]])
                again_ms = (time.perf_counter() - t0) * 1000 / len(again)
            node._store._state = None  # (derive from scratch, as after any arrival)
            t0 = time.perf_counter()
            st = node._store.state()
            state_ms = (time.perf_counter() - t0) * 1000
            row = {
                "fresh_accounts": step,
                "records": node._store.counts()[0],
                "flood_ingest_per_s": round(2 * (step - (rows[-1]["fresh_accounts"] if rows else 0))
                                            / flood_s, 1) if flood_s > 0 else None,
                "honest_ms_per_record": round(honest_ms, 2),
                "state_ms": round(state_ms, 1),
                "head_ms": round(head_ms, 1),
                "read_by_kind_ms": round(read_ms, 2),
                "held_again_ms_per_record": None if again_ms is None else round(again_ms, 4),
                "accounts_in_state": len(st.accounts),
                "rss_mib": round(proc.memory_info().rss / 2**20, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
    if len(rows) >= 2 and rows[-1]["records"] > rows[0]["records"]:
        growth = (rows[-1]["rss_mib"] - rows[0]["rss_mib"]) * 2**20
        per = growth / (rows[-1]["records"] - rows[0]["records"])
        print(f"RSS growth a held record: {per:.0f} B", flush=True)
    report = {"steps": rows, "honest_records": args.honest, "batch": BATCH}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
