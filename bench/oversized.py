"""What a flood of oversized pubsub messages costs the embedded node that receives it,
with the payload cut at the receiver's limit (`max_received_bytes`, the node's 16 KiB)
and without (the library's 512 KiB).

    .venv/bin/python bench/oversized.py --rate 20 --kib 256 --seconds 30 --out f.json

A sender process publishes `--rate` messages of `--kib` KiB a second for `--seconds`
to a receiver process (embedded kubo each, 127.0.0.1 only) that reads every message
through a subscription, as a node's network loop does. Both modes run one after the
other on fresh repos. Reports the receiver's CPU (user + system, % of one core) and
RSS growth over the flood, and the messages it received. Every wait is bounded; both
processes are stopped at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "hailstone-bench-oversized"


def receiver(repo: str, limit: int, seconds: float) -> None:
    """Child: print our address, then read every message for `seconds` + 10 s."""
    sys.path.insert(0, str(ROOT))
    from network.ipfs.embedded import EmbeddedIpfsNode

    node = EmbeddedIpfsNode(repo, listen=["/ip4/127.0.0.1/tcp/0"], max_received_bytes=limit)
    try:
        sub = node.subscribe(TOPIC)
        print(node.addresses()[0], flush=True)
        got = cut = 0
        end = time.monotonic() + seconds + 10
        while time.monotonic() < end:
            msg = sub.next_message(timeout=0.5)
            if msg is not None:
                got += 1
                cut += len(msg.data) == limit + 1
        print(json.dumps({"received": got, "cut": cut}), flush=True)
    finally:
        node.close()


def sender(repo: str, address: str, rate: float, kib: int, seconds: float) -> None:
    """Child: connect, wait for the mesh, then publish at `rate` for `seconds`."""
    sys.path.insert(0, str(ROOT))
    from network.ipfs.embedded import EmbeddedIpfsNode

    node = EmbeddedIpfsNode(repo, listen=["/ip4/127.0.0.1/tcp/0"])
    try:
        node.connect(address)
        node.subscribe(TOPIC)
        time.sleep(3.0)  # (gossipsub's mesh)
        print("flooding", flush=True)
        payload = os.urandom(kib * 1024)
        end = time.monotonic() + seconds
        sent = 0
        while time.monotonic() < end:
            t = time.monotonic()
            node.publish(TOPIC, payload)
            sent += 1
            time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - t)))
        print(json.dumps({"sent": sent}), flush=True)
    finally:
        node.close()


def one_mode(limit: int, args: argparse.Namespace) -> dict:
    base = Path(tempfile.mkdtemp(prefix="hailstone-oversized-"))
    me = [sys.executable, __file__]
    rx = subprocess.Popen([*me, "--child", "receiver", "--repo", str(base / "rx"),
                           "--limit", str(limit), "--seconds", str(args.seconds)],
                          stdout=subprocess.PIPE, text=True)
    tx = None
    try:
        address = rx.stdout.readline().strip()
        tx = subprocess.Popen([*me, "--child", "sender", "--repo", str(base / "tx"),
                               "--address", address, "--rate", str(args.rate),
                               "--kib", str(args.kib), "--seconds", str(args.seconds)],
                              stdout=subprocess.PIPE, text=True)
        assert tx.stdout.readline().strip() == "flooding"
        p = psutil.Process(rx.pid)
        t0, c0, m0 = time.monotonic(), sum(p.cpu_times()[:2]), p.memory_info().rss
        sent = json.loads(tx.stdout.readline())
        elapsed = time.monotonic() - t0
        cpu = 100 * (sum(p.cpu_times()[:2]) - c0) / elapsed
        rss = (p.memory_info().rss - m0) / 2**20
        got = json.loads(rx.stdout.readline())
        return {"limit": limit, **sent, **got, "receiver_cpu_percent_of_core": round(cpu, 1),
                "receiver_rss_growth_mib": round(rss, 1), "seconds": round(elapsed, 1)}
    finally:
        for proc in (tx, rx):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--kib", type=int, default=256)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=2, help="pairs of runs, interleaved")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", choices=("receiver", "sender"))
    p.add_argument("--repo")
    p.add_argument("--limit", type=int)
    p.add_argument("--address")
    args = p.parse_args()
    if args.child == "receiver":
        receiver(args.repo, args.limit, args.seconds)
        return 0
    if args.child == "sender":
        sender(args.repo, args.address, args.rate, args.kib, args.seconds)
        return 0
    sys.path.insert(0, str(ROOT))
    from network import wire
    from network.ipfs.base import MAX_MESSAGE_BYTES

    runs = []
    for _ in range(args.rounds):
        for limit in (MAX_MESSAGE_BYTES, wire.MAX_WIRE_BYTES):
            runs.append(one_mode(limit, args))
            print(json.dumps(runs[-1]), flush=True)
    report = {"rate": args.rate, "kib": args.kib, "seconds": args.seconds, "runs": runs}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
