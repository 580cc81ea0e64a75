"""Bytes per second with and without the bandwidth limit, on loopback.

Two embedded kubo nodes on 127.0.0.1. For each limit given (KiB/s; 0 = none):
A publishes a burst of records (RECORDS x RECORD_KIB) as fast as its limit lets
it, B counts what arrives; then B fetches a burst of objects (OBJECTS x
OBJECT_KIB) that A holds, as fast as B's limit lets it. Reported per phase: the
payload bytes delivered per second (first send to last arrival), and the bytes
the loopback interface carried meanwhile (psutil; all of `lo`, so other programs
on the machine count too: an upper bound that includes kubo's own traffic and
framing).

    python bench/bandwidth.py --limits 0 16 [--records 200] [--json]

Every wait is bounded (--deadline per phase); the nodes are closed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from network.bandwidth import limit_bytes_s  # noqa: E402
from network.ipfs import open_node  # noqa: E402
from network.ipfs.capped import CappedIpfsNode  # noqa: E402

KIB = 1024


def lo_bytes() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    counters = psutil.net_io_counters(pernic=True).get("lo")
    return None if counters is None else counters.bytes_sent  # loopback: sent == received


def run(limit_kib: int, records: int, record_kib: int, objects: int, object_kib: int,
        deadline_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="hailstone-bw-") as tmp:
        low = limit_kib > 0
        a = CappedIpfsNode(
            open_node("embedded", repo_dir=Path(tmp, "a"), low_traffic=low), limit_bytes_s(limit_kib)
        )
        b = CappedIpfsNode(
            open_node("embedded", repo_dir=Path(tmp, "b"), low_traffic=low), limit_bytes_s(limit_kib)
        )
        try:
            b.connect(a.addresses()[0])
            topic = "hailstone-bench-" + os.urandom(4).hex()
            sub = b.subscribe(topic)
            end = time.monotonic() + deadline_s
            while True:  # the gossipsub mesh first
                if time.monotonic() > end:
                    raise SystemExit("the pubsub mesh did not form")
                a.publish(topic, b"hello")
                m = sub.next_message(0.5)
                if m is not None and m.data == b"hello":
                    break
            time.sleep(1.0)  # let the hellos drain and the bucket refill
            while sub.next_message(0.1) is not None:
                pass
            a.set_limit(limit_bytes_s(limit_kib))
            b.set_limit(limit_bytes_s(limit_kib))
            payloads = {os.urandom(record_kib * KIB) for _ in range(records)}
            lo0, t0 = lo_bytes(), time.monotonic()
            got = 0
            for p in payloads:
                a.publish(topic, p)
                while (m := sub.next_message(0)) is not None:
                    got += m.data in payloads
            end = time.monotonic() + deadline_s
            while got < len(payloads) and time.monotonic() < end:
                m = sub.next_message(0.5)
                if m is not None:
                    got += m.data in payloads
            t1, lo1 = time.monotonic(), lo_bytes()
            publish = {
                "records": len(payloads),
                "delivered": got,
                "payload_bytes": got * record_kib * KIB,
                "seconds": round(t1 - t0, 2),
                "payload_kib_per_s": round(got * record_kib / (t1 - t0), 1),
                "lo_kib_per_s": None if lo0 is None else round((lo1 - lo0) / KIB / (t1 - t0), 1),
                "publishes_deferred": a.traffic().deferred,
            }
            sub.close()
            blobs = [os.urandom(object_kib * KIB) for _ in range(objects)]
            cids = [a.add(x) for x in blobs]
            lo0, t0 = lo_bytes(), time.monotonic()
            fetched = 0
            for cid, blob in zip(cids, blobs, strict=True):
                fetched += b.get(cid, deadline_s, 2 * object_kib * KIB) == blob
            t1, lo1 = time.monotonic(), lo_bytes()
            fetch = {
                "objects": objects,
                "fetched": fetched,
                "seconds": round(t1 - t0, 2),
                "payload_kib_per_s": round(fetched * object_kib / (t1 - t0), 1),
                "lo_kib_per_s": None if lo0 is None else round((lo1 - lo0) / KIB / (t1 - t0), 1),
                "gets_deferred": b.traffic().deferred,
            }
            return {"limit_kib_per_s": limit_kib, "publish": publish, "fetch": fetch}
        finally:
            a.close()
            b.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limits", type=int, nargs="+", default=[0, 16], metavar="KIB_S")
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--record-kib", type=int, default=2)
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--object-kib", type=int, default=8)
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds per phase at most")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [
        run(limit, args.records, args.record_kib, args.objects, args.object_kib, args.deadline)
        for limit in args.limits
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            p, f = r["publish"], r["fetch"]
            print(
                f"limit {r['limit_kib_per_s'] or 'none':>5}: publish {p['delivered']}/{p['records']} "
                f"in {p['seconds']} s = {p['payload_kib_per_s']} KiB/s (lo {p['lo_kib_per_s']}); "
                f"fetch {f['fetched']}/{f['objects']} in {f['seconds']} s = "
                f"{f['payload_kib_per_s']} KiB/s (lo {f['lo_kib_per_s']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
