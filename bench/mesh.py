"""How the embedded kubo wires a sparse network: a chain of nodes, peers over time.

    .venv/bin/python bench/mesh.py [nodes] [seconds] [routing|-] [topic]

Starts `nodes` embedded kubo nodes in this process (loopback, port 0), node i
dialling only node i-1, and prints each node's connected peers every 5 s for
`seconds`, then a JSON line. `routing` (optional) is written as the repos'
`Routing.Type` before the nodes start, to show whether the library reads it. With
`topic`, every node subscribes to it, and the JSON line gives the process's CPU per
node over the run: what the library costs at that mesh size with no Hailstone loop.

Why it exists (issue #12): `bench/swarm.py` gives each node 1-3 peers, yet at 24
nodes every node was connected to all 23 others, and at 50 to 41-48 of 49,
although the connection manager's high-water mark is 16. This shows the cause
outside the swarm: kubo's DHT (its LAN side, on loopback addresses) meets every
peer within seconds, and the library builds its nodes with the DHT whatever
`Routing.Type` says. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from network.ipfs import embedded as E  # noqa: E402

SAMPLE_EVERY_S = 5.0


def _write_routing(routing: str) -> None:
    """Have every repo configured from now on say `Routing.Type: routing` (the
    wrapper writes its options into the config at each start)."""
    configure = E.low_traffic_config

    def with_routing(cfg: dict, on: bool) -> None:
        configure(cfg, on)
        cfg.setdefault("Routing", {})["Type"] = routing

    E.low_traffic_config = with_routing


def _cpu_s() -> float:
    """CPU seconds this process has used (user and system, all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(
    n: int = 6, seconds: float = 30.0, routing: str | None = None, topic: str | None = None
) -> dict:
    base = tempfile.mkdtemp(prefix="hailstone-mesh-")
    repos = [os.path.join(base, f"n{i}") for i in range(n)]
    if routing is not None:
        _write_routing(routing)
    nodes: list[E.EmbeddedIpfsNode] = []
    subs: list[E.EmbeddedSubscription] = []
    samples: list[tuple[float, list[int]]] = []
    try:
        for repo in repos:
            node = E.EmbeddedIpfsNode(repo)
            if nodes:
                node.connect(nodes[-1].addresses()[0])
            if topic is not None:
                subs.append(node.subscribe(topic))
            nodes.append(node)
        start = time.monotonic()
        cpu_at_start = _cpu_s()
        while time.monotonic() - start < seconds:
            time.sleep(SAMPLE_EVERY_S)
            peers = [len(node.peers()) for node in nodes]
            samples.append((round(time.monotonic() - start, 1), peers))
            print(f"{samples[-1][0]:6.1f} s  peers per node {peers}", flush=True)
        # What the nodes cost while idle, after the first sample: the library's own
        # cost at this mesh size, with no Hailstone loop on top (a topic makes gossipsub
        # keep a mesh and send heartbeats, as a node's gossip topic does).
        cpu = (_cpu_s() - cpu_at_start) / max(1e-9, time.monotonic() - start)
    finally:
        for node in nodes:
            node.close()
    last = samples[-1][1] if samples else []
    routing_seen = None
    if repos:
        with open(os.path.join(repos[0], "config"), encoding="utf-8") as fh:
            routing_seen = json.load(fh).get("Routing", {}).get("Type")
    report = {
        "nodes": n,
        "wired": "a chain: node i dialled node i-1 only",
        "routing_type_in_config": routing_seen,
        "seconds": seconds,
        "peers_at_end": {
            "min": min(last, default=0),
            "median": statistics.median(last) if last else 0,
            "max": max(last, default=0),
        },
        "full_mesh_at_s": next((t for t, p in samples if min(p) == n - 1), None),
        "topic": topic,
        "cpu_percent_of_core_per_node": round(100 * cpu / max(1, n), 3),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        int(args[0]) if args else 6,
        float(args[1]) if len(args) > 1 else 30.0,
        args[2] if len(args) > 2 and args[2] != "-" else None,
        args[3] if len(args) > 3 else None,
    )
