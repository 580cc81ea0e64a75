"""The network node: gossip in, records out, one shared state.

`Node` is Qt-free and thread-safe. Two loops drive it:

- the network loop calls `poll()` every fraction of a second: it drains the
  three gossip topics (network/wire.py), validates everything received
  (parse → validate → ledger, rejections counted by reason), fetches records
  that peers' heads list and we lack, publishes our head, and re-announces
  our outbox until a peer's head includes each entry;
- the compute loop asks for work: `next_block_task()` (a dispute to confirm,
  or a spot-check to run) and `next_assignment()` (the next unit, claimed on
  the network first), runs it with the engine, and hands the result back
  (`submit_block`, `submit_unit`).

Every result goes to the ledger's outbox (durably) before it is published, so
nothing computed is lost to a crash or a vanished peer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import FIFOCache
from nacl.signing import SigningKey

from engine import (
    Assignment,
    BlockEvidence,
    Params,
    UnitResult,
    checkpoint_unit,
    merkle_proof,
    merkle_root,
    unit_checkpoint_path,
)
from engine.files import write_atomic
from network import codec, wire
from network import rejection as R
from network import trust as T
from network.fetchqueue import FetchCounters, FetchQueue
from network.identity import Profile
from network.ipfs import (
    MAX_OBJECT_BYTES,
    IpfsError,
    IpfsNode,
    IpfsTimeout,
    Subscription,
    cid_for_bytes,
    open_node,
)
from network.ipfs.embedded import DEFAULT_BOOTSTRAP, PUBLIC_LISTEN
from network.ledger import Ledger, LedgerError, stored_record
from network.nodeparts.backoff import FetchBackoff
from network.nodeparts.evidence import PENDING, EvidenceFetcher
from network.nodeparts.heads import HeadBook
from network.nodeparts.ratelimit import PeerRateLimiter
from network.records import (
    MAX_BEACON_LISTED,
    MAX_CANDIDATES,
    MAX_SEEN_COMMITS,
    RECHECK_FACTOR,
    BeaconRecord,
    CheckRecord,
    CommitRecord,
    DelegationRecord,
    DisputeRecord,
    RecheckRecord,
    SignedRecord,
    WorkRecord,
    candidate_list_bytes,
)
from network.rejection import Accepted, Rejection
from network.settings import listen_addresses, network_values
from network.state import NetworkState, derive_state, next_unit
from network.trust import TrustPolicy
from network.validate import ValidationContext, authorised, recheck, validate
from network.validate import context as validation_context

log = logging.getLogger("hailstone.node")


# Records waiting for their delegation or work record to arrive, and for how long.
MAX_PENDING = 2000
PENDING_TTL_S = 600.0
MAX_FETCH_QUEUE = 10_000
FETCH_THREADS = 4
# How many refused or failed CIDs are remembered.
MAX_REMEMBERED = 50_000
HOUSEKEEPING_INTERVAL_S = 60.0
TRUST_INTERVAL_S = 1.0  # reveals due and beacon rounds are looked at this often
# An idle node spot-checks a work only while fewer accounts than this have checked it:
# every idle node checking every work made check records (and evidence fetches) grow
# with nodes x works (bench/swarm.py: 370 checks for 50 works at 16 nodes).
IDLE_CHECKERS = 2
# Dispute confirmations waiting for the compute loop.
MAX_CONFIRM_TASKS = 1000
# Evidence objects: one 32-byte leaf per block, in one IPFS object.
MAX_EVIDENCE_BYTES = MAX_OBJECT_BYTES

_RECORD = "record"
_HEAD = "head"


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


@dataclass(frozen=True, slots=True)
class BlockTask:
    """One block of someone else's work to recompute.

    `purpose` is "spot-check" (we chose the block) or "confirm" (a dispute names it).
    """

    purpose: str
    work_cid: str
    block: int
    lo: int
    hi: int
    claimed_leaf: bytes | None
    proof: tuple[bytes, ...]
    dispute_cid: str | None = None
    disputed_leaf: bytes | None = None


@dataclass(frozen=True, slots=True)
class NodeStatus:
    peer_id: str
    listen: tuple[str, ...]
    peers: int
    frontier: int
    frontier_bound: int
    units_verified: int
    records: int
    rejected: int
    rejected_by_reason: dict[str, int]
    outbox: int
    pending: int
    state_digest: str = ""
    leaderboard: tuple[tuple[str, int], ...] = ()
    fetch: FetchCounters | None = None
    # The verification protocol (PROTOCOL §11): this account's weight (None: no
    # policy), units per phase, and units holding a reported candidate.
    account_weight: int | None = None
    phases: tuple[tuple[str, int], ...] = ()
    candidate_units: tuple[int, ...] = ()

    def to_json(self, state: str) -> dict:
        return {
            "state_digest": self.state_digest,
            "leaderboard": [list(e) for e in self.leaderboard],
            "peer_id": self.peer_id,
            "listen": list(self.listen),
            "peers": self.peers,
            "frontier": self.frontier,
            "units_verified": self.units_verified,
            "records": self.records,
            "rejected": self.rejected,
            "outbox": self.outbox,
            "state": state,
            "fetch": None if self.fetch is None else dataclasses.asdict(self.fetch),
            "account_weight": self.account_weight,
            "phases": dict(self.phases),
            "candidate_units": list(self.candidate_units),
        }


def _phase_counts(st: NetworkState) -> tuple[tuple[str, int], ...]:
    """Units per phase under the trust protocol, else per status (for the status file)."""
    counts: dict[str, int] = {}
    for u in st.units.values():
        key = u.phase or u.status
        if u.reopened:
            counts["reopened"] = counts.get("reopened", 0) + 1
        counts[key] = counts.get(key, 0) + 1
    return tuple(sorted(counts.items()))


def trust_policy(genesis: Iterable[str], beacons: Iterable[str]) -> TrustPolicy | None:
    """The verification protocol's root of trust from account keys in hex; None when no
    genesis account is named (the protocol is off).

    Raises:
        ValueError: a key that is not 64 hex digits, or beacons without genesis keys.
    """

    def keys(values: Iterable[str], what: str) -> frozenset[bytes]:
        out = set()
        for v in values:
            try:
                key = bytes.fromhex(v.strip())
            except ValueError:
                key = b""
            if len(key) != 32:
                raise ValueError(f"{what} key {v.strip()[:70]!r} is not 64 hex digits")
            out.add(key)
        return frozenset(out)

    g, b = keys(genesis, "genesis"), keys(beacons, "beacon")
    if not g:
        if b:
            raise ValueError("beacon accounts are named but no genesis account")
        return None
    return TrustPolicy(genesis=g, beacons=b)


@dataclass(frozen=True, slots=True)
class _Taken:
    """A unit another account already committed on, given to next_unit as a claim."""

    unit: int
    node: bytes
    account: bytes
    expires_at: float


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something the node did or saw: kind is accepted, rejected, published, peers, warning."""

    kind: str
    detail: str = ""
    cid: str | None = None


def state_digest(st: NetworkState) -> str:
    """A short fingerprint of what the state shows: equal digests, equal views."""
    h = hashlib.sha256()
    h.update(f"{st.frontier}|{st.frontier_bound}|".encode())
    for unit in sorted(st.units):
        u = st.units[unit]
        h.update(f"{unit}:{u.status}:{(u.verified_root or b'').hex()}|".encode())
    for e in st.leaderboard:
        h.update(f"{e.rank}:{e.account.hex()}:{e.units_credited}:{e.numbers_verified}|".encode())
    h.update(",".join(sorted(st.confirmed_disputes)).encode())
    return h.hexdigest()[:16]


def claim_id(node: bytes) -> str:
    """A node holds one claim at a time: a new claim replaces its previous one."""
    return node.hex()


class Node:
    """A contributor's node: identity, ledger, IPFS and the gossip protocol.

    Every record it holds is parsed once and kept in memory (`_records`), with
    the delegations and work records indexed as they arrive, so validation and
    the derived state never re-parse the ledger.
    """

    def __init__(
        self,
        config: NodeConfig,
        profile: Profile,
        node_key: SigningKey,
        *,
        ipfs: IpfsNode | None = None,
        clock: Callable[[], float] = time.time,
        extra_param_sets: tuple[Params, ...] = (),
    ) -> None:
        self.config = config
        self.params = config.params
        self.profile = profile
        self.node_key = node_key
        self.node_pub = bytes(node_key.verify_key)
        self.account_pub = profile.account_public_key()
        self._clock = clock
        self._param_sets = (config.params, *extra_param_sets)
        self._lock = threading.RLock()
        # Serialises record writes (ledger, then the in-memory tables); taken before
        # `_lock`, never inside it, and never held by readers.
        self._store_lock = threading.RLock()
        self._ipfs = ipfs
        self._ledger: Ledger | None = None
        self._subs: dict[str, Subscription] = {}
        # Jobs with their own data and lock (network/nodeparts/).
        self._rates = PeerRateLimiter()
        # parsed records, by CID, and the indexes validation needs
        self._records: dict[str, SignedRecord] = {}
        self._delegations: list[DelegationRecord] = []
        self._works: dict[str, WorkRecord] = {}
        self._state: NetworkState | None = None
        # records held until their delegation or work arrives: cid -> (bytes, source, since)
        self._pending: dict[str, tuple[bytes, str, float]] = {}
        self._claims_waiting: deque[tuple[wire.Claim, str]] = deque(maxlen=MAX_PENDING)
        # CIDs we refused (not fetched again) and CIDs whose fetch failed (retry later)
        self._rejected: FIFOCache[str, None] = FIFOCache(MAX_REMEMBERED)
        self._backoff = FetchBackoff()  # failed fetches and when to try them again
        # fetching: (kind, cid, peer) jobs, done off the network loop, queued per peer
        # and served round-robin so one peer's flood cannot starve the rest
        self._fetches = FetchQueue(per_peer_queue=MAX_FETCH_QUEUE)
        self._inbox: queue.Queue[tuple[bytes, str]] = queue.Queue()
        # candidates others reported, to re-check exactly: (work CID, candidate)
        self._rechecks: queue.Queue[tuple[str, int]] = queue.Queue()
        # sync: heads and head pages of each peer that we hold completely
        self._heads = HeadBook()  # our head's pages, and how far we follow each peer's
        # Each peer's newest announced head: a queued older one is skipped when its turn
        # comes (bench/swarm.py at 16 nodes: a head every 5 s from each peer queued
        # ~600 stale head fetches per node, delaying the acknowledgements of our
        # outbox and so re-announcing it again and again).
        self._newest_head: FIFOCache[str, str] = FIFOCache(MAX_REMEMBERED)
        self._last_trust = 0.0
        self._beacon_listed: set[str] = set()
        self._beacon_round = 0
        self._roles: dict[int, bytes] = {}  # unit -> the reporter we compute it to check
        self._seeded_at: dict[int, float] = {}  # unit -> when we first saw its draw
        # compute-side work
        self._confirm_tasks: deque[BlockTask] = deque()
        self._confirming: set[tuple[str, int]] = set()
        self._checked: set[str] = set()
        self._checkers: dict[str, set[bytes]] = {}  # work CID -> accounts that checked it
        self._evidence_retry: dict[str, float] = {}
        # Others' evidence, fetched on its own thread (the compute loop never waits).
        self._evidence = EvidenceFetcher(self._fetch_evidence_of)
        self._spot_budget = 0.0
        # timers
        self._last_head = 0.0
        self._last_reannounce = 0.0
        self._last_redial = 0.0
        self._last_housekeeping = 0.0
        self._started_at = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.events: deque[NodeEvent] = deque(maxlen=1000)
        self._fresh: list[NodeEvent] = []

    # --- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        """Open the ledger and IPFS, subscribe, and publish our identity records."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._ledger = Ledger.in_dir(self.config.data_dir)
        try:
            if self._ipfs is None:
                self._ipfs = open_node(
                    self.config.ipfs_kind,
                    repo_dir=self.config.data_dir / "ipfs",
                    listen=self.config.listen,
                    bootstrap=self.config.bootstrap,
                    api_addr=self.config.api_addr,
                )
            for name, topic in wire.topics(self.config.network_name).items():
                self._subs[name] = self._ipfs.subscribe(topic)
        except BaseException:
            self.stop()
            raise
        # The ledger holds only validated records: parse each once, never re-validate.
        for row in self._ledger.records():
            signed = codec.parse(row.data)
            if not isinstance(signed, Rejection):
                self._cache(row.cid, signed)
        # Our own account and delegation records travel like any other record.
        for signed in self.profile.local_records():
            if signed.kind in ("account", "delegation"):
                self._add_own(signed)
        self._republish_evidence()
        # Work records this node already checked or disputed are not checked again.
        self._checked = {
            s.record.work_cid
            for s in self._records.values()
            if s.kind in ("check", "dispute") and s.record.node == self.node_pub
        }
        t = threading.Thread(target=self._recheck_loop, name="hailstone-recheck", daemon=True)
        t.start()
        self._threads.append(t)
        self._evidence.start()
        # Several fetchers, so one record that no peer serves cannot hold up the rest.
        for i in range(FETCH_THREADS):
            t = threading.Thread(target=self._fetch_loop, name=f"hailstone-fetch-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._started_at = time.monotonic()
        self._dial_peers()

    def is_synced(self) -> bool:
        """True once we hold every record some peer's head lists (or waited long enough,
        or have no peers).

        A fresh node asks for work only then, so it does not recompute what the
        network already verified.
        """
        if not self.config.peers and not self.config.bootstrap:
            return True
        if time.monotonic() - self._started_at > self.config.sync_timeout_s:
            return True
        if self._heads.heads_completed == 0:
            return False
        with self._lock:
            return self._fetches.empty() and self._inbox.empty() and not self._pending

    def stop(self) -> None:
        """Stop the helper threads, close subscriptions, IPFS and the ledger. Idempotent."""
        self._stop.set()
        self._evidence.stop(timeout_s=self.config.fetch_timeout_s + 5)
        for t in self._threads:
            t.join(timeout=self.config.fetch_timeout_s + 5)
        self._threads.clear()
        try:
            for sub in self._subs.values():
                try:
                    sub.close()
                except IpfsError:
                    pass
            self._subs.clear()
            if self._ipfs is not None:
                try:
                    self._ipfs.close()
                except IpfsError as exc:
                    log.warning("IPFS did not stop cleanly: %s", exc)
        finally:
            if self._ledger is not None:
                self._ledger.close()

    @property
    def ledger(self) -> Ledger:
        assert self._ledger is not None, "start() the node first"
        return self._ledger

    @property
    def ipfs(self) -> IpfsNode:
        assert self._ipfs is not None, "start() the node first"
        return self._ipfs

    # --- the network loop ----------------------------------------------------------

    def poll(self, budget_s: float = 0.2) -> list[NodeEvent]:
        """Handle what arrived, run due periodic work; returns what happened."""
        deadline = time.monotonic() + budget_s
        wait = min(0.05, budget_s)
        own_id = self.ipfs.peer_id()
        while time.monotonic() < deadline:
            got = False
            for name, sub in list(self._subs.items()):
                try:
                    msg = sub.next_message(0.0)
                except IpfsError as exc:
                    self._event("warning", f"subscription {name}: {exc}")
                    continue
                if msg is None:
                    continue
                got = True
                if msg.from_peer != own_id:
                    self._on_message(msg.from_peer, msg.data)
            while True:
                try:
                    data, source = self._inbox.get_nowait()
                except queue.Empty:
                    break
                got = True
                self.ingest(data, source)
            if not got:
                time.sleep(wait)
        self._periodic()
        with self._lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def _periodic(self) -> None:
        now = time.monotonic()
        if now - self._last_head >= self.config.head_interval_s:
            self._last_head = now
            self._publish_head()
        if now - self._last_reannounce >= self.config.reannounce_interval_s:
            self._last_reannounce = now
            self._reannounce()
        if now - self._last_redial >= self.config.redial_interval_s:
            self._last_redial = now
            self._dial_peers()
        if now - self._last_housekeeping >= HOUSEKEEPING_INTERVAL_S:
            self._last_housekeeping = now
            self._housekeeping()
        if self.config.trust is not None and now - self._last_trust >= TRUST_INTERVAL_S:
            self._last_trust = now
            self._trust_tick()

    def _housekeeping(self) -> None:
        """Forget what must not grow without bound."""
        try:
            self.ledger.expire_claims()
        except LedgerError as exc:
            self._event("warning", f"ledger: {exc}")
        cutoff = time.monotonic() - PENDING_TTL_S
        with self._lock:
            for cid in [c for c, (_, _, since) in self._pending.items() if since < cutoff]:
                del self._pending[cid]
        # (asked outside the lock: an IPFS call)
        self._heads.forget_peers_except(self._safe_peers())

    def _on_message(self, peer: str, data: bytes) -> None:
        if not self._rates.allow(peer):
            self._reject(Rejection(R.RATE_LIMITED, "peer exceeds the message rate"), peer)
            return
        msg = wire.decode_message(data)
        if isinstance(msg, Rejection):
            self._reject(msg, peer)
        elif isinstance(msg, wire.Announcement):
            if msg.record is not None:
                self.ingest(msg.record, peer)
            elif msg.cid is not None and self._worth_fetching(msg.cid):
                self._want(_RECORD, msg.cid, peer)
        elif isinstance(msg, wire.Claim):
            self._on_claim(msg, peer)
        elif isinstance(msg, wire.Head):
            self._on_head(msg, peer)

    def _on_claim(self, claim: wire.Claim, peer: str) -> None:
        with self._lock:
            ctx = self._context()
        if authorised(ctx, claim.account, claim.node, int(self._clock())) is not None:
            # Most often the claim outran the node's delegation record: hold it until
            # the delegation arrives; an unauthorised claim simply never takes effect.
            self._claims_waiting.append((claim, peer))
            return
        expires = min(claim.expires, int(self._clock()) + wire.MAX_CLAIM_TTL)
        try:
            self.ledger.put_claim(
                claim_id(claim.node), claim.unit, claim.node, claim.account, expires
            )
        except LedgerError as exc:
            self._event("warning", f"cannot store claim: {exc}")

    def _on_head(self, head: wire.Head, peer: str) -> None:
        # A head we already hold completely needs nothing; any other is fetched
        # again, so records whose fetch failed are retried at the next announcement.
        with self._lock:
            self._newest_head[peer] = head.head
        if not self._heads.holds(peer, head.head):
            self._want(_HEAD, head.head, peer)

    def _worth_fetching(self, cid: str) -> bool:
        """Not held, not refused, not pending, and not failed too recently."""
        with self._lock:
            if cid in self._records or cid in self._rejected or cid in self._pending:
                return False
        return self._backoff.due(cid)

    def _want(self, kind: str, cid: str, peer: str = "") -> None:
        """Queue a fetch under the peer that announced or listed it (fairness, blame)."""
        self._fetches.put(peer, (kind, cid, peer))

    def _fetch_loop(self) -> None:
        """Fetch wanted records and heads off the network loop (gets may block)."""
        while not self._stop.is_set():
            taken = self._fetches.get(timeout=0.2)
            if taken is None:
                continue
            queue_peer, (kind, cid, peer) = taken
            ok = timed_out = False
            try:
                if kind == _HEAD:
                    with self._lock:
                        stale = self._newest_head.get(peer, cid) != cid
                    if not stale:  # (a stale head counts as done: a newer one is queued)
                        self._fetch_head(peer, cid)
                else:
                    # Every get has a hard deadline (fetch_timeout_s); a timed-out get
                    # counts against the peer that wanted it fetched (FetchQueue).
                    data = self.ipfs.get(cid, self.config.fetch_timeout_s, codec.MAX_RECORD_BYTES)
                    self._inbox.put((data, "fetch"))
                self._backoff.succeeded(cid)
                ok = True
            except IpfsTimeout as exc:
                timed_out = True
                self._note_failure(cid)
                log.info("fetch %s timed out: %s", cid, exc)
            except IpfsError as exc:
                self._note_failure(cid)
                log.info("fetch %s failed: %s", cid, exc)
            except Exception:  # noqa: BLE001 - a fetcher must outlive anything a peer sends
                log.exception("fetching %s failed", cid)
            finally:
                self._fetches.done(queue_peer, ok=ok, timed_out=timed_out)

    def _note_failure(self, cid: str) -> None:
        self._backoff.failed(cid)

    def _fetch_head(self, peer: str, head_cid: str) -> None:
        """Read a peer's head index and each of its pages we do not hold completely."""
        index = wire.decode_head_index(
            self.ipfs.get(head_cid, self.config.fetch_timeout_s, wire.MAX_HEAD_BYTES)
        )
        if isinstance(index, Rejection):
            self._reject(index, peer)
            return
        held = self._heads.pages_held(peer)
        complete = True
        for page_cid in index:
            if page_cid in held:
                continue
            page = wire.decode_cid_list(
                self.ipfs.get(page_cid, self.config.fetch_timeout_s, wire.MAX_HEAD_BYTES)
            )
            if isinstance(page, Rejection):
                self._reject(page, peer)
                complete = False
                continue
            try:
                acked = self.ledger.acknowledge(page, peer)
                missing = self.ledger.missing(page)
            except LedgerError as exc:
                self._event("warning", f"ledger: {exc}")
                return
            if acked:
                self._event("acknowledged", f"{acked} of our records reached {peer}")
            unresolved = False
            for cid in missing:
                with self._lock:  # a fetcher thread: shared tables only under the lock
                    refused = cid in self._rejected
                    waiting = cid in self._pending
                waiting = waiting or self._backoff.still_trying(cid)
                if refused:
                    continue  # refused once: nothing to wait for
                if self._worth_fetching(cid):
                    self._want(_RECORD, cid)
                    unresolved = True
                elif waiting:
                    unresolved = True
            if unresolved:
                complete = False
            else:
                held.add(page_cid)
        try:
            self.ledger.note_peer_head(peer, head_cid)
        except LedgerError as exc:
            self._event("warning", f"ledger: {exc}")
        self._heads.followed(peer, head_cid, held, complete)

    # --- ingesting records ---------------------------------------------------------

    def ingest(self, data: bytes, source: str) -> Accepted | Rejection | None:
        """Parse, validate and store one record. Returns None for a known record."""
        signed = codec.parse(data)
        if isinstance(signed, Rejection):
            self._reject(signed, source)
            return signed
        cid = codec.record_cid(data)
        # Lock discipline: `_store_lock` makes check → validate → store → cache one
        # step among record writers; `_lock` (the in-memory tables, which readers such
        # as state() and the compute loop take) is never held across the ledger's
        # fsync'd write. Order: `_store_lock` first, then `_lock`, never the reverse.
        with self._store_lock:
            with self._lock:
                if cid in self._records:
                    return None
                verdict = validate(signed, self._context())
                if isinstance(verdict, Rejection) and verdict.reason_code in (
                    R.NO_DELEGATION,
                    R.UNKNOWN_WORK,
                ):
                    # May simply have arrived before its delegation or work record.
                    if len(self._pending) < MAX_PENDING:
                        self._pending[cid] = (data, source, time.monotonic())
                    return verdict
            if isinstance(verdict, Rejection):
                self._remember_rejected(cid)
                self._reject(verdict, source)
                return verdict
            try:
                self.ledger.add_record(stored_record(signed, source))
            except LedgerError as exc:
                # Not stored, so not held: a peer's head will offer it again.
                self._event("warning", f"cannot store {cid}: {exc}")
                return None
            self._cache(cid, signed)
            with self._lock:
                self._pending.pop(cid, None)
        # Our head lists every record we hold, so we must be able to serve each one.
        try:
            self.ipfs.add(data)
        except IpfsError as exc:
            self._event("warning", f"cannot store {cid} in IPFS: {exc}")
        self._event("accepted", f"{signed.kind} from {source}", cid)
        self._after_accept(signed, cid)
        return verdict

    def _cache(self, cid: str, signed: SignedRecord) -> None:
        with self._lock:
            self._records[cid] = signed
            if isinstance(signed.record, DelegationRecord):
                self._delegations.append(signed.record)
            elif isinstance(signed.record, WorkRecord):
                self._works[cid] = signed.record
            elif isinstance(signed.record, CheckRecord):
                self._checkers.setdefault(signed.record.work_cid, set()).add(signed.record.account)
            self._state = None

    def _remember_rejected(self, cid: str) -> None:
        with self._lock:
            self._rejected[cid] = None

    def _after_accept(self, signed: SignedRecord, cid: str) -> None:
        if signed.kind in ("delegation", "work"):
            self._retry_pending()
        record = signed.record
        # (validation accepts a dispute only once its work record is known)
        if isinstance(record, DisputeRecord) and record.account != self.account_pub:
            self._queue_confirm(cid, record)
        if isinstance(record, WorkRecord) and record.account != self.account_pub:
            for candidate in record.candidates:
                if self._rechecks.qsize() < MAX_CONFIRM_TASKS:
                    self._rechecks.put((cid, candidate))
            if record.has_candidates:
                self._event("candidate", f"unit {record.unit}: {record.candidate_count} reported")

    def _recheck_loop(self) -> None:
        """Re-check reported candidates exactly with a far larger bound and publish the
        outcome as a signed record (PROTOCOL §2, §6 recheck)."""
        bound = RECHECK_FACTOR * self.params.exact_step_bound
        while not self._stop.is_set():
            try:
                work_cid, candidate = self._rechecks.get(timeout=0.5)
            except queue.Empty:
                continue
            fell, steps = recheck(candidate, bound)
            rec = RecheckRecord(
                work_cid=work_cid,
                candidate=candidate,
                bound=bound,
                fell=fell,
                steps=steps,
                node=self.node_pub,
                account=self.account_pub,
                created=int(self._clock()),
            )
            self._add_own(codec.sign(rec, self.node_key))
            outcome = f"fell after {steps}" if fell else f"still stands after {bound}"
            self._event("candidate", f"re-check: {candidate} {outcome} odd steps")

    def _queue_confirm(self, dispute_cid: str, dispute: DisputeRecord) -> None:
        key = (dispute.work_cid, dispute.block)
        with self._lock:
            # One recomputation per block, however many disputes name it.
            if key in self._confirming or len(self._confirm_tasks) >= MAX_CONFIRM_TASKS:
                return
            task = self._confirm_task(dispute_cid, dispute)
            if task is not None:
                self._confirming.add(key)
                self._confirm_tasks.append(task)

    def _retry_pending(self) -> None:
        with self._lock:
            waiting = [(data, source) for data, source, _ in self._pending.values()]
            self._pending.clear()
            claims = list(self._claims_waiting)
            self._claims_waiting.clear()
        for data, source in waiting:
            self.ingest(data, source)
        for claim, peer in claims:
            if claim.expires > self._clock():
                self._on_claim(claim, peer)

    def _context(self) -> ValidationContext:
        """What validation consults; call with the lock held."""
        return validation_context(
            int(self._clock()),
            self._delegations,
            self._param_sets,
            max_skew_s=self.config.max_skew_s,
            works=self._works,
        )

    def _reject(self, rejection: Rejection, source: str) -> None:
        try:
            self.ledger.count_rejection(rejection.reason_code, rejection.message, source)
        except LedgerError as exc:
            log.warning("cannot count a rejection: %s", exc)
        self._event("rejected", f"{rejection} (from {source})")

    def _event(self, kind: str, detail: str = "", cid: str | None = None) -> None:
        event = NodeEvent(kind, detail, cid)
        with self._lock:
            self.events.append(event)
            self._fresh.append(event)
        if kind == "warning":
            log.warning("%s", detail)
        else:
            log.debug("%s %s %s", kind, detail, cid or "")

    # --- publishing ----------------------------------------------------------------

    def publish(self, signed: SignedRecord) -> str | Rejection:
        """Validate a record signed by this node's key, store it durably and announce it.

        Returns its CID, or the Rejection (nothing stored) when it does not validate.
        """
        with self._lock:
            verdict = validate(signed, self._context())
        if isinstance(verdict, Rejection):
            return verdict
        return self._add_own(signed)

    def _add_own(self, signed: SignedRecord) -> str:
        """Store our record and its outbox entry durably, then announce it."""
        row = stored_record(signed)
        with self._store_lock:  # not `_lock`: the write below fsyncs (see ingest)
            self.ledger.add_own_record(row)
            self._cache(row.cid, signed)
        self._announce(row.cid, row.data)
        return row.cid

    def _announce(self, cid: str, data: bytes) -> None:
        try:
            self.ipfs.add(data)
            self.ipfs.publish(self._topic("records"), wire.encode_announcement(data, cid))
            self.ledger.mark_published(cid)
        except (IpfsError, LedgerError) as exc:
            # Stays in the outbox; the next re-announce tries again.
            self._event("warning", f"could not publish {cid}: {exc}")

    def _reannounce(self) -> None:
        try:
            entries = self.ledger.outbox()
        except LedgerError as exc:
            self._event("warning", f"ledger: {exc}")
            return
        for entry in entries:
            self._announce(entry.cid, entry.data)

    def _publish_head(self) -> None:
        """Add our head pages and index to IPFS (only what changed) and announce the head."""
        try:
            head = self._heads.our_head(self.ledger.heads_list())
        except LedgerError as exc:
            self._event("warning", f"could not publish head: {exc}")
            return
        try:
            for obj in head.new_objects:
                self.ipfs.add(obj)
            msg = wire.sign_head(wire.Head(self.node_pub, head.head_cid, head.count), self.node_key)
            self.ipfs.publish(self._topic("heads"), msg)
        except IpfsError as exc:
            self._heads.forget_ours()  # everything is offered again next time
            self._event("warning", f"could not publish head: {exc}")

    def _dial_peers(self) -> None:
        if not self.config.peers:
            return
        connected = set(self._safe_peers())

        def dial() -> None:
            for addr in self.config.peers:
                if addr.rsplit("/p2p/", 1)[-1] in connected:
                    continue
                try:
                    self.ipfs.connect(addr)
                except IpfsError as exc:
                    log.info("cannot reach %s: %s", addr, exc)

        threading.Thread(target=dial, name="hailstone-dial", daemon=True).start()

    def _safe_peers(self) -> list[str]:
        try:
            return self.ipfs.peers()
        except IpfsError:
            return []

    def _topic(self, name: str) -> str:
        return wire.topics(self.config.network_name)[name]

    # --- state ---------------------------------------------------------------------

    def state(self) -> NetworkState:
        """The derived network state (cached until a record arrives)."""
        with self._lock:
            if self._state is None:
                valid = [Accepted(record=s, cid=c) for c, s in self._records.items()]
                self._state = derive_state(valid, self.params, trust=self.config.trust)
            return self._state

    def status(self) -> NodeStatus:
        st = self.state()
        try:
            addrs = tuple(self.ipfs.addresses())
            peer_id = self.ipfs.peer_id()
        except IpfsError:
            addrs, peer_id = (), ""
        with self._lock:
            records, pending = len(self._records), len(self._pending)
        return NodeStatus(
            peer_id=peer_id,
            listen=addrs,
            peers=len(self._safe_peers()),
            frontier=st.frontier,
            frontier_bound=st.frontier_bound,
            units_verified=st.units_verified,
            records=records,
            rejected=self.ledger.rejected_total(),
            rejected_by_reason=self.ledger.rejection_counts(),
            outbox=self.ledger.outbox_count(),
            pending=pending,
            state_digest=state_digest(st),
            leaderboard=tuple((e.display_name, e.units_credited) for e in st.leaderboard),
            fetch=self._fetches.counters(),
            account_weight=st.account_weight(self.account_pub),
            phases=_phase_counts(st),
            candidate_units=tuple(u.unit for u in st.candidate_units),
        )

    def my_units(self) -> list[tuple[int, str, str]]:
        """(unit, status, work CID) of every unit this account reported."""
        st = self.state()
        with self._lock:
            mine = [
                (w.unit, cid) for cid, w in self._works.items() if w.account == self.account_pub
            ]
        return sorted((unit, st.status_of(unit), cid) for unit, cid in mine)

    def work_record(self, cid: str) -> WorkRecord | None:
        """A work record the node holds, by CID (root, backend, compute time, date)."""
        with self._lock:
            return self._works.get(cid)

    # --- the compute loop's side ---------------------------------------------------

    def checkpoint_path(self, unit: int) -> Path:
        return unit_checkpoint_path(self.config.data_dir / "checkpoints", self.params, unit)

    def next_assignment(self) -> Assignment | None:
        """Claim and return the next unit to compute (resuming our own checkpoint first)."""
        with self._lock:
            st = self.state()
            now = self._clock()
            claims = self.ledger.active_claims(now)
            unit = self._resumable_unit(st, claims, now)
            if unit is None and self.config.trust is not None:
                unit = self._checker_duty(st)
            if unit is None:
                unit = next_unit(
                    st,
                    [*claims, *self._committed_units(st)],
                    self.account_pub,
                    now,
                    my_node=self.node_pub,
                    unit_limit=self.config.unit_limit,
                )
            if unit is None:
                return None
        self.claim(unit)
        return Assignment.of_unit(self.params, unit, self.config.data_dir / "checkpoints")

    def _committed_units(self, st: NetworkState) -> list[Any]:
        """Under the trust protocol, units with a live commit already have a reporter
        (their drawn checker takes it from there): shown to next_unit as claimed."""
        if st.trust is None:
            return []
        units = {
            c.unit
            for _cid, c in self._by_kind("commit")
            if c.account not in st.trust.slashed and c.unit > st.frontier
        }
        units |= {u for u in range(st.frontier, st.frontier + 1) if self._reveal_path(u).exists()}
        return [_Taken(u, bytes(32), u.to_bytes(32, "big"), float("inf")) for u in sorted(units)]

    def _resumable_unit(self, st: NetworkState, claims, now: float) -> int | None:
        folder = self.config.data_dir / "checkpoints"
        if not folder.is_dir():
            return None
        others = {
            c.unit
            for c in claims
            if c.node != self.node_pub
            and c.expires_at > now
            and not (c.unit in st.units and c.account in st.units[c.unit].reporters())
        }
        for path in sorted(folder.glob(f"{self.params.name}-unit*.ckpt")):
            unit = checkpoint_unit(path, self.params)
            if unit is None:
                continue
            if path != self.checkpoint_path(unit):
                try:  # an older name for the same unit's checkpoint
                    path.replace(self.checkpoint_path(unit))
                except OSError:
                    continue
            entry = st.units.get(unit)
            mine = entry is not None and self.account_pub in entry.reporters()
            limit = self.config.unit_limit
            if limit is not None and unit >= limit:
                continue
            if st.status_of(unit) != "verified" and not mine and unit not in others:
                return unit
        return None

    def claim(self, unit: int) -> None:
        """Publish (or renew) our claim on `unit` for claim_ttl_s."""
        expires = int(self._clock()) + self.config.claim_ttl_s
        c = wire.Claim(unit, self.node_pub, self.account_pub, expires)
        try:
            self.ledger.put_claim(
                claim_id(self.node_pub), unit, self.node_pub, self.account_pub, expires
            )
            self.ipfs.publish(self._topic("claims"), wire.sign_claim(c, self.node_key))
        except (IpfsError, LedgerError) as exc:
            self._event("warning", f"could not publish claim on unit {unit}: {exc}")

    def submit_unit(self, assignment: Assignment, result: UnitResult) -> str:
        """Sign the unit's work record, store it durably, publish it. Returns its CID."""
        evidence = b"".join(result.leaves)
        evidence_cid = cid_for_bytes(evidence)
        try:
            self.ipfs.add(evidence)
        except IpfsError as exc:
            self._event("warning", f"evidence not stored in IPFS yet: {exc}")
        self._save_evidence(evidence_cid, evidence)
        candidates_cid = None
        if len(result.candidates) > MAX_CANDIDATES:
            # More candidates than a record lists: the full list is its own object,
            # kept and served like the evidence, so no report is ever lost.
            listing = candidate_list_bytes(result.candidates)
            candidates_cid = cid_for_bytes(listing)
            try:
                self.ipfs.add(listing)
            except IpfsError as exc:
                self._event("warning", f"candidate list not stored in IPFS yet: {exc}")
            self._save_evidence(candidates_cid, listing)
        nonce = os.urandom(32)
        record = WorkRecord.from_unit_result(
            result,
            self.params,
            assignment.unit,
            self.node_pub,
            self.account_pub,
            int(self._clock()),
            evidence_cid=evidence_cid,
            candidates_cid=candidates_cid,
            nonce=nonce,
        )
        if self.config.trust is not None:
            # Commit-reveal (PROTOCOL §11, T1): the root is bound now, revealed once the
            # partner is bound too (_trust_tick).
            commit = CommitRecord(
                unit=assignment.unit,
                commitment=T.commitment(assignment.unit, record.root, self.node_pub, nonce),
                node=self.node_pub,
                account=self.account_pub,
                created=int(self._clock()),
            )
            write_atomic(
                self._reveal_path(assignment.unit), codec.encode(codec.sign(record, self.node_key))
            )
            cid = self._add_own(codec.sign(commit, self.node_key))
            self._spot_budget += self.config.spot_check_share * self.params.blocks_per_unit
            self._event("committed", f"unit {assignment.unit}", cid)
            return cid
        if record.has_candidates:
            self._event(
                "candidate", f"unit {assignment.unit}: {record.candidate_count} candidate(s)"
            )
        cid = self._add_own(codec.sign(record, self.node_key))
        self._spot_budget += self.config.spot_check_share * self.params.blocks_per_unit
        self._event("published", f"unit {assignment.unit}", cid)
        return cid

    def _evidence_dir(self) -> Path:
        return self.config.data_dir / "evidence"

    def _save_evidence(self, cid: str, data: bytes) -> None:
        # Our own leaves, kept so we can serve them again after an IPFS repo loss.
        write_atomic(self._evidence_dir() / cid, data)

    def _republish_evidence(self) -> None:
        folder = self._evidence_dir()
        if folder.is_dir():
            for path in folder.iterdir():
                try:
                    self.ipfs.add(path.read_bytes())
                except (OSError, IpfsError):
                    pass

    # --- the verification protocol (PROTOCOL §11), with NodeConfig.trust ---------------

    def _reveal_path(self, unit: int) -> Path:
        return self.config.data_dir / "reveals" / f"{self.params.name}-unit{unit}.rec"

    def _by_kind(self, kind: str) -> list[tuple[str, Any]]:
        with self._lock:
            return [(c, s.record) for c, s in sorted(self._records.items()) if s.kind == kind]

    def _trust_tick(self) -> None:
        """Reveal what is due, and publish a beacon round if this is a beacon account."""
        st = self.state()
        policy = self.config.trust
        commits: dict[int, dict[bytes, str]] = {}
        for cid, c in self._by_kind("commit"):
            commits.setdefault(c.unit, {}).setdefault(c.account, cid)
        works: dict[int, list[WorkRecord]] = {}
        for _cid, w in self._by_kind("work"):
            works.setdefault(w.unit, []).append(w)
        folder = self._reveal_path(0).parent
        for path in sorted(folder.glob(f"{self.params.name}-unit*.rec")) if folder.is_dir() else ():
            parsed = codec.parse(path.read_bytes())
            if isinstance(parsed, Rejection) or not isinstance(parsed.record, WorkRecord):
                continue
            template = parsed.record
            unit = template.unit
            due = self._reveal_due(st, template, commits.get(unit, {}), works.get(unit, []))
            if due is None:
                continue
            record = dataclasses.replace(template, seen_commits=due, created=int(self._clock()))
            cid = self._add_own(codec.sign(record, self.node_key))
            self._event("published", f"unit {unit} revealed", cid)
            path.unlink(missing_ok=True)
        if self.account_pub in policy.beacons:
            self._publish_beacon(commits, works)

    def _reveal_due(
        self,
        st: NetworkState,
        template: WorkRecord,
        commits: dict[bytes, str],
        works: list[WorkRecord],
    ) -> tuple[str, ...] | None:
        """The commits to list if our reveal of this unit is due now, else None: due once
        one of our drawn checkers committed, or once a reporter that drew us (or the one
        we check) revealed our root listing our commit (T4)."""
        unit, k = template.unit, self.config.trust.check_rank
        mine = commits.get(self.account_pub)
        if mine is None or st.trust is None:
            return None
        others = {a: c for a, c in commits.items() if a != self.account_pub}
        drawn = st.trust.ranking(unit, b"check", (self.account_pub,))[:k]
        waiting = [
            w.account
            for w in works
            if w.account != self.account_pub
            and w.root == template.root
            and mine in w.seen_commits
            and self.account_pub in st.trust.ranking(unit, b"check", (w.account,))[:k]
        ]
        if not (waiting or any(a in others for a in drawn)):
            return None
        # The earliest reporters waiting on us first (copies of their root come later
        # and must not crowd our drawn partners out of the listed commits).
        earliest = {w.account: w.created for w in works}
        waiting = sorted(set(waiting), key=lambda a: (earliest[a], a))[:2]
        partners = [*waiting, self._roles.get(unit), *drawn]
        first = list(dict.fromkeys(others[a] for a in partners if a in others))
        rest = sorted(c for c in others.values() if c not in first)
        return tuple(sorted(dict.fromkeys([*first, *rest][:MAX_SEEN_COMMITS])))

    def _publish_beacon(self, commits: dict[int, dict[bytes, str]], works) -> None:
        if not self._beacon_round:
            mine = [b.round for _c, b in self._by_kind("beacon") if b.account == self.account_pub]
            self._beacon_round = max(mine, default=0)
            for _c, b in self._by_kind("beacon"):
                self._beacon_listed.update(b.listed)
        fresh = sorted(
            {c for per in commits.values() for c in per.values()}
            | {c for c, _w in self._by_kind("work")}
        )
        fresh = [c for c in fresh if c not in self._beacon_listed]
        while fresh:
            chunk, fresh = fresh[:MAX_BEACON_LISTED], fresh[MAX_BEACON_LISTED:]
            self._beacon_round += 1
            rec = BeaconRecord(
                round=self._beacon_round,
                value=os.urandom(32),
                listed=tuple(chunk),
                node=self.node_pub,
                account=self.account_pub,
                created=int(self._clock()),
            )
            self._add_own(codec.sign(rec, self.node_key))
            self._beacon_listed.update(chunk)

    def checker_duty(self) -> Assignment | None:
        """The unit the draw asks this node to check now (claimed), or None; the
        compute loop gets it first from next_assignment."""
        with self._lock:
            unit = self._checker_duty(self.state())
        if unit is None:
            return None
        self.claim(unit)
        return Assignment.of_unit(self.params, unit, self.config.data_dir / "checkpoints")

    def _checker_duty(self, st: NetworkState) -> int | None:
        """The lowest unit whose earliest reporter drew us as its best checker not yet
        bound, while that reporter's root is still sealed (T4)."""
        if st.trust is None:
            return None
        k = self.config.trust.check_rank
        commits: dict[int, list[tuple[int, str, bytes]]] = {}
        for cid, c in self._by_kind("commit"):
            if c.account not in st.trust.slashed:
                commits.setdefault(c.unit, []).append((c.created, cid, c.account))
        revealed = {(w.unit, w.account) for _c, w in self._by_kind("work")}
        for unit in sorted(commits):
            tally = st.trust.units.get(unit)
            if tally is None or tally.seed is None or tally.phase in (T.PAIRED, T.VERIFIED):
                continue
            accounts = {a for _t, _c, a in commits[unit]}
            if self.account_pub in accounts or self._reveal_path(unit).exists():
                continue
            reporter = self._round_reporter(st, unit, commits[unit])
            if (unit, reporter) in revealed:
                continue
            order = st.trust.ranking(unit, b"check", (reporter,))[:k]
            todo = [a for a in order if a not in accounts]
            # Only the best-ranked checker computes; the next ones only if it never
            # committed (the round then passes to a committer that can still pair).
            if order and order[0] in accounts:
                continue
            if todo and todo[0] == self.account_pub:
                self._roles[unit] = reporter
                return unit
        return None

    def _round_reporter(
        self, st: NetworkState, unit: int, commits: list[tuple[int, str, bytes]]
    ) -> bytes:
        """Round 0 is the earliest committer; every trust_stall_s without a pair the next
        one, weighted committers before fresh ones, in turn."""
        now = time.monotonic()
        since = self._seeded_at.setdefault(unit, now)
        weights = st.trust.unit_weights.get(unit, {})
        by_time = list(dict.fromkeys(a for _t, _c, a in sorted(commits)))
        order = by_time[:1] + sorted(by_time[1:], key=lambda a: weights.get(a, 0) <= 0)
        return order[int((now - since) // self.config.trust_stall_s) % len(order)]

    def _audit_duty(self, st: NetworkState) -> BlockTask | None:
        """A drawn audit of a paired unit: its drawn block, not one we choose (T5)."""
        if st.trust is None:
            return None
        rank = self.config.trust.audit_rank
        for unit, tally in sorted(st.trust.units.items()):
            if tally.phase not in (T.PAIRED, T.WITHHELD):
                continue
            pair = (tally.reporter, tally.checker)
            if self.account_pub not in st.trust.ranking(unit, b"audit", pair)[:rank]:
                continue
            for cid, w in self._by_kind("work"):
                if w.unit != unit or w.account != tally.reporter or cid in self._checked:
                    continue
                leaves = self._evidence.result(cid)
                if leaves is PENDING:
                    continue  # asked for; a later call finds it
                self._checked.add(cid)
                block = T.audit_block(tally.seed, self.account_pub, self.params.blocks_per_unit)
                if leaves is None:
                    # Withheld (or wrong) evidence is a fault on the record, not a retry.
                    rec = CheckRecord(
                        work_cid=cid,
                        block=block,
                        leaf=bytes(32),
                        match=False,
                        node=self.node_pub,
                        account=self.account_pub,
                        created=int(self._clock()),
                        unavailable=True,
                    )
                    self._add_own(codec.sign(rec, self.node_key))
                    continue
                lo, _ = self.params.unit_range(unit)
                blo = lo + block * self.params.block_size
                return BlockTask(
                    "spot-check",
                    cid,
                    block,
                    blo,
                    blo + self.params.block_size,
                    leaves[block],
                    tuple(merkle_proof(leaves, block)),
                )
        return None

    def next_block_task(self, *, idle: bool = False) -> BlockTask | None:
        """A dispute to confirm, else a spot-check when the budget allows, else None.

        An idle node (no unit to compute) spot-checks without budget: checking is
        then the most useful thing its cores can do.
        """
        if self._confirm_tasks:
            return self._confirm_tasks.popleft()
        if self.config.trust is not None:
            audit = self._audit_duty(self.state())
            if audit is not None:
                return audit
        if self._spot_budget < 1.0 and not idle:
            return None
        # Budgeted checks pick any work; checks beyond the budget (idle) only the
        # works that fewer than IDLE_CHECKERS accounts have checked.
        budgeted = self._spot_budget >= 1.0
        task = self._choose_spot_check(well_checked_too=budgeted)
        if task is not None and budgeted:
            self._spot_budget -= 1.0
        return task

    def _choose_spot_check(self, *, well_checked_too: bool = True) -> BlockTask | None:
        st = self.state()
        now = time.monotonic()
        with self._lock:
            works = sorted(self._works.items())
            checked_by = {cid: len(a) for cid, a in self._checkers.items()}
        for cid, w in works:
            if w.account == self.account_pub or cid in self._checked or w.params != self.params:
                continue
            if not well_checked_too and checked_by.get(cid, 0) >= IDLE_CHECKERS:
                continue
            if self._evidence_retry.get(cid, 0.0) > now:
                continue
            entry = st.units.get(w.unit)
            if entry is None or cid in entry.removed:
                continue
            leaves = self._evidence.result(cid)
            if leaves is PENDING:
                continue  # asked for; a later call finds it
            if leaves is None:
                # unreachable or not matching its root: try again later, never forget it
                self._evidence_retry[cid] = now + self._backoff.max_s
                continue
            self._checked.add(cid)
            # The reporter cannot predict our key nor our current head: it cannot
            # know which block we will recompute.
            seed = hashlib.sha256(
                b"hailstone/spot/v1\x00"
                + cid.encode()
                + self.node_pub
                + self._heads.last_head_cid.encode()
            ).digest()
            block = int.from_bytes(seed[:8], "big") % len(leaves)
            lo, _ = self.params.unit_range(w.unit)
            blo = lo + block * self.params.block_size
            return BlockTask(
                "spot-check",
                cid,
                block,
                blo,
                blo + self.params.block_size,
                leaves[block],
                tuple(merkle_proof(leaves, block)),
            )
        return None

    def _fetch_evidence_of(self, cid: str) -> list[bytes] | None:
        """The evidence fetcher's job (its own thread): the leaves of work `cid`."""
        with self._lock:
            w = self._works.get(cid)
        return self._fetch_evidence(w) if w is not None else None

    def _fetch_evidence(self, w: WorkRecord) -> list[bytes] | None:
        try:
            data = self.ipfs.get(w.evidence_cid, self.config.fetch_timeout_s, MAX_EVIDENCE_BYTES)
        except IpfsError as exc:
            self._event("warning", f"evidence {w.evidence_cid} unavailable: {exc}")
            return None
        n = self.params.blocks_per_unit
        if len(data) != 32 * n:
            return None
        leaves = [data[i * 32 : (i + 1) * 32] for i in range(n)]
        if merkle_root(leaves) != w.root:
            return None
        return leaves

    def _confirm_task(self, dispute_cid: str, d: DisputeRecord) -> BlockTask | None:
        work = self._works.get(d.work_cid)
        if work is None or work.params != self.params or work.account == self.account_pub:
            return None
        lo, _ = self.params.unit_range(work.unit)
        blo = lo + d.block * self.params.block_size
        return BlockTask(
            "confirm",
            d.work_cid,
            d.block,
            blo,
            blo + self.params.block_size,
            d.claimed_leaf,
            d.proof,
            dispute_cid,
            d.recomputed_leaf,
        )

    def submit_block(self, task: BlockTask, evidence: BlockEvidence) -> str:
        """Publish the outcome of a recomputed block: a check, or a dispute on mismatch."""
        leaf = evidence.leaf()
        now = int(self._clock())
        if task.purpose == "confirm" or leaf == task.claimed_leaf:
            # A check says whether the work's leaf (proven against its root) stands. For
            # a dispute we were asked to confirm, match=False with our leaf equal to the
            # dispute's confirms it.
            record = CheckRecord(
                work_cid=task.work_cid,
                block=task.block,
                leaf=leaf,
                match=leaf == task.claimed_leaf,
                node=self.node_pub,
                account=self.account_pub,
                created=now,
            )
        else:
            record = DisputeRecord(
                work_cid=task.work_cid,
                block=task.block,
                recomputed_leaf=leaf,
                claimed_leaf=task.claimed_leaf,
                proof=task.proof,
                node=self.node_pub,
                account=self.account_pub,
                created=now,
            )
        cid = self._add_own(codec.sign(record, self.node_key))
        self._event("published", f"{record.KIND} on block {task.block} of {task.work_cid}", cid)
        return cid
