"""The bandwidth limit (the `bandwidth_limit_kib` setting) for both front ends.

`open_ipfs` opens the IPFS node a `NodeConfig` describes, as `Node.start` would,
wrapped in a `CappedIpfsNode` (network/ipfs/capped.py) that paces what Hailstone
sends and fetches, and, with a limit, with kubo's low-traffic configuration. The
app and `main.py node` hand the result to `Node(ipfs=...)`, so the node itself
needs no knowledge of the limit. `COVERAGE` is the one sentence both front ends
show about what the limit covers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from network import wire
from network.ipfs import open_node
from network.ipfs.capped import CappedIpfsNode, TrafficStats

if TYPE_CHECKING:
    from network.node import NodeConfig

__all__ = ["COVERAGE", "CappedIpfsNode", "TrafficStats", "describe", "limit_bytes_s", "open_ipfs"]

KIB = 1024

# What the limit covers, in words (the Network page, `main.py node`'s log).
COVERAGE = (
    "The limit paces what Hailstone itself publishes and fetches, each way. The IPFS "
    "node's own traffic (serving blocks to peers, passing on others' gossip, the DHT) "
    "is not paced; with a limit the built-in node keeps it low (fewer connections, DHT "
    "client only, no relaying) from its next start."
)
# Why the figures are counted, not measured.
NOT_MEASURED = (
    "Counted by Hailstone: the built-in IPFS library exports no byte counters, so "
    "kubo's own traffic is not in these figures."
)


def limit_bytes_s(kib: int) -> int:
    """The setting's KiB/s as bytes per second (0: no limit)."""
    return max(0, int(kib)) * KIB


def open_ipfs(config: NodeConfig, limit_kib: int) -> CappedIpfsNode:
    """The IPFS node `config` describes, paced at `limit_kib` KiB/s (0: counted only).

    Raises:
        IpfsError: as `network.ipfs.open_node` (busy port, missing library, ...).
    """
    inner = open_node(
        config.ipfs_kind,
        repo_dir=config.data_dir / "ipfs",
        listen=config.listen,
        bootstrap=config.bootstrap,
        api_addr=config.api_addr,
        low_traffic=limit_kib > 0,
        max_received_bytes=wire.MAX_WIRE_BYTES,  # (as Node does: PROTOCOL §7)
    )
    return CappedIpfsNode(inner, limit_bytes_s(limit_kib))


def _rate(bytes_s: float) -> str:
    return f"{bytes_s / KIB:.1f} KiB/s"


def describe(stats: TrafficStats) -> str:
    """One line: the rates each way, the limit, and what waited for it."""
    line = f"in {_rate(stats.received_rate)}, out {_rate(stats.sent_rate)}"
    if stats.limit_bytes_s:
        line += f" (limit {stats.limit_bytes_s // KIB} KiB/s each way"
        if stats.deferred:
            line += f"; {stats.deferred} sends or fetches waited {stats.waited_s:.0f} s in all"
        line += ")"
    return line
