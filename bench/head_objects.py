"""The IPFS block store of a node that keeps publishing heads, with and without the
removal of head objects no longer needed (network/nodeparts/blockgc.py).

    .venv/bin/python bench/head_objects.py --records 10000 --heads 60 --per-head 5 --out f.json

Two in-process nodes on embedded kubo (127.0.0.1 only, dev parameters): a writer
that holds a backlog of real signed records (bench/backlog.py's) and a reader that
follows it. Then, `--heads` times, the writer takes `--per-head` new records and the
reader waits until it holds them (one head each, as a node gaining records does).
The same run is made twice, one after the other: with the collector switched off
(`off`, the code before it) and on (`on`, its grace shortened to `--grace-s` so the
run shows the steady state; a node uses blockgc.GRACE_S, 120 s). Reports each
node's block store (bytes of `ipfs/blocks`) after the backlog, after the heads and,
for `on`, after one more grace; the growth per head; and the removals. Every wait is
bounded (--timeout); both nodes are stopped at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from backlog import backlog  # noqa: E402

from network.nodeparts import blockgc  # noqa: E402
from tests.netutil import InProcessNode, free_port  # noqa: E402


def store_bytes(node: InProcessNode) -> int:
    blocks = Path(node.node.config.data_dir) / "ipfs" / "blocks"
    return sum(p.stat().st_size for p in blocks.glob("*/*.data"))


def wait_for(predicate, timeout: float, what: str, nodes: list[InProcessNode]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            said = {n.node.config.data_dir.name: _brief(n) for n in nodes}
            raise SystemExit(f"timed out waiting for {what}: {json.dumps(said)}")
        time.sleep(0.1)


def _brief(n: InProcessNode) -> dict:
    st = n.node.status()
    return {"records": st.records, "pending": st.pending, "peers": len(n.node.ipfs.peers()),
            "fetch": str(st.fetch), "head": n.node._heads.last_head_cid}


def one_run(base: Path, mode: str, records: list[bytes], args: argparse.Namespace) -> dict:
    if mode == "on":  # (off: nothing is collected, whatever the grace)
        blockgc.GRACE_S = args.grace_s
    writer = InProcessNode(base, f"writer-{mode}", [], port=free_port())
    nodes = [writer]
    try:
        writer.start()
        reader = InProcessNode(base, f"reader-{mode}", [writer.node.ipfs.addresses()[0]],
                               port=free_port())
        nodes.append(reader)
        if mode == "off":
            for n in nodes:
                n.node._block_gc.collect = lambda: 0  # type: ignore[method-assign]
        reader.start()
        backlog_part, fresh = records[: args.records], records[args.records :]
        t = time.monotonic()
        writer.node._store.ingest_many([(r, "bench") for r in backlog_part])
        held = writer.node.status().records
        wait_for(lambda: reader.node.status().records >= held, args.timeout, "the backlog",
                 nodes)
        report: dict = {"backlog_s": round(time.monotonic() - t, 1)}
        time.sleep(args.grace_s + 2.0)  # (the catch-up's heads past their grace)
        before = {"writer": store_bytes(writer), "reader": store_bytes(reader)}
        t = time.monotonic()
        for i in range(args.heads):
            batch = fresh[i * args.per_head : (i + 1) * args.per_head]
            writer.node._store.ingest_many([(r, "bench") for r in batch])
            held = writer.node.status().records
            wait_for(lambda h=held: reader.node.status().records >= h, args.timeout, f"head {i}",
                     nodes)
        report["heads_s"] = round(time.monotonic() - t, 1)
        after = {"writer": store_bytes(writer), "reader": store_bytes(reader)}
        report["store_bytes_before_heads"] = before
        report["store_bytes_after_heads"] = after
        report["growth_bytes_per_head"] = {
            k: round((after[k] - before[k]) / args.heads) for k in before
        }
        if mode == "on":
            time.sleep(args.grace_s + 2.0)
            report["store_bytes_one_grace_later"] = {
                "writer": store_bytes(writer), "reader": store_bytes(reader)}
        report["removed"] = {
            "writer": writer.node._block_gc.removed,
            "reader": reader.node._block_gc.removed,
        }
        report["records_held"] = {
            "writer": writer.node.status().records, "reader": reader.node.status().records}
        return report
    finally:
        for n in reversed(nodes):
            n.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=10_000, help="the backlog")
    p.add_argument("--heads", type=int, default=60)
    p.add_argument("--per-head", type=int, default=5)
    p.add_argument("--grace-s", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=300.0, help="longest single wait")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    total = args.records + args.heads * args.per_head
    records = backlog(total, 20, int(time.time()) - 3600)
    report: dict = {"records": args.records, "heads": args.heads, "per_head": args.per_head,
                    "grace_s": args.grace_s, "production_grace_s": blockgc.GRACE_S}
    base = Path(tempfile.mkdtemp(prefix="hailstone-headobjects-"))
    try:
        for mode in ("off", "on"):
            report[mode] = one_run(base, mode, records, args)
            print(mode, json.dumps(report[mode]), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
