"""How a node runs: `NodeConfig` (defaults for a desktop on the production network,
or built from a profile's settings) and the trust policy it names.

Re-exported by network/node.py, where callers import them from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import Params
from network.identity import hex_keys
from network.ipfs.embedded import DEFAULT_BOOTSTRAP, PUBLIC_LISTEN
from network.nodeparts.planner import CLAIM_SETTLE_S, LISTEN_S
from network.settings import listen_addresses, network_values
from network.trust import TrustPolicy


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How a node runs. Defaults suit a desktop on the production network."""

    data_dir: Path
    params: Params
    ipfs_kind: str = "embedded"
    api_addr: str | None = None
    listen: tuple[str, ...] = PUBLIC_LISTEN
    peers: tuple[str, ...] = ()
    bootstrap: tuple[str, ...] = DEFAULT_BOOTSTRAP
    claim_ttl_s: int = 900
    head_interval_s: float = 5.0
    reannounce_interval_s: float = 10.0
    redial_interval_s: float = 10.0
    fetch_timeout_s: float = 10.0
    spot_check_share: float = 0.02
    max_skew_s: int = 600
    # Units at or above this index are never handed out (None: no limit).
    unit_limit: int | None = None
    # The verification protocol's root of trust (PROTOCOL §11). None: the legacy
    # two-account quorum, until the node publishes commits, reveals and audits itself.
    trust: TrustPolicy | None = None
    # A unit without a pair this long after its draw hands the reporter role to the next
    # committer (weighted first), so a reporter that never reveals holds it one round.
    trust_stall_s: float = 600.0
    # A node with peers waits this long at most for a first head before computing.
    sync_timeout_s: float = 20.0
    # Between claiming a fresh unit and computing it (PROTOCOL §8, "Conflicting
    # claims"), and how long a starting node has peers before it takes a new unit
    # (planner.py says why these values; tests set them).
    claim_settle_s: float = CLAIM_SETTLE_S
    listen_s: float = LISTEN_S

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], *, data_dir: Path, params: Params, **overrides: Any
    ) -> NodeConfig:
        """The node a profile's settings describe (network/settings.py), for both front
        ends; `overrides` (command-line flags, tests' loopback addresses) win.

        Raises:
            TypeError: an override names no NodeConfig field.
        """
        s = network_values(settings)
        rpc = s["ipfs_backend"] == "rpc"
        fields: dict[str, Any] = {
            "data_dir": Path(data_dir),
            "params": params,
            "ipfs_kind": "rpc" if rpc else "embedded",
            "api_addr": s["kubo_api_addr"] if rpc else None,
            "listen": listen_addresses(int(s["listen_port"])),
            # Empty means kubo's public bootstrap peers.
            "bootstrap": tuple(s["bootstrap"]) or DEFAULT_BOOTSTRAP,
            "spot_check_share": float(s["spot_check_share"]),
            "trust": trust_policy(s["trust_genesis"], s["trust_beacons"]),
        }
        fields.update(overrides)
        return cls(**fields)

    @property
    def network_name(self) -> str:
        return self.params.name


def trust_policy(genesis: Iterable[str], beacons: Iterable[str]) -> TrustPolicy | None:
    """The verification protocol's root of trust from account keys in hex; None when no
    genesis account is named (the protocol is off).

    Raises:
        ValueError: a key that is not 64 hex digits, or beacons without genesis keys.
    """

    g, b = hex_keys(genesis, "genesis"), hex_keys(beacons, "beacon")
    if not g:
        if b:
            raise ValueError("beacon accounts are named but no genesis account")
        return None
    return TrustPolicy(genesis=g, beacons=b)
