"""The network layer as the desktop app sees it: the one module app/ imports from network/.

An import-linter contract (pyproject.toml) lets only `app.network_bridge` (and the
screenshot demo) import this module, and nothing else of network/. What is here:

- the contributor session and its events (network/contributor/), shared with the
  headless node;
- the settings the app shows for the network (declared once in network/settings.py);
- the profile: its folder, its account and node keys (`Profile`), a backup;
- the node: `start_node` (the config the settings describe, as `main.py node`
  builds it), the typed values it reports (`NodeStatus`, `NetworkState`);
- usernames: the ownership rule, and the names a profile's ledger already knows.

Heavy modules (the node, IPFS, the ledger) load only when a function here needs
them, so importing the app stays fast and works where kubo cannot load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import Params
from network.bandwidth import COVERAGE as BANDWIDTH_COVERAGE
from network.bandwidth import NOT_MEASURED as TRAFFIC_NOT_MEASURED
from network.contributor import (
    BatchDone,
    BatchStarted,
    BlockTaskDone,
    BlockTaskStarted,
    ContributorSession,
    Event,
    Failed,
    GpuFailed,
    NextTurn,
    NodeWork,
    NoGpu,
    Progress,
    StateChanged,
    StoreFailed,
    UnitDone,
    UnitStarted,
    Wait,
    WorkSource,
    block_task_label,
    claim_renew_interval_s,
)
from network.identity import Profile
from network.keystore import MIN as MIN_KDF_LIMITS
from network.keystore import KeystoreError
from network.profile_dir import default_data_dir, last_migration, legacy_gui_data_dir
from network.settings import DEFAULT_KUBO_API, NETWORK_SETTINGS
from network.state import QUORUM
from network.usernames import UsernameError, is_taken, normalize

if TYPE_CHECKING:  # types for annotations; the modules load when a function needs them
    from network.backup import BackupSummary
    from network.ipfs.capped import TrafficStats
    from network.node import Node, NodeConfig
    from network.release import ReleaseNotice, ReleaseWatcher
    from network.runner import NodeRunner

log = logging.getLogger(__name__)

__all__ = [
    "BANDWIDTH_COVERAGE",
    "TRAFFIC_NOT_MEASURED",
    "DEFAULT_KUBO_API",
    "MIN_KDF_LIMITS",
    "NETWORK_SETTINGS",
    "QUORUM",
    "BatchDone",
    "BatchStarted",
    "BlockTaskDone",
    "BlockTaskStarted",
    "ContributorSession",
    "Event",
    "Failed",
    "GpuFailed",
    "KeystoreError",
    "NextTurn",
    "NoGpu",
    "NodeWork",
    "Profile",
    "Progress",
    "StateChanged",
    "StoreFailed",
    "UnitDone",
    "UnitStarted",
    "UsernameError",
    "Wait",
    "WorkSource",
    "block_task_label",
    "claim_renew_interval_s",
    "create_backup",
    "default_data_dir",
    "headless_peer",
    "is_taken",
    "last_migration",
    "legacy_gui_data_dir",
    "network_unavailable",
    "node_config",
    "normalize",
    "release_off_reason",
    "describe_traffic",
    "restore_backup",
    "set_bandwidth_limit",
    "start_release_watcher",
    "start_node",
    "taken_names",
    "traffic",
]


def network_unavailable() -> str:
    """Why this installation cannot run a node ("" when it can): the node's modules
    must import (the IPFS libraries among them)."""
    try:
        import network.node  # noqa: F401
    except ImportError as exc:
        return f"the network layer is not available ({exc})"
    return ""


def node_config(
    data_dir: Path, params: Params, settings: Mapping[str, Any], **overrides: Any
) -> NodeConfig:
    """The node the settings describe (`NodeConfig.from_settings`, as `main.py node`)."""
    from network.node import NodeConfig

    return NodeConfig.from_settings(settings, data_dir=Path(data_dir), params=params, **overrides)


def start_node(config: NodeConfig, *, bandwidth_limit_kib: int = 0) -> Node:
    """Open the profile's node key and start a node (seconds: IPFS, the ledger).

    Its IPFS node is paced at `bandwidth_limit_kib` KiB/s each way (0: no limit;
    `set_bandwidth_limit` changes it later), as `main.py node` does.

    Raises:
        whatever the start raises (IpfsError, LedgerError, OSError, KeystoreError);
        a half-started node is stopped first.
    """
    from network.bandwidth import open_ipfs
    from network.node import Node

    profile = Profile(config.data_dir)
    node_key = profile.ensure_node_key()
    # Opened here, not in Node.start, so the node gets the paced wrapper (which it
    # owns from now on: Node.stop closes it, also after a failed start).
    node = Node(config, profile, node_key, ipfs=open_ipfs(config, bandwidth_limit_kib))
    try:
        node.start()
    except BaseException:
        try:
            node.stop()
        except Exception:  # noqa: BLE001 - the start's error is the one to report
            log.exception("stopping a half-started node failed")
        raise
    return node


def set_bandwidth_limit(node: Node, kib: int) -> None:
    """Change a running node's bandwidth limit at once (KiB/s each way, 0: none)."""
    from network.bandwidth import CappedIpfsNode, limit_bytes_s

    ipfs = node.ipfs
    if isinstance(ipfs, CappedIpfsNode):
        ipfs.set_limit(limit_bytes_s(kib))


def traffic(node: Node) -> TrafficStats | None:
    """What the node sent and fetched (counted by Hailstone), or None if not counted."""
    from network.bandwidth import CappedIpfsNode

    ipfs = node.ipfs
    return ipfs.traffic() if isinstance(ipfs, CappedIpfsNode) else None


def describe_traffic(stats: TrafficStats) -> str:
    """The rates each way, the limit and what waited for it, in one line."""
    from network.bandwidth import describe

    return describe(stats)


def start_release_watcher(
    node: Node,
    settings: Mapping[str, Any],
    *,
    on_notice: Callable[[ReleaseNotice], None] | None = None,
) -> ReleaseWatcher:
    """Watch the node's network for signed release records (network/release.py).

    Trusts the keys of the `release_keys` setting; with none (or a bad one) the
    watcher stays off (`release_off_reason` says why) and subscribes to nothing.

    Raises:
        IpfsError: the subscription failed.
    """
    from network.release import ReleaseWatcher, release_keys

    try:
        keys = release_keys(settings.get("release_keys", ()))
    except ValueError as exc:
        log.warning("new-version notices are off: %s", exc)
        keys = frozenset()
    watcher = ReleaseWatcher(
        node.ipfs, node.config.network_name, keys, node.config.data_dir, on_notice=on_notice
    )
    watcher.start()
    return watcher


def release_off_reason(settings: Mapping[str, Any]) -> str:
    """Why no new-version notice can appear ("" when release keys are set)."""
    from network.release import off_reason

    return off_reason(settings.get("release_keys", ()))


def headless_peer(config: NodeConfig, *, cores: int = 1) -> tuple[Node, NodeRunner]:
    """A started node and its headless runner (the screenshot demo's second volunteer)."""
    from network.runner import NodeRunner

    node = start_node(config)
    return node, NodeRunner(node, cores=cores)


def taken_names(data_dir: Path, params: Params) -> dict[str, bytes]:
    """Normalised username -> owning account, from the ledger in `data_dir` (if any).

    Reads the account records the ledger holds and applies network.usernames'
    ownership rule (through the derived state). Empty when there is no ledger.
    """
    from network.ledger import LEDGER_FILENAME, Ledger, LedgerError
    from network.state import derive_state

    if not (Path(data_dir) / LEDGER_FILENAME).is_file():
        return {}
    try:
        with Ledger.in_dir(data_dir) as ledger:
            records = [r for r in ledger.valid_records() if r.record.kind == "account"]
    except LedgerError as exc:
        log.warning("cannot read the ledger for usernames: %s", exc)
        return {}
    return dict(derive_state(records, params).name_owners)


def create_backup(data_dir: Path, out: Path) -> BackupSummary:
    """Write the whole profile to `out` (safe while the node runs; raises BackupError)."""
    from network.backup import create_backup as _create

    return _create(Path(data_dir), Path(out))


def restore_backup(backup: Path, target: Path) -> BackupSummary:
    """Unpack `backup` as a new profile in the empty folder `target` (BackupError)."""
    from network.backup import restore_backup as _restore

    return _restore(Path(backup), Path(target))
