"""The one seam between the app and the network layer (no Qt in this module).

`WorkBridge` hands out work and takes results. In network mode it drives a
`network.node.Node` (started on the network worker's thread by
`start_network()`); work is then the next unit the network needs, or one block
of someone else's record to recompute (a dispute to confirm, a spot-check),
and results are published as signed records. When the node cannot start, the
app runs *solo*: it computes units 0, 1, 2, ... of the chosen parameter set in
order, remembers the next unit and each result in a small JSON file under the
data directory, and says "Network: not connected (solo mode)". Solo results
are exact; they are real work, not a mock.

`Accounts` wraps `network.identity.Profile`.

Threads: the engine worker calls `next_work()`, `submit()`, `submit_block()`
and `renew_claim()`; the network worker calls `start_network()`, `poll()`,
`snapshot()` and `stop()`. The GUI thread calls only the solo-mode readers
(`my_units()` while `solo`), never the node. `Node` is thread-safe, so the
bridge's lock guards only the bridge's own fields and is never held across a
node call (a slow fetch on one thread must not stall the other).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import Assignment, BlockEvidence, Params, UnitResult
from engine.files import write_atomic

# The network layer reaches the app only through network.facade, and the rest of
# the app only through this module (import-linter contracts in pyproject.toml).
from network import facade
from network.facade import BANDWIDTH_COVERAGE as BANDWIDTH_COVERAGE
from network.facade import DEFAULT_KUBO_API as DEFAULT_KUBO_API
from network.facade import MIN_KDF_LIMITS as MIN_KDF_LIMITS
from network.facade import NETWORK_SETTINGS as NETWORK_SETTINGS
from network.facade import QUORUM as QUORUM
from network.facade import TRAFFIC_NOT_MEASURED as TRAFFIC_NOT_MEASURED
from network.facade import BatchDone as BatchDone
from network.facade import BatchStarted as BatchStarted
from network.facade import BlockTaskDone as BlockTaskDone
from network.facade import BlockTaskStarted as BlockTaskStarted
from network.facade import ContributorSession as ContributorSession
from network.facade import Failed as Failed
from network.facade import GpuFailed as GpuFailed
from network.facade import NextTurn as NextTurn
from network.facade import NodeWork as NodeWork
from network.facade import NoGpu as NoGpu
from network.facade import Progress as Progress
from network.facade import StateChanged as StateChanged
from network.facade import StoreFailed as StoreFailed
from network.facade import UnitDone as UnitDone
from network.facade import UnitStarted as UnitStarted
from network.facade import Wait as Wait
from network.facade import block_task_label as block_task_label
from network.facade import claim_renew_interval_s

# One profile folder for the app and the CLI (and the move of an old GUI profile).
from network.facade import default_data_dir as default_data_dir
from network.facade import last_migration as last_migration
from network.facade import legacy_gui_data_dir as legacy_gui_data_dir

if TYPE_CHECKING:
    from network.facade import Node, NodeConfig

log = logging.getLogger(__name__)

SOLO_STATE_FILE = "solo_units.json"
# Where an older app kept its network units' root, time and backend (the work
# records carry them; read until migrated, see LegacyUnits).
NETWORK_UNITS_FILE = "network_units.json"
SOLO_TEXT = "Network: not connected (solo mode)"
SYNC_TEXT = "Catching up with the network…"
STARTING_RETRY_MS = 500


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One of my units for the history page."""

    unit: int
    status: str  # "computed (solo)", "reported", "verified", "disputed"
    cid: str
    root_hex: str
    finished_at: float
    seconds: float
    backend: str
    # Who stands behind the unit's status (network mode; app/credit.py puts it in words).
    me: str = ""  # my display name
    agreeing: tuple[str, ...] = ()  # accounts that reported my root, in report order
    disagreeing: tuple[str, ...] = ()  # accounts that reported another root
    credited: bool = False  # verified, and mine is one of the results that count
    candidates: int = 0  # candidate numbers reported in this unit
    work_cids: tuple[str, ...] = ()  # every counted work record of the unit
    phase: str = ""  # under the trust protocol: committed, revealed, paired, ...


@dataclass(frozen=True, slots=True)
class LeaderRow:
    """One leaderboard line (from the derived network state)."""

    rank: int
    name: str
    units: int
    numbers: int
    pending: int = 0  # reported units that are not verified (yet)
    me: bool = False
    weight: int | None = None  # earned weight under the trust protocol (None: it is off)


@dataclass(frozen=True, slots=True)
class CandidateUnit:
    """A unit some report says holds a candidate (a number that did not fall below itself)."""

    unit: int
    count: int
    numbers: tuple[int, ...]
    reported_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BridgeStatus:
    """What the dashboard and the network page show about the network."""

    connected: bool
    text: str
    peer_id: str = ""
    listen: tuple[str, ...] = ()
    peers: int = 0
    frontier: int = 0  # units below this index are verified (solo: computed here)
    units_verified: int = 0
    records: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    outbox: int = 0
    state: str = ""  # "starting", "syncing", "synced", "solo"
    sync_text: str = ""  # the sync state in words
    advice: str = ""  # what is going on and what the volunteer can do, in words
    # What Hailstone itself sent and fetched (rates, the bandwidth limit), in words;
    # "" when not counted (solo, starting).
    traffic: str = ""
    # The verification rule in force (PROTOCOL §11): the root of trust's genesis and
    # beacon keys (0 genesis keys: the trust protocol is off, the two-account quorum
    # counts), and this account's earned weight (None: no policy, or no node running).
    trust_genesis: int = 0
    trust_beacons: int = 0
    account_weight: int | None = None

    @property
    def trust_on(self) -> bool:
        return self.trust_genesis > 0


@dataclass(frozen=True, slots=True)
class NetworkSnapshot:
    """Everything the pages show from the node, taken on the network thread."""

    status: BridgeStatus
    history: tuple[HistoryRow, ...] = ()
    leaderboard: tuple[LeaderRow, ...] = ()
    name_owners: Mapping[str, bytes] = field(default_factory=dict)
    candidates: tuple[CandidateUnit, ...] = ()
    # The newest signed release record the node holds, if newer than this program
    # (network/release.py ReleaseNotice: version, date, notes, text), else None.
    release: Any = None


@dataclass(frozen=True, slots=True)
class NetEvent:
    """Something the node did or saw, for the event log.

    kind: "accepted", "rejected", "published", "acknowledged" or "warning".
    """

    kind: str
    text: str
    cid: str = ""


@dataclass(frozen=True, slots=True)
class StartFailure:
    """Why the node did not start: a message code (app/messages.py) and its detail."""

    code: str
    detail: str


def _atomic_write_json(path: Path, doc: Any) -> None:
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))


class SoloLedger:
    """Units computed on this computer, in order, in one JSON file.

    The file: {"params": name, "start": str, "unit_bits": n, "next_unit": n,
    "units": [{unit, root, seconds, backend, finished_at, tested, odd_steps}]}.
    A file for other parameters is set aside, never overwritten.
    """

    def __init__(self, data_dir: Path, params: Params) -> None:
        self.data_dir = Path(data_dir)
        self.params = params
        self.path = self.data_dir / SOLO_STATE_FILE
        self._doc = self._load()

    def _fresh(self) -> dict:
        return {
            "params": self.params.name,
            "start": str(self.params.start),
            "unit_bits": self.params.unit_bits,
            "next_unit": 0,
            "units": [],
        }

    def _load(self) -> dict:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return self._fresh()
        except (OSError, ValueError) as exc:
            log.warning("solo state %s unreadable (%s); starting from unit 0", self.path, exc)
            return self._fresh()
        if not isinstance(doc, dict) or (
            doc.get("start"),
            doc.get("unit_bits"),
        ) != (str(self.params.start), self.params.unit_bits):
            aside = self.path.with_name(f"{self.path.name}.{int(time.time())}.other")
            try:
                os.replace(self.path, aside)
                log.warning("solo state for other parameters moved to %s", aside)
            except OSError:
                pass
            return self._fresh()
        doc.setdefault("units", [])
        doc.setdefault("next_unit", 0)
        return doc

    @property
    def next_unit(self) -> int:
        return int(self._doc["next_unit"])

    def assignment(self) -> Assignment:
        folder = self.data_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        return Assignment.of_unit(self.params, self.next_unit, folder)

    def record(self, unit: int, result: UnitResult) -> None:
        if unit != self.next_unit:
            raise ValueError(f"solo mode expected unit {self.next_unit}, got {unit}")
        self._doc["units"].append(
            {
                "unit": unit,
                "root": result.root.hex(),
                "seconds": round(result.seconds, 3),
                "backend": result.backend,
                "finished_at": time.time(),
                "tested": result.tested,
                "odd_steps": result.odd_steps,
                "candidates": len(result.candidates),
            }
        )
        self._doc["next_unit"] = unit + 1
        _atomic_write_json(self.path, self._doc)

    def rows(self) -> list[HistoryRow]:
        return [
            HistoryRow(
                unit=int(u["unit"]),
                status="computed (solo)",
                cid="",
                root_hex=str(u.get("root", "")),
                finished_at=float(u.get("finished_at", 0.0)),
                seconds=float(u.get("seconds", 0.0)),
                backend=str(u.get("backend", "")),
                candidates=int(u.get("candidates", 0) or 0),
            )
            for u in reversed(self._doc["units"])
        ]


class LegacyUnits:
    """What an older app kept in network_units.json: root, time and backend of the
    units it published.

    The work records carry the same facts (root, backend, compute_ms, created), so
    nothing writes this file any more. It is read for units whose record the node
    does not hold, and once the node holds every entry's record it is renamed to
    `network_units.json.migrated` (kept, never deleted): nothing is lost.
    """

    def __init__(self, data_dir: Path, params: Params) -> None:
        self.path = Path(data_dir) / NETWORK_UNITS_FILE
        self.key = params.name
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc = {}
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); the work records are used", self.path, exc)
            doc = {}
        self._doc = doc if isinstance(doc, dict) else {}
        units = self._doc.get(self.key, {})
        self.entries: dict[str, dict] = units if isinstance(units, dict) else {}

    def get(self, unit: int) -> dict:
        entry = self.entries.get(str(unit))
        return entry if isinstance(entry, dict) else {}

    def retire_when_covered(self, held: Callable[[str], bool]) -> bool:
        """Set the file aside once `held(cid)` is true for each of its entries (and it
        holds no other parameter set's). Returns True when it was set aside."""
        if not self.path.exists() or set(self._doc) - {self.key}:
            return False
        if not all(held(str(e.get("cid", ""))) for e in self.entries.values()):
            return False
        try:
            os.replace(self.path, self.path.with_name(self.path.name + ".migrated"))
        except OSError as exc:
            log.warning("cannot set %s aside: %s", self.path, exc)
            return False
        self.entries = {}
        self._doc = {}
        return True


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The network's state in words: the status line, the sync state, and advice."""

    text: str
    sync_text: str
    advice: str


# Before this long without a peer, "looking for peers" is the honest word.
NO_PEERS_PATIENCE_S = 60.0


def diagnose(
    *,
    peers: int,
    synced: bool,
    running_s: float,
    bootstrap: int,
    default_bootstrap: bool,
    explicit_peers: int,
    listening: bool,
    port: int,
    outbox: int,
) -> Diagnosis:
    """Say what the network is doing and what the volunteer can do about it.

    Args:
        peers: connected peers now.
        synced: the node holds what its peers' heads list (or has nobody to ask).
        running_s: how long the node has run.
        bootstrap: configured bootstrap peers (0 with default_bootstrap: kubo's own).
        default_bootstrap: kubo's public bootstrap peers are used.
        explicit_peers: peers dialled directly.
        listening: the node has listen addresses.
        port: the listen port setting.
        outbox: our records not yet acknowledged by a peer.
    """
    waiting = (
        f" {outbox} result{'s' if outbox != 1 else ''} wait to be published." if outbox else ""
    )
    if peers:
        plural = "s" if peers != 1 else ""
        text = f"Network: connected to {peers} peer{plural}"
        sync = (
            f"in step with the {peers} connected peer{plural}"
            if synced
            else "catching up: fetching records from peers (computing goes on meanwhile)"
        )
        advice = (
            f"Exchanging signed results with {peers} peer{plural}."
            + (" Catching up with the records they hold." if not synced else "")
            + (
                f" Listening on port {port} (TCP and QUIC); if other volunteers cannot reach "
                f"you, forwarding port {port} on your router helps, but is not required."
                if listening
                else ""
            )
            + waiting
        )
        return Diagnosis(text, sync, advice)
    sync = "nothing to catch up with: no peer is connected"
    sources = "kubo's public bootstrap peers" if default_bootstrap else ""
    if not default_bootstrap and bootstrap:
        sources = f"the {bootstrap} bootstrap peer{'s' if bootstrap != 1 else ''} you set"
    if explicit_peers:
        sources = (sources + " and " if sources else "") + f"{explicit_peers} known peer(s)"
    if not sources:
        return Diagnosis(
            "Network: running, no peers configured",
            sync,
            "No bootstrap peer and no peer address is configured, so this node cannot find "
            "anyone. Add a peer's address under Preferences → Network → Bootstrap peers, or "
            "clear that list to use the defaults, then restart Hailstone." + waiting,
        )
    if running_s < NO_PEERS_PATIENCE_S:
        return Diagnosis(
            "Network: looking for peers…",
            sync,
            f"Contacting {sources}. Computing has started and does not wait for this." + waiting,
        )
    minutes = int(running_s // 60)
    return Diagnosis(
        "Network: no peers reachable",
        sync,
        f"None of {sources} answered in {minutes} min. This computer may be offline, or a "
        "firewall or proxy may block outgoing peer-to-peer connections (TCP and UDP, "
        "usually port 4001). Check the internet connection and the firewall; computing goes "
        "on, and results are published as soon as a peer connects." + waiting,
    )


def classify_start_failure(
    exc: BaseException, settings: Mapping[str, Any], data_dir: Path
) -> StartFailure:
    """The message code and detail for a node that did not start."""
    import errno

    text = str(exc) or type(exc).__name__
    reason = getattr(exc, "reason", "")
    if reason == "disk_full" or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return StartFailure("disk_full", str(data_dir))
    if settings.get("ipfs_backend") == "rpc":
        return StartFailure("ipfs_unreachable", str(settings.get("kubo_api_addr") or "?"))
    if "busy" in text or (isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE):
        return StartFailure("port_busy", str(settings.get("listen_port", 4001)))
    return StartFailure("network_failed", text)


def release_off_reason(settings: Mapping[str, Any]) -> str:
    """Why no new-version notice can appear ("" when release keys are set)."""
    return facade.release_off_reason(settings)


def trust_root(
    settings: Mapping[str, Any], node_overrides: Mapping[str, Any] | None = None
) -> tuple[int, int]:
    """How many genesis and beacon keys the root of trust names (settings
    `trust_genesis` / `trust_beacons`, or a `trust` node override); (0, 0): the trust
    protocol is off."""
    overrides = node_overrides or {}
    if "trust" in overrides:
        policy = overrides["trust"]
        return (0, 0) if policy is None else (len(policy.genesis), len(policy.beacons))

    def count(key: str) -> int:
        return len({str(v).strip().lower() for v in settings.get(key) or () if str(v).strip()})

    genesis = count("trust_genesis")
    return (genesis, count("trust_beacons") if genesis else 0)


def taken_names(data_dir: Path, params: Params) -> dict[str, bytes]:
    """Normalised username -> owning account, from the ledger in `data_dir` (if any)."""
    return facade.taken_names(data_dir, params)


class WorkBridge:
    """Work and network state for the app, from the network node or solo.

    Args:
        data_dir: the profile directory.
        params: the parameter set to compute.
        settings: all settings values (network ones configure the node).
        try_network: False forces solo mode (tests, `--solo`).
        node_overrides: NodeConfig fields that win over the settings (tests and the
            screenshot demo: loopback listen, peers, no bootstrap, `unit_limit`).
    """

    def __init__(
        self,
        data_dir: Path,
        params: Params,
        settings: Mapping[str, Any] | None = None,
        *,
        try_network: bool = True,
        node_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.params = params
        self.settings = dict(settings or {})
        self.node_overrides = dict(node_overrides or {})
        self._lock = threading.Lock()
        self._solo = SoloLedger(self.data_dir, params)
        self._legacy = LegacyUnits(self.data_dir, params)
        self._node: Node | None = None
        self._work: NodeWork | None = None  # the node's work, in the headless order
        self._releases: Any = None  # network/release.py ReleaseWatcher, with the node
        self.solo_reason = "the network layer is not installed"
        self.start_failure: StartFailure | None = None
        self._cancelled = False
        self._started_at = time.monotonic()
        # The node starts on the network worker's thread (start_network), never on
        # the GUI thread: opening IPFS takes seconds.
        self._node_pending = try_network and self._network_possible()

    # -- mode ---------------------------------------------------------------------

    @property
    def solo(self) -> bool:
        """True when units are computed locally (the node is not running nor starting)."""
        with self._lock:
            return self._node is None and not self._node_pending

    def cancel_start(self) -> None:
        """Quitting (any thread): do not start the node, or stop it once its start returns."""
        with self._lock:
            self._cancelled = True
            self._node_pending = False

    def _network_possible(self) -> bool:
        reason = facade.network_unavailable()
        if reason:
            self.solo_reason = reason
            return False
        if not facade.Profile(self.data_dir).has_account():
            self.solo_reason = "this profile has no account"
            return False
        return True

    def node_config(self) -> NodeConfig:
        """The NodeConfig built from the settings and the overrides (as `main.py node`)."""
        return facade.node_config(
            self.data_dir, self.params, self.settings, **self.node_overrides
        )

    def start_network(self) -> StartFailure | None:
        """Start the node (network thread). Returns why it fell back to solo, if it did."""
        with self._lock:
            if not self._node_pending:
                return None
        node: Node | None = None
        failure = None
        try:
            node = facade.start_node(
                self.node_config(), bandwidth_limit_kib=self.bandwidth_limit_kib()
            )
        except Exception as exc:  # a node that cannot start must not stop the app
            log.warning("network node did not start", exc_info=True)
            failure = classify_start_failure(exc, self.settings, self.data_dir)
            self.solo_reason = f"the network node did not start ({type(exc).__name__}: {exc})"
            node = None
        releases = self._watch_releases(node) if node is not None else None
        with self._lock:
            cancelled = self._cancelled
            if not cancelled:
                self._node = node
                self._work = NodeWork(node) if node is not None else None
                self._started_at = time.monotonic()
                self._releases = releases
            self._node_pending = False
            self.start_failure = failure
        if cancelled and releases is not None:
            releases.stop()
        if cancelled and node is not None:
            # The app quit while the node was opening: close it now.
            try:
                node.stop()
            except Exception:
                log.exception("stopping a node started during quit failed")
        return failure

    def _watch_releases(self, node: Node) -> Any:
        """Signed release records from the network (None when the watch cannot start)."""
        try:
            return facade.start_release_watcher(node, self.settings)
        except Exception:  # notices are a courtesy: the node runs without them
            log.warning("new-version notices could not start", exc_info=True)
            return None

    def bandwidth_limit_kib(self) -> int:
        with self._lock:
            return int(self.settings.get("bandwidth_limit_kib", 0))

    def set_bandwidth_limit(self, kib: int) -> None:
        """A new bandwidth limit (network thread): the running node paces by it at once,
        a node that starts later starts with it."""
        with self._lock:
            self.settings["bandwidth_limit_kib"] = int(kib)
        node = self._current_node()
        if node is not None:
            facade.set_bandwidth_limit(node, int(kib))

    def _solo_advice(self) -> str:
        if self.start_failure is None:
            return (
                f"Hailstone computes alone because {self.solo_reason}. Results are exact and "
                "kept on this computer; they earn credit only through the network."
            )
        return (
            f"The network node did not start ({self.start_failure.detail}). Computing goes on "
            "alone. Check the Network settings in Preferences (the port, the IPFS node), "
            "then restart Hailstone."
        )

    def _current_node(self) -> Any:
        with self._lock:
            return self._node

    def stop(self) -> None:
        """Stop the node (network thread, at quit). Idempotent."""
        with self._lock:
            node, self._node = self._node, None
            releases, self._releases = self._releases, None
            self._work = None
            self._node_pending = False
        if releases is not None:
            releases.stop()
        if node is not None:
            try:
                node.stop()
            except Exception:
                log.exception("network node stop failed")

    # -- the network thread ---------------------------------------------------------

    def poll(self, budget_s: float = 0.25) -> list[NetEvent]:
        """Handle network traffic for up to `budget_s`; returns what happened."""
        node = self._current_node()
        if node is None:
            return []
        try:
            events = node.poll(budget_s)
        except Exception as exc:  # the loop must survive anything a peer sends
            log.exception("network poll failed")
            return [NetEvent("warning", f"network poll failed: {exc}")]
        return [NetEvent(e.kind, e.detail, e.cid or "") for e in events]

    def status(self) -> BridgeStatus:
        """The network's status as the pages show it."""
        with self._lock:
            node, pending = self._node, self._node_pending
        if node is None and pending:
            return BridgeStatus(
                connected=False,
                text="Network: starting…",
                state="starting",
                sync_text="starting…",
                advice="Starting the IPFS node and opening the ledger; computing has begun.",
                **self._trust_fields(),
            )
        if node is None:
            n = self._solo.next_unit
            text = SOLO_TEXT
            if self.start_failure is not None:
                text += " because the network node did not start"
            return BridgeStatus(
                connected=False,
                text=text,
                frontier=n,
                records=n,
                state="solo",
                sync_text="not connected (solo mode)",
                advice=self._solo_advice(),
                **self._trust_fields(),
            )
        s = node.status()
        synced = node.is_synced()
        running_s = time.monotonic() - self._started_at
        diag = diagnose(
            peers=int(s.peers),
            synced=synced,
            running_s=running_s,
            bootstrap=len(self.settings.get("bootstrap") or ())
            if "bootstrap" not in self.node_overrides
            else len(self.node_overrides.get("bootstrap") or ()),
            default_bootstrap="bootstrap" not in self.node_overrides
            and not self.settings.get("bootstrap"),
            explicit_peers=len(self.node_overrides.get("peers") or ()),
            listening=bool(s.listen),
            port=int(self.settings.get("listen_port", 4001)),
            outbox=int(s.outbox),
        )
        return BridgeStatus(
            connected=True,
            text=diag.text,
            sync_text=diag.sync_text,
            advice=diag.advice,
            peer_id=s.peer_id,
            listen=tuple(s.listen),
            peers=int(s.peers),
            frontier=int(s.frontier),
            units_verified=int(s.units_verified),
            records=int(s.records),
            rejected=dict(s.rejected_by_reason),
            outbox=int(s.outbox),
            state="synced" if synced else "syncing",
            traffic=self._traffic_text(node),
            **self._trust_fields(node, s),
        )

    def _trust_fields(self, node: Any = None, s: Any = None) -> dict[str, Any]:
        """The verification rule in force and my weight, for BridgeStatus."""
        config = getattr(node, "config", None)
        if config is not None:  # the running node's own policy
            policy = config.trust
            genesis, beacons = (
                (0, 0) if policy is None else (len(policy.genesis), len(policy.beacons))
            )
        else:
            genesis, beacons = trust_root(self.settings, self.node_overrides)
        weight = getattr(s, "account_weight", None) if genesis else None
        return {
            "trust_genesis": genesis,
            "trust_beacons": beacons,
            "account_weight": None if weight is None else int(weight),
        }

    @staticmethod
    def _traffic_text(node: Any) -> str:
        stats = facade.traffic(node)
        return facade.describe_traffic(stats) if stats is not None else ""

    def snapshot(self) -> NetworkSnapshot:
        """Status, my units, leaderboard and username owners in one go (network thread)."""
        status = self.status()
        node = self._current_node()
        if node is None:
            return NetworkSnapshot(status)
        st = node.state()
        me = getattr(node, "account_pub", b"")
        board = tuple(
            LeaderRow(
                e.rank,
                e.display_name,
                e.units_credited,
                e.numbers_verified,
                pending=int(getattr(e, "pending", 0)),
                me=e.account == me,
                weight=st.account_weight(e.account),
            )
            for e in st.leaderboard
        )
        candidates = tuple(
            CandidateUnit(
                unit=int(u.unit),
                count=int(getattr(u, "candidate_count", 0) or len(getattr(u, "candidates", ()))),
                numbers=tuple(int(n) for n in getattr(u, "candidates", ())),
                reported_by=tuple(st.display_name(a) for a in sorted(u.reporters())),
            )
            for u in getattr(st, "candidate_units", ())
        )
        with self._lock:
            releases = self._releases
        return NetworkSnapshot(
            status,
            tuple(self._node_rows(node, st)),
            board,
            dict(st.name_owners),
            candidates,
            release=releases.notice() if releases is not None else None,
        )

    def _node_rows(self, node: Any, st: Any = None) -> list[HistoryRow]:
        st = st if st is not None else node.state()
        me = getattr(node, "account_pub", b"")
        my_name = st.display_name(me) if me else ""
        rows = []
        mine = sorted(node.my_units(), reverse=True)
        if self._legacy.entries:
            held = {cid for _u, _s, cid in mine}
            self._legacy.retire_when_covered(
                lambda cid: cid in held and node.work_record(cid) is not None
            )
        for unit, status, cid in mine:
            work = node.work_record(cid)
            if work is not None:
                meta = {
                    "root": work.root.hex(),
                    "finished_at": float(work.created),
                    "seconds": work.compute_ms / 1000.0,
                    "backend": work.backend,
                }
            else:
                meta = self._legacy.get(unit)
            entry = st.units.get(unit)
            agreeing: tuple[str, ...] = ()
            disagreeing: list[str] = []
            credited = False
            work_cids: list[str] = []
            for report in entry.roots if entry is not None else ():
                work_cids.extend(report.work_cids)
                names = tuple(st.display_name(a) for a in report.accounts)
                if me in report.accounts:
                    agreeing = names
                    # The accounts the state credits for the unit, where it says so;
                    # otherwise the first QUORUM matching results (rule 5).
                    members = getattr(entry, "credited", None)
                    if members is None:
                        members = report.accounts[:QUORUM]
                    credited = (
                        status == "verified"
                        and report.root == entry.verified_root
                        and me in members
                    )
                else:
                    disagreeing.extend(names)
            rows.append(
                HistoryRow(
                    unit=int(unit),
                    status=str(status),
                    cid=str(cid),
                    root_hex=str(meta.get("root", "")),
                    finished_at=float(meta.get("finished_at", 0.0)),
                    seconds=float(meta.get("seconds", 0.0)),
                    backend=str(meta.get("backend", "")),
                    me=my_name,
                    agreeing=agreeing,
                    disagreeing=tuple(disagreeing),
                    credited=credited,
                    candidates=int(getattr(entry, "candidate_count", 0) or 0),
                    work_cids=tuple(sorted(work_cids)),
                    phase=str(getattr(entry, "phase", "") or ""),
                )
            )
        return rows

    def my_units(self) -> list[HistoryRow]:
        """My units, newest first. Reads the node in network mode (not on the GUI thread)."""
        node = self._current_node()
        if node is None:
            return self._solo.rows()
        return self._node_rows(node)

    # -- the engine thread ------------------------------------------------------------

    def next_work(self) -> Assignment | Any | Wait:
        """The next thing to compute: an Assignment, a network.node.BlockTask, or Wait.

        In network mode, `NodeWork`'s order (the headless node's too): a dispute to
        confirm or a due spot-check, then the next unit, then (when no unit is open)
        a spot-check anyway; solo, the next unit in order.
        """
        with self._lock:
            work, pending = self._work, self._node_pending
        if pending:
            return Wait("starting", "connecting to the network…", STARTING_RETRY_MS)
        if work is None:
            return self._solo.assignment()
        return work.next_work()

    def next_assignment(self) -> Assignment | None:
        """The next unit only (block tasks and waits read as None)."""
        work = self.next_work()
        return work if isinstance(work, Assignment) else None

    def renew_claim(self, unit: int) -> None:
        """Keep our claim on a long unit alive (network mode; no-op solo)."""
        with self._lock:
            work = self._work
        if work is not None:
            work.renew_claim(unit)

    @property
    def claim_renew_s(self) -> float:
        """How often a unit's claim is renewed while it computes (as the headless node)."""
        with self._lock:
            work = self._work
        if work is not None:
            return work.claim_renew_s
        return claim_renew_interval_s(float(self.node_overrides.get("claim_ttl_s", 900)))

    def submit(self, assignment: Assignment, result: UnitResult) -> str:
        """Store or publish a finished unit. Returns its CID ("" in solo mode)."""
        node = self._current_node()
        if node is None:
            with self._lock:
                self._solo.record(assignment.unit, result)
            return ""
        # Root, time and backend travel in the work record (the history reads them there).
        return NodeWork(node).submit(assignment, result)  # raises when it cannot store

    def submit_block(self, task: Any, evidence: BlockEvidence) -> str:
        """Publish a recomputed block (a check, or a dispute on mismatch). Returns its CID."""
        node = self._current_node()
        if node is None:
            return ""  # the node went away (quitting); the block is simply not reported
        return NodeWork(node).submit_block(task, evidence)


# ---- accounts -------------------------------------------------------------------


def accounts_available() -> bool:
    """Whether accounts and keys can be used here (they are part of network/, always)."""
    return True


class Accounts:
    """Account operations on the profile directory, via network.identity.Profile.

    Raises whatever network.identity raises (KeystoreError with a `code`); the
    app turns codes into messages.
    """

    def __init__(self, data_dir: Path, kdf_limits: Any = None) -> None:
        self.profile = facade.Profile(data_dir)
        self.kdf_limits = kdf_limits

    def has_account(self) -> bool:
        return self.profile.has_account()

    def info(self) -> dict:
        return self.profile.info()

    def create(self, username: str, passphrase: str) -> Any:
        if self.kdf_limits is not None:
            return self.profile.create(username, passphrase, limits=self.kdf_limits)
        return self.profile.create(username, passphrase)

    def import_file(self, path: Path, passphrase: str, username: str | None = None) -> Any:
        return self.profile.import_account(Path(path), passphrase, username=username)

    def export_file(self, passphrase: str, out: Path) -> None:
        self.profile.export_account(passphrase, Path(out), limits=self.kdf_limits)

    def change_passphrase(self, old: str, new: str) -> None:
        self.profile.change_passphrase(old, new, self.kdf_limits)

    def unlock_node(self) -> bytes:
        """This machine's node public key, unlocked with the stored node secret."""
        return bytes(self.profile.ensure_node_key().verify_key)

    def reauthorize_node(self, passphrase: str) -> bytes:
        """Replace a node key that cannot be opened (asks the account passphrase)."""
        return bytes(self.profile.reauthorize_node(passphrase).verify_key)

    def backup(self, out: Path) -> Any:
        """Write the whole profile to `out` (safe while the node runs; BackupError)."""
        return facade.create_backup(self.profile.data_dir, Path(out))

    @staticmethod
    def restore(backup: Path, target: Path) -> Any:
        """Unpack `backup` as a new profile in the empty folder `target` (BackupError)."""
        return facade.restore_backup(Path(backup), Path(target))

    def nodes(self) -> list[tuple[str, bool, bool]]:
        """(node key hex, revoked, is this machine) for every delegation I hold."""
        own = str(self.info().get("node", ""))
        latest: dict[bytes, Any] = {}
        for d in sorted(self.profile.delegations(), key=lambda d: d.created):
            latest[d.node] = d
        return [
            (node.hex(), bool(getattr(d, "revoked", False)), node.hex() == own)
            for node, d in latest.items()
        ]

    def revoke(self, passphrase: str, node_hex: str) -> None:
        self.profile.revoke_node(passphrase, bytes.fromhex(node_hex))


def username_problem(raw: str, owners: Mapping[str, bytes]) -> str:
    """Why `raw` cannot be a new account's username ("" when it can)."""
    from network.facade import UsernameError, is_taken, normalize

    if not raw.strip():
        return "Choose a username."
    try:
        name = normalize(raw)
    except UsernameError as exc:
        return str(exc).capitalize() + "."
    # A new account has no key yet, so any owner is someone else.
    if is_taken(name, b"", owners):
        return f"'{name}' is already taken on the network; choose another."
    return ""


def passphrase_strength(passphrase: str) -> tuple[int, str]:
    """(score 0..4, hint) for the wizard's strength meter; a rough guide only."""
    n = len(passphrase)
    classes = sum(
        any(f(c) for c in passphrase)
        for f in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    words = len(passphrase.split())
    score = 0
    if n >= 8:
        score += 1
    if n >= 12:
        score += 1
    if n >= 16 or words >= 4:
        score += 1
    if classes >= 3 or words >= 4:
        score += 1
    hints = {
        0: "Too short: use at least 8 characters.",
        1: "Weak: a longer passphrase is much harder to guess.",
        2: "Fair: four or more random words make a strong passphrase.",
        3: "Good.",
        4: "Strong.",
    }
    if n < 8:
        score = 0
    return score, hints[score]


def peer_for_demo(
    data_dir: Path, params: Params, passphrase: str, unit_limit: int, listen: tuple[str, ...]
) -> tuple[Any, Any]:
    """The screenshot demo's second volunteer: a new account and a started headless
    node on loopback, with its runner (not started). Returns (node, runner)."""
    profile = facade.Profile(data_dir)
    profile.create("second-volunteer", passphrase, limits=facade.MIN_KDF_LIMITS)
    config = facade.node_config(
        data_dir,
        params,
        {},
        listen=listen,
        bootstrap=(),
        unit_limit=unit_limit,
        head_interval_s=1.0,
        reannounce_interval_s=2.0,
    )
    return facade.headless_peer(config, cores=1)
