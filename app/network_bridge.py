"""The one seam between the app and the network layer (no Qt in this module).

`WorkBridge` hands out work units and takes results. When `network.node`
imports and starts, units come from the network and results are published as
signed records; otherwise the app runs *solo*: it computes units 0, 1, 2, ...
of the chosen parameter set in order, remembers the next unit and each result
in a small JSON file under the data directory, and reports
"Network: not connected (solo mode)". Solo mode is real work, not a mock: its
results are exact and can be published later.

`Accounts` wraps `network.identity.Profile` when it is available.

Thread use: the engine worker calls `next_assignment()` and `submit()` from
its thread; the GUI and the network worker call the read methods. One lock
serialises them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import Params, UnitResult

log = logging.getLogger(__name__)

SOLO_STATE_FILE = "solo_units.json"
SOLO_TEXT = "Network: not connected (solo mode)"


@dataclass(frozen=True, slots=True)
class Assignment:
    """One unit to compute: [lo, hi) with its checkpoint file."""

    unit: int
    lo: int
    hi: int
    checkpoint_path: Path


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
    state: str = ""


def _atomic_write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
        unit = self.next_unit
        lo, hi = self.params.unit_range(unit)
        ck = self.data_dir / "checkpoints" / f"{self.params.name}-unit-{unit}.ckpt"
        ck.parent.mkdir(parents=True, exist_ok=True)
        return Assignment(unit, lo, hi, ck)

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
            )
            for u in reversed(self._doc["units"])
        ]


class WorkBridge:
    """Work units and network state for the app, from the network node or solo.

    Args:
        data_dir: the profile directory.
        params: the parameter set to compute.
        settings: all settings values (network ones are passed to the node).
        try_network: False forces solo mode (tests, `--solo`).
    """

    def __init__(
        self,
        data_dir: Path,
        params: Params,
        settings: dict[str, Any] | None = None,
        *,
        try_network: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.params = params
        self.settings = dict(settings or {})
        self._lock = threading.Lock()
        self._solo = SoloLedger(self.data_dir, params)
        self._node: Any = None
        self._node_assignments: dict[int, Any] = {}
        self.solo_reason = "the network layer is not installed"
        # The node starts on the network worker's thread (first poll), never on the
        # GUI thread: opening IPFS can take seconds.
        self._node_pending = try_network and self._network_possible()

    @property
    def solo(self) -> bool:
        return self._node is None and not self._node_pending

    def _network_possible(self) -> bool:
        try:
            from network import node as _node  # noqa: F401
            from network.identity import Profile
        except ImportError as exc:
            self.solo_reason = f"the network layer is not available ({exc})"
            return False
        if not Profile(self.data_dir).has_account():
            self.solo_reason = "this profile has no account"
            return False
        return True

    def _start_node(self) -> Any:
        # Any failure to start the node leaves the app computing solo, with the
        # reason in the log and on the Network page.
        try:
            from network.identity import Profile
            from network.node import Node, NodeConfig

            profile = Profile(self.data_dir)
            key = profile.ensure_node_key()
            rpc = self.settings.get("ipfs_backend") == "rpc"
            config = NodeConfig(
                data_dir=self.data_dir,
                params=self.params,
                ipfs_kind="rpc" if rpc else "embedded",
                api_addr=self.settings.get("kubo_api_addr") if rpc else None,
                spot_check_share=float(self.settings.get("spot_check_share", 0.02)),
                **(
                    {"bootstrap": tuple(self.settings["bootstrap"])}
                    if self.settings.get("bootstrap")
                    else {}
                ),
            )
            node = Node(config, profile, key)
            node.start()
            return node
        except Exception as exc:  # a node that cannot start must not stop the app
            self.solo_reason = f"the network node did not start ({type(exc).__name__}: {exc})"
            log.warning("running solo: %s", self.solo_reason)
            return None

    def stop(self) -> None:
        with self._lock:
            if self._node is not None:
                try:
                    self._node.stop()
                except Exception:
                    log.exception("network node stop failed")

    def poll(self) -> list[Any]:
        """Network events since the last poll; starts the node on the first call."""
        if self._node_pending:
            node = self._start_node()
            with self._lock:
                self._node, self._node_pending = node, False
        with self._lock:
            if self._node is None:
                return []
            try:
                return list(self._node.poll())
            except Exception:
                log.exception("network poll failed")
                return []

    def next_assignment(self) -> Assignment | None:
        with self._lock:
            if self._node_pending:
                return None  # the node is still starting; the engine retries soon
            if self._node is not None:
                a = self._node.next_assignment()
                if a is None:
                    return None
                self._node_assignments[a.unit] = a
                return Assignment(a.unit, a.lo, a.hi, Path(a.checkpoint))
            return self._solo.assignment()

    def submit(self, assignment: Assignment, result: UnitResult) -> str:
        """Store or publish a finished unit. Returns its CID ("" in solo mode)."""
        with self._lock:
            if self._node is not None:
                node_assignment = self._node_assignments.pop(assignment.unit)
                return str(self._node.submit_unit(node_assignment, result))
            self._solo.record(assignment.unit, result)
            return ""

    def status(self) -> BridgeStatus:
        with self._lock:
            if self._node is None and self._node_pending:
                return BridgeStatus(connected=False, text="Network: starting…", state="starting")
            if self._node is None:
                n = self._solo.next_unit
                return BridgeStatus(
                    connected=False,
                    text=SOLO_TEXT,
                    frontier=n,
                    units_verified=0,
                    records=n,
                    state="solo",
                )
            s = self._node.status()
            return BridgeStatus(
                connected=True,
                text=f"Network: {getattr(s, 'state', 'connected')}",
                peer_id=str(getattr(s, "peer_id", "")),
                listen=tuple(getattr(s, "listen", ()) or ()),
                peers=int(getattr(s, "peers", 0) or 0),
                frontier=int(getattr(s, "frontier", 0) or 0),
                units_verified=int(getattr(s, "units_verified", 0) or 0),
                records=int(getattr(s, "records", 0) or 0),
                rejected=dict(getattr(s, "rejected_by_reason", {}) or {}),
                outbox=int(getattr(s, "outbox", 0) or 0),
                state=str(getattr(s, "state", "")),
            )

    def my_units(self) -> list[HistoryRow]:
        with self._lock:
            if self._node is None:
                return self._solo.rows()
            # network.node.Node.my_units(): (unit, status, work CID) tuples.
            return [
                HistoryRow(int(unit), str(status), str(cid), "", 0.0, 0.0, "")
                for unit, status, cid in sorted(self._node.my_units(), reverse=True)
            ]

    def leaderboard(self) -> list[tuple[str, int, int]]:
        """(display name, units, numbers) rows, best first; empty in solo mode."""
        with self._lock:
            if self._node is None:
                return []
            unit_size = self.params.unit_size
            return [
                (str(name), int(units), int(units) * unit_size)
                for name, units in self._node.status().leaderboard
            ]

    def known_usernames(self) -> set[str]:
        """Normalised names the node already knows (to refuse taken names)."""
        with self._lock:
            if self._node is None:
                return set()
            names = set()
            try:
                for acc in getattr(self._node, "accounts", lambda: [])():
                    name = getattr(acc, "username", None) or getattr(acc, "name", None)
                    if name:
                        names.add(str(name).lower())
            except Exception:
                log.exception("could not list accounts")
            return names


# ---- accounts -------------------------------------------------------------------


def accounts_available() -> bool:
    """Whether network.identity (accounts and keys) can be used here."""
    try:
        import network.identity  # noqa: F401
    except ImportError:
        return False
    return True


class Accounts:
    """Account operations on the profile directory, via network.identity.Profile.

    Raises whatever network.identity raises (KeystoreError with a `code`); the
    app turns codes into messages.
    """

    def __init__(self, data_dir: Path, kdf_limits: Any = None) -> None:
        from network.identity import Profile

        self.profile = Profile(data_dir)
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
