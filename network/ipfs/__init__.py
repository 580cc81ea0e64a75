"""IPFS access for Hailstone: one interface, two backends.

``open_node("embedded", ...)`` runs kubo inside this process (the default);
``open_node("rpc", ...)`` uses an existing kubo daemon (IPFS Desktop, a server).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from network.ipfs.base import (
    DEFAULT_CALL_TIMEOUT_S,
    MAX_MESSAGE_BYTES,
    MAX_OBJECT_BYTES,
    IpfsBusy,
    IpfsError,
    IpfsNode,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsUnavailable,
    PubsubMessage,
    Subscription,
)
from network.ipfs.cid import cid_for_bytes, is_valid_cid, verify_bytes

__all__ = [
    "DEFAULT_CALL_TIMEOUT_S",
    "MAX_MESSAGE_BYTES",
    "MAX_OBJECT_BYTES",
    "NODE_KINDS",
    "IpfsBusy",
    "IpfsError",
    "IpfsNode",
    "IpfsTimeout",
    "IpfsTooLarge",
    "IpfsUnavailable",
    "PubsubMessage",
    "Subscription",
    "cid_for_bytes",
    "is_valid_cid",
    "open_node",
    "verify_bytes",
]

NODE_KINDS = ("embedded", "rpc")


def open_node(
    kind: str,
    *,
    repo_dir: str | os.PathLike[str] | None = None,
    listen: Sequence[str] | None = None,
    bootstrap: Sequence[str] = (),
    api_addr: str | None = None,
    mdns: bool = False,
    nat_portmap: bool = False,
    low_traffic: bool = False,
    max_received_bytes: int = MAX_MESSAGE_BYTES,
) -> IpfsNode:
    """Start or connect to an IPFS node.

    Args:
        kind: ``"embedded"`` (kubo inside this process) or ``"rpc"`` (a kubo daemon).
        repo_dir: Repository directory (embedded only; required there).
        listen: Swarm listen multiaddrs (embedded only; default loopback, any port).
        bootstrap: Bootstrap peer multiaddrs (embedded only).
        api_addr: The daemon's RPC API multiaddr, e.g. ``/ip4/127.0.0.1/tcp/5001``
            (rpc only; that is the default).
        mdns: Local network discovery (embedded only).
        nat_portmap: UPnP/NAT-PMP port mapping (embedded only).
        low_traffic: kubo's low-traffic options, for a bandwidth limit (embedded
            only; a daemon's own configuration is its owner's).
        max_received_bytes: the largest pubsub payload the caller accepts; larger
            messages are delivered cut to one byte over it (embedded only; see
            EmbeddedIpfsNode).

    Returns:
        A running node; the caller closes it.

    Raises:
        IpfsUnavailable: The backend is missing or unreachable (message says why).
        IpfsError: Bad arguments.
    """
    if kind == "embedded":
        if repo_dir is None:
            raise IpfsError("the embedded IPFS node needs a repository directory")
        # Imported here so the RPC path never loads the kubo library.
        from network.ipfs.embedded import LOOPBACK_LISTEN, EmbeddedIpfsNode

        return EmbeddedIpfsNode(
            repo_dir,
            listen=tuple(listen) if listen else LOOPBACK_LISTEN,
            bootstrap=tuple(bootstrap),
            mdns=mdns,
            nat_portmap=nat_portmap,
            low_traffic=low_traffic,
            max_received_bytes=max_received_bytes,
        )
    if kind == "rpc":
        from network.ipfs.rpc import DEFAULT_API_ADDR, KuboRpcNode

        return KuboRpcNode(api_addr or DEFAULT_API_ADDR)
    raise IpfsError(f"unknown IPFS node kind {kind!r}; expected one of {', '.join(NODE_KINDS)}")
