"""The embedded kubo's own idle and busy costs, measured on bare nodes (issue #12).

    .venv/bin/python bench/idle_go.py topics 0 1 3      # idle CPU by subscriptions
    .venv/bin/python bench/idle_go.py poll              # the poller's idle interval
    .venv/bin/python bench/idle_go.py recycle 200       # leaked sessions, then a recycle
    .venv/bin/python bench/idle_go.py gossip default 3000 1024 [rate]   # GOMAXPROCS

Each figure is the process's own CPU time (user + system) over a window, in % of
one core, so other programs on the machine change it less than a wall-clock share
(the Go runtime still spins less when the machine is loaded: compare runs made
one after the other). `gossip` runs a receiver and a publisher as two processes
with GOMAXPROCS as given (or Go's default); the publisher sends N messages of SIZE
bytes as fast as it can (or `rate` a second), and the receiver counts what
arrives. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from network.ipfs import embedded as E  # noqa: E402

WINDOW_S = 25.0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def idle_percent(seconds: float = WINDOW_S) -> float:
    c0, t0 = cpu_s(), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_s() - c0) / (time.monotonic() - t0)


def topics(counts: list[int]) -> None:
    node = E.EmbeddedIpfsNode(tempfile.mkdtemp(), recycle_after_fetches=0)
    try:
        for n in counts:
            subs = [node.subscribe(f"t{i}") for i in range(n)]
            time.sleep(3)
            print(f"{n} topics: {idle_percent():.2f} %", flush=True)
            for s in subs:
                s.close()
    finally:
        node.close()


def poll() -> None:
    node = E.EmbeddedIpfsNode(tempfile.mkdtemp(), recycle_after_fetches=0)
    try:
        with node.subscribe("t"):
            for idle in (0.5, 5.0, 0.5, 5.0):
                E.POLL_IDLE_S = idle
                time.sleep(6)
                print(f"1 topic, poller idle interval {idle} s: {idle_percent():.2f} %", flush=True)
    finally:
        node.close()


def recycle(fetches: int) -> None:
    root = tempfile.mkdtemp()
    a = E.EmbeddedIpfsNode(os.path.join(root, "a"), recycle_after_fetches=0)
    b = E.EmbeddedIpfsNode(os.path.join(root, "b"), recycle_after_fetches=1, recycle_idle_s=1e9)
    try:
        b.connect(a.addresses()[0])
        with a.subscribe("x"), b.subscribe("x"):
            print(f"two nodes, before any fetch: {idle_percent():.2f} %", flush=True)
            for i in range(fetches):
                data = b"object %d " % i + os.urandom(16)
                assert b.get(a.add(data), 10.0, 1000) == data
            time.sleep(3)
            print(f"after {fetches} fetches: {idle_percent():.2f} %", flush=True)
            b._recycle_idle_s = 0.0
            t0 = time.monotonic()
            done = b.recycle_if_due()
            print(f"recycled: {done} in {time.monotonic() - t0:.2f} s", flush=True)
            time.sleep(3)
            print(f"after the recycle: {idle_percent():.2f} %", flush=True)
    finally:
        b.close()
        a.close()


def _receiver(repo: str, n: int) -> None:
    node = E.EmbeddedIpfsNode(repo, recycle_after_fetches=0)
    sub = node.subscribe("bench")
    print(json.dumps({"addr": node.addresses()[0]}), flush=True)
    got, first, last, c0 = 0, None, 0.0, cpu_s()
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        msg = sub.next_message(1.0)
        if msg is None:
            if first is not None and time.monotonic() - last > 5:
                break
            continue
        if msg.data.startswith(b"warm"):
            continue
        if first is None:
            first, c0 = time.monotonic(), cpu_s()
        last = time.monotonic()
        got += 1
    span = round(last - first, 3) if first is not None else None
    print(json.dumps({"got": got, "recv_s": span, "cpu_s": round(cpu_s() - c0, 3)}), flush=True)
    node.close()


def _sender(repo: str, addr: str, n: int, size: int, rate: float) -> None:
    node = E.EmbeddedIpfsNode(repo, recycle_after_fetches=0)
    node.connect(addr)
    with node.subscribe("bench"):
        time.sleep(3)  # the mesh forms
        for _ in range(10):
            node.publish("bench", b"warm")
            time.sleep(0.2)
        time.sleep(1)
        c0, t0 = cpu_s(), time.monotonic()
        for i in range(n):
            node.publish("bench", i.to_bytes(4, "big") + os.urandom(size - 4))
            if rate:
                time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
        sent = {"send_s": round(time.monotonic() - t0, 3), "cpu_s": round(cpu_s() - c0, 3)}
        print(json.dumps(sent), flush=True)
        time.sleep(6)
    node.close()


def gossip(gomaxprocs: str, n: int, size: int, rate: float) -> None:
    env = dict(os.environ, HAILSTONE_NO_REEXEC="1")
    env.pop("GOMAXPROCS", None)
    if gomaxprocs != "default":
        env["GOMAXPROCS"] = gomaxprocs
    root = tempfile.mkdtemp()
    me = os.path.abspath(__file__)
    recv = subprocess.Popen(
        [sys.executable, me, "_recv", os.path.join(root, "a"), str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=root,
    )
    try:
        addr = json.loads(recv.stdout.readline())["addr"]
        send = subprocess.run(
            [sys.executable, me, "_send", os.path.join(root, "b"), addr, str(n), str(size),
             str(rate)],
            capture_output=True, text=True, env=env, cwd=root, timeout=200,
        )
        got = recv.stdout.readline().strip()
        recv.wait(60)
    finally:
        if recv.poll() is None:
            recv.kill()
    sent = send.stdout.strip().splitlines()[-1] if send.stdout.strip() else "{}"
    print(f"GOMAXPROCS={gomaxprocs} rate={rate or 'max'} send {sent} recv {got} "
          f"load {os.getloadavg()[0]:.1f}", flush=True)


def main(argv: list[str]) -> None:
    what, args = argv[0], argv[1:]
    if what == "topics":
        topics([int(a) for a in args] or [0, 1, 3])
    elif what == "poll":
        poll()
    elif what == "recycle":
        recycle(int(args[0]) if args else 200)
    elif what == "gossip":
        gossip(args[0], int(args[1]), int(args[2]), float(args[3]) if len(args) > 3 else 0.0)
    elif what == "_recv":
        _receiver(args[0], int(args[1]))
    elif what == "_send":
        _sender(args[0], args[1], int(args[2]), int(args[3]), float(args[4]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
