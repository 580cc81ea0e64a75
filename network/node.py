"""The network node: gossip in, records out, one shared state.

`Node` is Qt-free and thread-safe. It is a façade: each job lives in its own part
under network/nodeparts/ (one class each, with its own data and lock; the map is in
network/nodeparts/__init__.py), and `Node` wires them together, runs the network
loop (`poll`) and keeps the one public API that the runner, the contributor session,
the facade, the simulator, bench/ and the tests use.

Two loops drive it:

- the network loop calls `poll()` every fraction of a second: it drains the
  gossip topic (records, claims and heads: network/wire.py), validates everything received
  (parse → validate → ledger, rejections counted by reason), fetches records
  that peers' heads list and we lack, publishes our head, and re-announces
  our outbox until a peer's head includes each entry;
- the compute loop asks for work: `next_block_task()` (a dispute to confirm,
  or a spot-check to run) and `next_assignment()` (the next unit, claimed on
  the network first), runs it with the engine, and hands the result back
  (`submit_block`, `submit_unit`).

Every result goes to the ledger's outbox (durably) before it is published, so
nothing computed is lost to a crash or a vanished peer.

Lock discipline: each part locks only its own data and never holds a lock across
an IPFS call or a ledger write that fsyncs; the store's writer lock is the only
one taken before another (its table lock). `Node._lock` guards only the event log.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from nacl.signing import SigningKey

from engine import Assignment, BlockEvidence, Params, UnitResult
from network import rejection as R
from network import wire
from network.identity import Profile
from network.ipfs import IpfsError, IpfsNode, Subscription, open_node
from network.ledger import Ledger, LedgerError
from network.nodeparts.backoff import FETCH_BACKOFF_MAX_S
from network.nodeparts.blockgc import BlockCollector
from network.nodeparts.checks import IDLE_CHECKERS, BlockChecks, BlockTask
from network.nodeparts.config import NodeConfig, trust_policy
from network.nodeparts.deliverylag import DeliveryLag
from network.nodeparts.heads import HeadBook
from network.nodeparts.looptime import LoopTime
from network.nodeparts.planner import Hold, Planner
from network.nodeparts.publisher import REANNOUNCE_BUDGET_S, Publisher
from network.nodeparts.services import Services
from network.nodeparts.status import NodeEvent, NodeStatus, phase_counts, state_digest
from network.nodeparts.store import PENDING_TTL_S, RecordStore
from network.nodeparts.sync import FETCHED, Sync, claim_id
from network.nodeparts.trustduty import TrustDuty, reveal_path
from network.records import SignedRecord, WorkRecord
from network.rejection import Accepted, Rejection
from network.state import NetworkState

log = logging.getLogger("hailstone.node")

# Names callers import from here (the parts define them).
__all__ = ["IDLE_CHECKERS", "Assignment", "BlockTask", "Node", "NodeConfig", "NodeEvent"]
__all__ += ["NodeStatus", "claim_id", "state_digest", "trust_policy"]

FETCH_THREADS = 8
# Most fetched records ingested in one ledger transaction.
INGEST_BATCH = 256
# Gossip messages read from each topic per round of the network loop, then handled
# together: the records among them are stored in one ledger transaction.
MESSAGES_PER_ROUND = 64
HOUSEKEEPING_INTERVAL_S = 60.0
# The connected peers and our listen addresses are asked of IPFS at most this often
# (a peer list took 80 ms on average, up to 3 s, at 24 nodes on two cores): a new peer
# gets our claim and our head up to PEERS_MAX_AGE_S late.
PEERS_MAX_AGE_S = 5.0
ADDRESSES_MAX_AGE_S = 10.0
TRUST_INTERVAL_S = 1.0  # reveals due and beacon rounds are looked at this often
# The connected peers are looked at this often: a new one gets our live claim.
PEER_WATCH_INTERVAL_S = 1.0
# A starting node past its sync timeout keeps waiting while fetched records arrived
# within SYNC_QUIET_S, up to SYNC_MAX_FACTOR sync timeouts in all (is_synced).
SYNC_QUIET_S = 5.0
SYNC_MAX_FACTOR = 5
# Heads the swarm publishes per head interval, about, once it has more senders.
HEADS_PER_INTERVAL = 8
HEAD_INTERVAL_MAX_FACTOR = 12.0  # 60 s at the default 5 s, the unchanged head's refresh
# Peers' frontier hints are heard this many sync timeouts after the start (unit_floor).
HINT_MAX_FACTOR = 30


class Node:
    """A contributor's node: identity, ledger, IPFS and the gossip protocol.

    A façade over the parts in network/nodeparts/ (see the module doc): it builds
    them, starts and stops their threads, runs the network loop (`poll`), and hands
    each public call to the part that does the job.
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
        self._lock = threading.RLock()  # the event log (events, _fresh)
        self._subs: dict[str, Subscription] = {}
        services = Services(
            config.params, node_key, self.account_pub, clock, self._event, opened_ipfs=ipfs
        )
        self._services = services
        # How long peers' fresh records take to arrive: a fresh claim settles as long.
        self.delivery_lag = DeliveryLag()
        self._heads = HeadBook()  # our head's pages, and how far we follow each peer's
        self._store = RecordStore(
            services,
            param_sets=(config.params, *extra_param_sets),
            trust=config.trust,
            max_skew_s=config.max_skew_s,
            on_accept=self._after_accept,
        )
        self._sync = Sync(
            services, self._store, self._heads, fetch_timeout_s=config.fetch_timeout_s
        )
        self._inbox = self._sync.inbox  # drained by poll()
        # Objects no longer needed (our superseded heads' and peers' heads and evidence
        # read) are removed from the IPFS store after a grace time.
        self._block_gc = BlockCollector(lambda: services.ipfs, self._keeps_object)
        self._sync.on_head_object = self._block_gc.fetched
        self._store.on_wait = self._sync.want_dependency  # a check's missing work: asked for
        # Our evidence objects, kept as files (served again after an IPFS repo loss).
        self._evidence_dir = config.data_dir / "evidence"
        self._publisher = Publisher(
            services, self._store, self._heads, evidence_dir=self._evidence_dir
        )
        self._checks = BlockChecks(
            services,
            self._store,
            self._publisher.add_own,
            lambda: self._heads.last_head_cid,
            trust=config.trust,
            spot_check_share=config.spot_check_share,
            fetch_timeout_s=config.fetch_timeout_s,
            evidence_retry_s=FETCH_BACKOFF_MAX_S,
        )
        self._checks.on_evidence_object = self._block_gc.fetched
        self._planner = Planner(
            services,
            self._store,
            self._publisher,
            data_dir=config.data_dir,
            trust=config.trust,
            claim_ttl_s=config.claim_ttl_s,
            unit_limit=config.unit_limit,
            trust_stall_s=config.trust_stall_s,
            on_submitted=self._checks.earn,
            settle_s=config.claim_settle_s,
            settle_for=self.delivery_lag.settle_s,
            listen_s=config.listen_s,
            listen_max_s=config.sync_timeout_s,
            alone=not config.peers and not config.bootstrap,
        )
        self._trust = None
        if config.trust is not None:
            self._trust = TrustDuty(
                services,
                self._store,
                self._publisher.add_own,
                policy=config.trust,
                data_dir=config.data_dir,
                roles=self._planner.roles,
            )
        # timers
        self._last_head = 0.0
        self._last_reannounce = 0.0
        self._last_redial = 0.0
        self._last_housekeeping = 0.0
        self._last_trust = 0.0
        self.loop_time = LoopTime()  # where the network loop's time goes (status)
        # (when, what): the connected peers and our listen addresses, last listed
        self._peers_listed: tuple[float, list[str]] = (-PEERS_MAX_AGE_S, [])
        self._addresses_listed: tuple[float, tuple[str, ...]] = (-ADDRESSES_MAX_AGE_S, ())
        self._last_peer_watch = 0.0
        self._started_at = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.events: deque[NodeEvent] = deque(maxlen=1000)
        self._fresh: list[NodeEvent] = []

    # --- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        """Open the ledger and IPFS, subscribe, and publish our identity records."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._services.opened_ledger = Ledger.in_dir(self.config.data_dir)
        try:
            if self._services.opened_ipfs is None:
                self._services.opened_ipfs = open_node(
                    self.config.ipfs_kind,
                    repo_dir=self.config.data_dir / "ipfs",
                    listen=self.config.listen,
                    bootstrap=self.config.bootstrap,
                    api_addr=self.config.api_addr,
                    # (a larger gossip message is refused by its size alone: the
                    # library need not copy and decode the rest, PROTOCOL §7)
                    max_received_bytes=wire.MAX_WIRE_BYTES,
                )
            # One topic carries records, claims and heads (each message says its kind).
            topic = wire.gossip_topic(self.config.network_name)
            self._subs["gossip"] = self.ipfs.subscribe(topic)
        except BaseException:
            self.stop()
            raise
        self._store.load(self.ledger.records())
        # Our own account and delegation records travel like any other record.
        identity = [s for s in self.profile.local_records() if s.kind in ("account", "delegation")]
        for signed in identity:
            self._publisher.add_own(signed)
        self._publisher.set_identity(identity)
        self._publisher.republish_evidence()
        # Work records this node already checked or disputed are not checked again.
        self._checks.start(self._store.checked_by_node(self.node_pub))
        self._spawn("hailstone-recheck", self._checks.recheck_loop)
        # Several fetchers, so one record that no peer serves cannot hold up the rest.
        for i in range(FETCH_THREADS):
            self._spawn(f"hailstone-fetch-{i}", self._sync.fetch_loop)
        self._started_at = time.monotonic()
        self._planner.started()
        self._dial_peers()

    def _spawn(self, name: str, loop: Callable[[threading.Event], None]) -> None:
        t = threading.Thread(target=loop, args=(self._stop,), name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def is_synced(self, *, cap: bool = True) -> bool:
        """True once we hold every record some peer's head lists (or waited long enough
        while nothing came, or have no peers; with `cap`, or waited SYNC_MAX_FACTOR
        timeouts while records still came).

        A fresh node asks for work only then, so it does not recompute what the
        network already verified.
        """
        if not self.config.peers and not self.config.bootstrap:
            return True
        if self._heads.heads_completed > 0 and self._sync.idle() and self._store.counts()[1] == 0:
            return True
        now = time.monotonic()
        waited = now - self._started_at
        if waited <= self.config.sync_timeout_s:
            return False
        # Past the timeout a node still waits while it is fetching and records keep
        # coming (a loaded machine, a large backlog: a 24-node swarm on two cores took
        # longer, and its late nodes recomputed verified units), never beyond
        # SYNC_MAX_FACTOR timeouts; peers that do not answer end the wait at once.
        return not self._still_fetching(now) or (
            cap and waited > SYNC_MAX_FACTOR * self.config.sync_timeout_s
        )

    def _still_fetching(self, now: float) -> bool:
        """Fetches are queued or in the inbox and a fetched record was ingested within
        SYNC_QUIET_S: a starting node's catch-up is still under way."""
        return not self._sync.idle() and now - self._sync.last_progress < SYNC_QUIET_S

    def unit_floor(self) -> int | None:
        """The lowest unit we may take as a new one while we catch up: the highest
        frontier reported by a peer whose newest head we do not hold completely
        (``Sync.frontier_hint``, PROTOCOL §8, "Catching up"), when it is above our own.
        None when there is none, while a starting node waits for sync within the sync
        timeout (as before), and HINT_MAX_FACTOR sync timeouts after the start (a liar
        can hold a node off the frontier that long at most).

        The hint holds while records are still missing, however long they take:
        below an honest peer's frontier every unit is verified. The rule before ended
        it once fetched records paused for 5 s past the sync timeout, and at 24 nodes
        on two cores every node started 17 s or more after the first then computed
        only verified units (bench/swarm.py).
        """
        waited = time.monotonic() - self._started_at
        if waited > HINT_MAX_FACTOR * self.config.sync_timeout_s:
            return None
        hint = self._sync.frontier_hint()
        # The state as last derived will do: with an older frontier below the hint we
        # return a floor at or below the true frontier, below which every unit is
        # verified, so take_unit chooses as it would without one; with one above it
        # (a dispute moved it back) we return none, as a synced node has.
        if hint is None or hint <= self._store.last_state().frontier:
            return None
        if not self.is_synced(cap=False) and waited <= self.config.sync_timeout_s:
            return None  # waiting for sync, as before
        return hint

    def stop(self) -> None:
        """Stop the helper threads, close subscriptions, IPFS and the ledger. Idempotent."""
        self._stop.set()
        self._sync.fetches.close()  # wakes the idle fetchers
        try:
            # IPFS first: closing it cancels the fetches our threads are blocked in
            # (up to fetch_timeout_s each), so they see the stop at once; what they
            # were about to publish is in the outbox already and goes out next start.
            for sub in self._subs.values():
                try:
                    sub.close()
                except IpfsError:
                    pass
            self._subs.clear()
            if self._services.opened_ipfs is not None:
                try:
                    self._services.opened_ipfs.close()
                except IpfsError as exc:
                    log.warning("IPFS did not stop cleanly: %s", exc)
        finally:
            self._checks.stop(timeout_s=self.config.fetch_timeout_s + 5)
            for t in self._threads:
                t.join(timeout=self.config.fetch_timeout_s + 5)
            self._threads.clear()
            # The ledger last: the threads above may still write to it until they end.
            if self._services.opened_ledger is not None:
                self._services.opened_ledger.close()

    @property
    def ledger(self) -> Ledger:
        return self._services.ledger

    @property
    def ipfs(self) -> IpfsNode:
        return self._services.ipfs

    # --- the network loop ----------------------------------------------------------

    def poll(self, budget_s: float = 0.2) -> list[NodeEvent]:
        """Handle what arrives for `budget_s` seconds, run due periodic work; returns
        what happened.

        While nothing arrives it blocks on the gossip topic (woken by any message),
        at most `idle_wait_s` at a time: a fetched record waits that long at most,
        and an idle node's loop wakes twice a second instead of polling every 50 ms.
        Any activity makes the waits short again.
        """
        busy_wait_s, idle_wait_s = 0.02, 0.5
        deadline = time.monotonic() + budget_s
        wait = idle_wait_s
        own_id = self.ipfs.peer_id()
        subs = list(self._subs.items())
        gossip_sub = self._subs.get("gossip")
        while True:
            got = False
            messages: list[tuple[str, bytes]] = []
            for name, sub in subs:  # at most MESSAGES_PER_ROUND a topic: none starves
                for _ in range(MESSAGES_PER_ROUND):
                    try:
                        msg = sub.next_message(0.0)
                    except IpfsError as exc:
                        self._event("warning", f"subscription {name}: {exc}")
                        break
                    if msg is None:
                        break
                    got = True
                    if msg.from_peer != own_id:
                        messages.append((msg.from_peer, msg.data))
            if messages:
                with self.loop_time.step("messages"):
                    self._sync.on_messages(messages)
            # Fetched records in batches: one ledger transaction (one fsync) each.
            batch: list[tuple[bytes, str, str]] = []
            while len(batch) < INGEST_BATCH:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            if batch:
                got = True
                with self.loop_time.step("fetched"):
                    self._store.ingest_many([(data, source) for data, source, _ in batch])
                    self._sync.ingested([cid for _, _, cid in batch])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if got:
                wait = busy_wait_s
                continue
            step = min(wait, remaining)
            wait = min(idle_wait_s, wait * 2)
            if gossip_sub is None:
                time.sleep(step)
                continue
            try:
                msg = gossip_sub.next_message(step)
            except IpfsError as exc:
                self._event("warning", f"subscription gossip: {exc}")
                time.sleep(step)
                continue
            if msg is not None:
                wait = busy_wait_s
                if msg.from_peer != own_id:
                    with self.loop_time.step("messages"):
                        self._on_message(msg.from_peer, msg.data)
        self._periodic()
        with self._lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def _count_inbox_drops(self) -> None:
        """Count, per sender, the messages our subscriptions' inboxes dropped unread
        (over their budget: network/ipfs/inbox.py); head sync brings their records."""
        for name, sub in list(self._subs.items()):
            for peer, n in sub.take_dropped().items():
                why = f"{n} message(s) on {name} dropped unread: the inbox was full"
                self._services.reject(Rejection(R.INBOX_FULL, why), peer, count=n)

    def _periodic(self) -> None:
        self._count_inbox_drops()
        now = time.monotonic()
        # Every node reads every changed head it hears of, so the swarm's head reads
        # grow with the square of its size; the interval grows with the number of
        # head senders heard so the swarm's heads stay about HEADS_PER_INTERVAL per
        # interval (bench/swarm.py at 50 nodes on two cores), at most
        # HEAD_INTERVAL_MAX_FACTOR times: peer ids cost nothing, so a flood of heads
        # from made-up ones must not silence ours.
        factor = self._sync.head_senders() / HEADS_PER_INTERVAL
        head_interval = self.config.head_interval_s * min(
            HEAD_INTERVAL_MAX_FACTOR, max(1.0, factor)
        )
        if now - self._last_head >= head_interval:
            self._last_head = now
            # An unchanged head goes out again only every `refresh` seconds, or at
            # once when the connected peers changed (a new or returning peer learns
            # it): an idle swarm's heads no longer keep every node's gossip busy.
            # (State kept on the node by this method alone; the defaults: never sent.)
            refresh = max(60.0, 12 * self.config.head_interval_s)
            key = (self._store.counts()[0], tuple(sorted(self._safe_peers())))
            last_key, last_sent = getattr(self, "_head_sent", (None, -refresh))
            if key != last_key or now - last_sent >= refresh:
                with self.loop_time.step("head"):
                    self._publish_head()
                if self._heads.last_head_cid:  # ("": it failed; tried again next time)
                    self._head_sent = (key, now)
        if now - self._last_peer_watch >= PEER_WATCH_INTERVAL_S:
            self._last_peer_watch = now
            # A new peer learns our claim; the nodes heard of set the spread.
            with self.loop_time.step("peers"):
                peers = self._safe_peers()
            with self.loop_time.step("planner"):
                if self._planner.note_peers(peers, heard=self._sync.head_senders()):
                    self._publisher.new_peers(now)
            with self.loop_time.step("identity"):
                self._publisher.announce_identity_if_due(now)
        if now - self._last_reannounce >= self.config.reannounce_interval_s:
            self._last_reannounce = now
            with self.loop_time.step("reannounce"):
                more = self._reannounce(backoff=True)
            if more:
                # (its time was up with entries left: the rest a second from now)
                self._last_reannounce = now - self.config.reannounce_interval_s + 1.0
        if now - self._last_redial >= self.config.redial_interval_s:
            self._last_redial = now
            with self.loop_time.step("dial"):
                self._dial_peers()
        with self.loop_time.step("unread_heads"):
            self._sync.follow_unread()
        with self.loop_time.step("block_gc"):
            self._block_gc.collect()
        if now - self._last_housekeeping >= HOUSEKEEPING_INTERVAL_S:
            self._last_housekeeping = now
            with self.loop_time.step("housekeeping"):
                self._housekeeping()
        if self.config.trust is not None and now - self._last_trust >= TRUST_INTERVAL_S:
            self._last_trust = now
            with self.loop_time.step("trust"):
                self._trust_tick()

    def _housekeeping(self) -> None:
        """Forget what must not grow without bound."""
        try:
            self.ledger.expire_claims(self._services.clock())
            # A verified unit needs no claims, so its first-claim times cap nothing.
            st = self.state()
            verified = [u for u in self.ledger.claim_hold_units() if st.status_of(u) == "verified"]
            if verified:
                self.ledger.forget_claim_holds(verified)
        except LedgerError as exc:
            self._event("warning", f"ledger: {exc}")
        cutoff = time.monotonic() - PENDING_TTL_S
        self._store.forget_pending(older_than=cutoff)
        # (asked outside the lock: an IPFS call)
        self._heads.forget_peers_except(self._safe_peers())

    def _on_message(self, peer: str, data: bytes) -> None:
        self._sync.on_message(peer, data)

    def _publish_head(self) -> None:
        self._block_gc.retire(self._publisher.publish_head())

    def _keeps_object(self, cid: str) -> bool:
        """An object that stays in our IPFS store: one of our current head's, a record
        we hold, or one of our evidence (or candidate list) files."""
        return (
            self._heads.names(cid)
            or self._store.holds(cid)
            or (self._evidence_dir / cid).exists()
        )

    def _reannounce(self, *, backoff: bool = False) -> bool:
        """Announce our unacknowledged records again: those due (``backoff``, within
        REANNOUNCE_BUDGET_S; True when some are left for later), or all."""
        if not backoff:
            return self._publisher.reannounce()
        return self._publisher.reannounce(
            self.config.reannounce_interval_s, budget_s=REANNOUNCE_BUDGET_S
        )

    def _trust_tick(self) -> None:
        if self._trust is not None:
            self._trust.tick()

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
        """The connected peers, as listed at most PEERS_MAX_AGE_S ago ([] on an error).

        The status, the peer watch and the head's refresh each asked every second, and
        each ask is a library call on a thread of its own: on a loaded machine those
        took a third of the network loop's time, seconds a call at worst (bench/swarm.py,
        the report's network_loop)."""
        now = time.monotonic()
        at, peers = self._peers_listed
        if now - at < PEERS_MAX_AGE_S:
            return peers
        try:
            peers = self.ipfs.peers()
        except IpfsError:
            return []
        self._peers_listed = (time.monotonic(), peers)
        return peers

    def _event(self, kind: str, detail: str = "", cid: str | None = None) -> None:
        event = NodeEvent(kind, detail, cid)
        with self._lock:
            self.events.append(event)
            self._fresh.append(event)
        if kind == "warning":
            log.warning("%s", detail)
        else:
            log.debug("%s %s %s", kind, detail, cid or "")

    def _after_accept(self, signed: SignedRecord, cid: str, source: str) -> None:
        """A record from the network was stored: the parts that wait on one are told,
        and a record gossip brought tells how long gossip takes (the claim settle)."""
        if source != FETCHED:
            self.delivery_lag.note(signed.kind, self._services.clock() - signed.record.created)
        if signed.kind in ("delegation", "work"):
            self._sync.retry_claims()
        self._checks.note_accepted(signed, cid)

    # --- records and state ---------------------------------------------------------

    def ingest(self, data: bytes, source: str) -> Accepted | Rejection | None:
        """Parse, validate and store one record. Returns None for a known record."""
        return self._store.ingest(data, source)

    def publish(self, signed: SignedRecord) -> str | Rejection:
        """Validate a record signed by this node's key, store it durably and announce it.

        Returns its CID, or the Rejection (nothing stored) when it does not validate.
        """
        return self._publisher.publish(signed)

    def state(self) -> NetworkState:
        """The derived network state (cached until a record arrives)."""
        return self._store.state()

    def status(self) -> NodeStatus:
        st = self.state()
        now = time.monotonic()
        at, addrs = self._addresses_listed
        try:
            if now - at >= ADDRESSES_MAX_AGE_S or not addrs:
                addrs = tuple(self.ipfs.addresses())
                self._addresses_listed = (now, addrs)
            peer_id = self.ipfs.peer_id()
        except IpfsError:
            addrs, peer_id = (), ""
        records, pending = self._store.counts()
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
            fetch=self._sync.fetches.counters(),
            gets=tuple(sorted(self._sync.gets_by_kind().items())),
            account_weight=st.account_weight(self.account_pub),
            phases=phase_counts(st),
            candidate_units=tuple(u.unit for u in st.candidate_units),
            loop=self.loop_time.snapshot(),
            claim_settle_s=self.delivery_lag.settle_s(self.config.claim_settle_s),
        )

    def my_units(self) -> list[tuple[int, str, str]]:
        """(unit, status, work CID) of every unit this account reported."""
        st = self.state()
        mine = [(w.unit, cid) for cid, w in self._store.works() if w.account == self.account_pub]
        return sorted((unit, st.status_of(unit), cid) for unit, cid in mine)

    def work_record(self, cid: str) -> WorkRecord | None:
        """A work record the node holds, by CID (root, backend, compute time, date)."""
        return self._store.work(cid)

    # --- the compute loop's side ---------------------------------------------------

    def checkpoint_path(self, unit: int) -> Path:
        return self._planner.checkpoint_path(unit)

    def next_assignment(self) -> Assignment | None:
        """Claim and return the next unit to compute (resuming our own checkpoint first)."""
        return self._planner.next_assignment()

    def checker_duty(self) -> Assignment | None:
        """The unit the draw asks this node to check now (claimed), or None."""
        return self._planner.checker_duty()

    def take_unit(self, *, floor: int | None = None) -> Assignment | Hold | None:
        """The compute loop's next unit, claimed (resumed at once; a new one after
        listening and a settled claim, none below `floor`), Hold for now, or None
        (Planner.take_unit)."""
        return self._planner.take_unit(floor=floor)

    def claim(self, unit: int) -> None:
        """Publish (or renew) our claim on `unit` for claim_ttl_s."""
        self._planner.claim(unit)

    def submit_unit(self, assignment: Assignment, result: UnitResult) -> str:
        """Sign the unit's work record, store it durably, publish it. Returns its CID."""
        return self._planner.submit_unit(assignment, result)

    def next_block_task(self, *, idle: bool = False) -> BlockTask | None:
        """A dispute to confirm, else a drawn audit, else a spot-check when the budget
        allows (an idle node checks without budget), else None."""
        return self._checks.next_block_task(idle=idle)

    def submit_block(self, task: BlockTask, evidence: BlockEvidence) -> str:
        """Publish the outcome of a recomputed block: a check, or a dispute on mismatch."""
        return self._checks.submit_block(task, evidence)

    def _reveal_path(self, unit: int) -> Path:
        """Where our sealed work record of `unit` waits for its reveal (trust protocol)."""
        return reveal_path(self.config.data_dir, self.params.name, unit)
