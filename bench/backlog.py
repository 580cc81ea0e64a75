"""A late joiner with a backlog: how long a new node takes to hold every record.

    .venv/bin/python bench/backlog.py --records 10000 --out backlog.json

Builds a backlog of real signed records (delegations, work records on the dev
parameters, check records; `--accounts` accounts, two reports per unit so units
verify), ingests them into a seed node (an in-process `Node` on embedded kubo,
127.0.0.1 only), then starts a `main.py node` process with only the seed as
--peer and times until its status lists as many records as the seed holds. The
joiner computes nothing (--unit-limit 0), so what is timed is head sync, fetches,
validation and ledger writes. Reports the seed's ingest rate too. Every wait is
bounded (--timeout); both nodes are stopped at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import DEV, sieve  # noqa: E402
from network import codec  # noqa: E402
from network.node import Node, NodeConfig  # noqa: E402
from network.records import CheckRecord, DelegationRecord, WorkRecord  # noqa: E402
from network.validate import expected_tested, odd_steps_band  # noqa: E402
from tests.netutil import NodeProcess, make_profile  # noqa: E402


def backlog(n_records: int, accounts: int, created: int) -> list[bytes]:
    """About `n_records` valid records: per account a delegation, then per unit two
    work records (the same root: the unit verifies) and a check of each."""
    people = [(SigningKey.generate(), SigningKey.generate()) for _ in range(accounts)]
    out: list[bytes] = []
    for acct, node in people:
        d = DelegationRecord(
            account=bytes(acct.verify_key), node=bytes(node.verify_key), created=created
        )
        out.append(codec.encode(codec.sign(d, acct)))
    sv = sieve.load(DEV.sieve_k)
    unit = 0
    while len(out) < n_records:
        # Totals that pass validation's plausibility rules (made up: nobody computes
        # 2^k-number units here, and no check recomputes them in this bench).
        tested = expected_tested(DEV, unit)
        lo, _ = DEV.unit_range(unit)
        max_n = next(n for n in range(lo, lo + 4096) if sv.is_tested(n))
        odd_steps = odd_steps_band(DEV, tested)[0]
        root = unit.to_bytes(32, "big")
        pair = [people[(2 * unit) % accounts], people[(2 * unit + 1) % accounts]]
        works: list[str] = []
        for acct, node in pair:
            w = WorkRecord(
                params=DEV, unit=unit, root=root, evidence_cid=f"bafkrei{'a' * 52}",
                tested=tested, odd_steps=odd_steps, max_value=3 * max_n + 1, max_n=max_n, overflows=0,
                backend="cpu", compute_ms=5, node=bytes(node.verify_key),
                account=bytes(acct.verify_key), created=created + 1,
            )  # fmt: skip
            signed = codec.sign(w, node)
            out.append(codec.encode(signed))
            works.append(codec.record_cid(signed))
        for (acct, node), work_cid in zip(reversed(pair), works, strict=True):
            c = CheckRecord(
                work_cid=work_cid, block=0, leaf=bytes(32), match=True,
                node=bytes(node.verify_key), account=bytes(acct.verify_key), created=created + 2,
            )  # fmt: skip
            out.append(codec.encode(codec.sign(c, node)))
        unit += 1
    return out[:n_records]


class Seed:
    """The node that already holds the backlog, polled on a thread."""

    def __init__(self, base: Path) -> None:
        profile = make_profile(base / "seed", "seed")
        cfg = NodeConfig(
            data_dir=base / "seed", params=DEV, listen=("/ip4/127.0.0.1/tcp/0",),
            bootstrap=(), head_interval_s=1.0, reannounce_interval_s=2.0,
        )  # fmt: skip
        self.node = Node(cfg, profile, profile.node_key())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.node.poll(0.2)

    def start(self) -> None:
        self.node.start()

    def run(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.node.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--timeout", type=float, default=300.0, help="longest wait for the joiner")
    p.add_argument("--out", type=Path)
    p.add_argument("--keep", action="store_true", help="keep the profiles and logs")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hailstone-backlog-"))
    report: dict[str, object] = {"records": args.records, "accounts": args.accounts}
    seed = Seed(base)
    joiner: NodeProcess | None = None
    try:
        t = time.monotonic()
        records = backlog(args.records, args.accounts, int(time.time()) - 3600)
        report["sign_s"] = round(time.monotonic() - t, 2)
        seed.start()
        t = time.monotonic()
        for data in records:
            seed.node.ingest(data, "backlog")
        ingest_s = time.monotonic() - t
        held = seed.node.status().records
        report["seed_ingest_s"] = round(ingest_s, 2)
        report["seed_ingest_per_s"] = round(len(records) / ingest_s, 1)
        report["seed_records"] = held
        seed.run()
        address = f"{seed.node.ipfs.addresses()[0]}/p2p/{seed.node.ipfs.peer_id()}"
        t = time.monotonic()
        joiner = NodeProcess(base, "joiner", peers=[address], extra=["--unit-limit", "0"])
        joiner.start()
        started_s = time.monotonic() - t
        deadline = t + args.timeout
        progress: list[tuple[float, int]] = []
        caught = None
        while time.monotonic() < deadline:
            have = int(joiner.status().get("records") or 0)
            now = time.monotonic() - t
            if not progress or progress[-1][1] != have:
                progress.append((round(now, 1), have))
            if have >= held:
                caught = now
                break
            time.sleep(0.5)
        report["joiner_start_s"] = round(started_s, 1)
        report["caught_up_s"] = None if caught is None else round(caught, 1)
        report["joiner_records"] = progress[-1][1] if progress else 0
        report["progress"] = progress[:: max(1, len(progress) // 20)]
    finally:
        if joiner is not None:
            report["joiner_sigterm_exit"] = joiner.stop()
        seed.stop()
        if args.keep:
            report["kept"] = str(base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report.get("caught_up_s") is not None else 1


if __name__ == "__main__":
    sys.exit(main())
