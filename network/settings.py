"""Network settings, declared once (see engine/settings.py for the `Setting` type).

The desktop app builds its preferences widgets from these entries; the headless
node reads the same settings file. Kept Qt-free like the rest of network/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.settings import Setting

DEFAULT_KUBO_API = "/ip4/127.0.0.1/tcp/5001"

NETWORK_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ipfs_backend",
        "choice",
        "embedded",
        "IPFS node",
        "embedded runs an IPFS node inside Hailstone; rpc uses an IPFS (kubo) daemon "
        "you already run, such as IPFS Desktop.",
        restart=True,
        choices=("embedded", "rpc"),
        group="Network",
    ),
    Setting(
        "kubo_api_addr",
        "str",
        DEFAULT_KUBO_API,
        "kubo API address",
        "The RPC API address of your kubo daemon (a multiaddr or http://host:port); "
        "used when the IPFS node is rpc.",
        restart=True,
        group="Network",
    ),
    Setting(
        "listen_port",
        "int",
        4001,
        "Listen port",
        "The TCP/UDP port the embedded node listens on for peers.",
        restart=True,
        minimum=1,
        maximum=65535,
        group="Network",
    ),
    Setting(
        "bootstrap",
        "str_list",
        (),
        "Bootstrap peers",
        "Extra peers to connect to at start, multiaddrs separated by ';' "
        "(/ip4/.../tcp/4001/p2p/...). Empty uses the defaults.",
        restart=True,
        group="Network",
    ),
    Setting(
        "bandwidth_limit_kib",
        "int",
        0,
        "Bandwidth limit",
        "Paces what Hailstone itself sends (the records, heads and claims it publishes) "
        "and fetches (records, heads, evidence) to about this many KiB/s each way; "
        "0: no limit. Applies at once; nothing is dropped, only delayed. Traffic the "
        "IPFS node makes on its own (serving blocks to peers, passing on others' "
        "gossip, the DHT) is not paced: with a limit, the built-in IPFS node runs a "
        "low-traffic configuration from its next start (no relaying for others, no "
        "reachability checks for others).",
        unit="KiB/s",
        minimum=0,
        maximum=1024 * 1024,
        group="Network",
    ),
    Setting(
        "spot_check_share",
        "float",
        0.02,
        "Spot-check share",
        "The share of compute spent re-checking other nodes' blocks.",
        restart=True,  # the node reads it once, when it starts
        minimum=0.0,
        maximum=0.5,
        group="Network",
    ),
    Setting(
        "release_keys",
        "str_list",
        (),
        "Release keys",
        "Keys (64 hex digits, separated by ';') whose signed release records may say "
        "that a newer Hailstone is available (docs/PROTOCOL.md §12). Empty: the "
        "project has not published its release key yet, so no new-version notice is "
        "shown.",
        restart=True,
        group="Network",
    ),
    Setting(
        "trust_genesis",
        "str_list",
        (),
        "Root of trust: genesis accounts",
        "Account keys (64 hex digits, separated by ';') that carry weight from the start "
        "under the verification protocol (docs/PROTOCOL.md §11). Empty: the protocol is "
        "off and units count as verified by the two-account quorum.",
        restart=True,
        group="Network",
    ),
    Setting(
        "trust_beacons",
        "str_list",
        (),
        "Root of trust: beacon accounts",
        "Account keys (64 hex digits, separated by ';') whose nodes publish the beacon "
        "rounds that seed the draw of checkers and auditors.",
        restart=True,
        group="Network",
    ),
)


def network_setting(key: str) -> Setting:
    """The declared entry of `key` (its default, bounds and help), e.g. for a CLI flag."""
    for s in NETWORK_SETTINGS:
        if s.key == key:
            return s
    raise KeyError(key)


def network_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every network setting's value: `values` where it has one, else the default."""
    return {s.key: values.get(s.key, s.default) for s in NETWORK_SETTINGS}


def listen_addresses(port: int) -> tuple[str, ...]:
    """The public listen addresses on `port` (TCP and QUIC, IPv4 and IPv6)."""
    return (
        f"/ip4/0.0.0.0/tcp/{port}",
        f"/ip6/::/tcp/{port}",
        f"/ip4/0.0.0.0/udp/{port}/quic-v1",
        f"/ip6/::/udp/{port}/quic-v1",
    )
