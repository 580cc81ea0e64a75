"""Gossip in: messages to records, claims and heads; fetchers for what peers list.

The network loop hands each message to `on_message` (rate-limited per peer): an
inline record goes to the store, an announced CID or a peer's head is queued for
the fetcher threads (`fetch_loop`), a claim goes to the ledger (held until its
node's delegation arrives). Fetches are queued per peer and served round-robin
(network/fetchqueue.py), so one peer's flood cannot starve the rest; a failed
fetch backs off (backoff.py); a peer's head is followed page by page (heads.py),
only its newest announced head is fetched, and only when it may list a record we
lack (headreads.py). Fetched records land in `inbox`,
which the network loop drains into the store, so validation stays on one thread.

Lock discipline: `_lock` guards the newest-head table and the claims waiting for
their delegation; it is held only for those lookups, never across an IPFS get or
a ledger write. The store, the backoff, the fetch queue and the head book lock
themselves.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from cachetools import FIFOCache, LRUCache, TTLCache

from network import codec, wire
from network import rejection as R
from network.fetchqueue import OWN, FetchQueue
from network.ipfs import IpfsError, IpfsTimeout, cid_for_bytes
from network.ipfs.cid import is_valid_cid
from network.ledger import LedgerError
from network.nodeparts import headreads
from network.nodeparts.backoff import FetchBackoff
from network.nodeparts.headreads import ACK, BACKSTOP, READ, HeadReadPolicy
from network.nodeparts.heads import HeadBook
from network.nodeparts.ratelimit import PeerRateLimiter
from network.nodeparts.services import Services
from network.nodeparts.store import MAX_PENDING, MAX_REMEMBERED, RecordStore
from network.rejection import Rejection

log = logging.getLogger("hailstone.node")

MAX_FETCH_QUEUE = 10_000
# Fetches of one peer's jobs at once (a backlog from one peer is fetched this wide).
PER_PEER_INFLIGHT = 4
# Least time between two re-reads of a peer's head that we do not hold completely.
REFOLLOW_INTERVAL_S = 2.0
# How long the outbox's waiting count is taken as known (one query, not one per head).
OUTBOX_COUNT_TTL_S = 1.0
# How long a peer's head counts it among the swarm's head senders (head_senders).
HEAD_SENDERS_WINDOW_S = 300.0
# A fetcher with nothing to do sleeps this long (woken by a job or by stop()).
FETCH_WAIT_S = 5.0
# The source of a record a fetch brought (a gossiped one names its peer).
FETCHED = "fetch"
RECORD = "record"
HEAD = "head"
ACK_READ = "ack"  # a head's index and the pages where our waiting records would be
# A page's bundle is fetched when the page lists at least this many records we lack:
# for fewer (a node keeping up, which gossip already gave nearly everything) one
# get per record moves a few hundred bytes, where the bundle moves all of the page.
BUNDLE_MIN_MISSING = 4
# Memory for head indexes and pages read before (about 60,000 CIDs): a page is read
# once however many peers' heads list it. Bounded, so junk pages only push out others.
CID_LIST_CACHE_BYTES = 8 << 20


def _cid_list_bytes(cids: list[str]) -> int:
    """About what a cached list of CIDs holds in memory (list slot, str object)."""
    return 64 + sum(56 + len(c) for c in cids)


def claim_id(node: bytes) -> str:
    """A node holds one claim at a time: a new claim replaces its previous one."""
    return node.hex()


class Sync:
    """Messages in, fetches out, peers' heads followed.

    Args:
        services: identity, ledger, IPFS, clock and events.
        store: where records go (and what we already hold or refused).
        heads: how far we follow each peer's head (shared with the publisher).
        fetch_timeout_s: every IPFS get's deadline.

    Attributes:
        rates, backoff, fetches: the per-peer limiter, the failed-fetch backoff and
            the fetch queue (tests replace the first two before start()).
        inbox: (record bytes, source, CID) fetched, for the network loop to ingest.
    """

    def __init__(
        self,
        services: Services,
        store: RecordStore,
        heads: HeadBook,
        *,
        fetch_timeout_s: float,
    ) -> None:
        self._services = services
        self._store = store
        self._heads = heads
        self._timeout_s = fetch_timeout_s
        self.rates = PeerRateLimiter()
        self.backoff = FetchBackoff()
        # (kind, cid, peer) jobs, queued under the peer that announced or listed them
        self.fetches = FetchQueue(
            per_peer_queue=MAX_FETCH_QUEUE, per_peer_inflight=PER_PEER_INFLIGHT
        )
        self.inbox: queue.Queue[tuple[bytes, str, str]] = queue.Queue()
        self._lock = threading.Lock()
        # Each peer's newest announced head: a queued older one is skipped when its turn
        # comes (bench/swarm.py at 16 nodes: a head every 5 s from each peer queued
        # ~600 stale head fetches per node, delaying the acknowledgements of our
        # outbox and so re-announcing it again and again).
        self._newest_head: FIFOCache[str, str] = FIFOCache(MAX_REMEMBERED)
        self._refollowed: FIFOCache[str, float] = FIFOCache(MAX_REMEMBERED)  # peer -> when
        # Which peers' heads to read, and when (headreads.py).
        self.reads = HeadReadPolicy(MAX_REMEMBERED)
        # The head of each peer we began to read and hold only in part: read again
        # until held (_follow_again), whatever its count says.
        self._following: FIFOCache[str, str] = FIFOCache(MAX_REMEMBERED)
        self._outbox_waiting: tuple[float, int] = (-OUTBOX_COUNT_TTL_S, 0)  # (when, count)
        # The frontier each peer's newest head reported (PROTOCOL §8, "Catching up").
        self._frontier_of: FIFOCache[str, int] = FIFOCache(MAX_REMEMBERED)
        # The bundle index of each peer's newest head, if it sent one ("Bundles").
        self._bundles_of: FIFOCache[str, str] = FIFOCache(MAX_REMEMBERED)
        self.bundled = 0  # records taken from peers' bundles (status, tests)
        # IPFS gets by what they fetched, and pages not fetched because held already
        # ("page_held"): where sync's traffic goes (status file, bench/swarm.py).
        self._gets: Counter[str] = Counter()
        # Peers whose head came within HEAD_SENDERS_WINDOW_S: the swarm's size, as
        # far as heads show it (the head rate scales with it, Node._periodic).
        self._head_senders: TTLCache[str, None] = TTLCache(
            MAX_REMEMBERED, HEAD_SENDERS_WINDOW_S, timer=time.monotonic
        )
        # Fetched, in the inbox, not ingested yet: not fetched again meanwhile.
        self._fetched: FIFOCache[str, None] = FIFOCache(MAX_REMEMBERED)
        # Head indexes and pages read, by (kind, CID), bounded by their size (_cid_list).
        self._cid_lists: LRUCache[tuple[str, str], list[str]] = LRUCache(
            CID_LIST_CACHE_BYTES, getsizeof=_cid_list_bytes
        )
        self._claims_waiting: deque[tuple[wire.Claim, str]] = deque(maxlen=MAX_PENDING)
        self.last_progress = time.monotonic()  # when fetched records were last ingested
        # Told of each peer head object read (index, page, bundle, bundle index): the
        # node removes them from its store a while later (blockgc.py).
        self.on_head_object: Callable[[str], None] | None = None

    def idle(self) -> bool:
        """Nothing queued to fetch and nothing fetched waiting to be ingested."""
        return self.fetches.empty() and self.inbox.empty()

    # --- the network loop ------------------------------------------------------------

    def on_message(self, peer: str, data: bytes) -> None:
        """One gossip message from `peer` (never from ourselves)."""
        self.on_messages([(peer, data)])

    def on_messages(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """Gossip messages (peer, bytes) read together, in order: the records they
        carry are judged in that order and stored in one ledger transaction (one per
        record was most of a busy node's network loop, bench/swarm.py)."""
        records: list[tuple[bytes, str]] = []
        for peer, data in messages:
            records.extend((record, peer) for record in self._take_message(peer, data))
        if records:
            self._store.ingest_many(records)

    def _take_message(self, peer: str, data: bytes) -> tuple[bytes, ...]:
        """Act on one message; return the records it carries, for the caller to ingest."""
        if not self._within_rate(peer):
            return ()
        msg = wire.decode_message(data)
        if isinstance(msg, Rejection):
            self._services.reject(msg, peer)
        elif isinstance(msg, wire.Announcement):
            if msg.record is not None:
                return (msg.record,)
            if msg.cid is not None and self.worth_fetching(msg.cid):
                self.want(RECORD, msg.cid, peer)
        elif isinstance(msg, wire.Batch):
            # Each record costs the sender one message of its rate, as if it came
            # alone, so a batch validates no more records than single messages could.
            if self._within_rate(peer, cost=len(msg.records) - 1):
                return msg.records
        elif isinstance(msg, wire.Claim):
            self.on_claim(msg, peer)
        elif isinstance(msg, wire.Head):
            self.on_head(msg, peer)
        return ()

    def _within_rate(self, peer: str, cost: float = 1.0) -> bool:
        """Take `cost` messages of `peer`'s rate; a message past it is refused, counted."""
        if self.rates.allow(peer, cost=cost):
            return True
        self._services.reject(Rejection(R.RATE_LIMITED, "peer exceeds the message rate"), peer)
        return False

    def on_claim(self, claim: wire.Claim, peer: str) -> None:
        now = self._services.now()
        if self._store.authorised(claim.account, claim.node, now) is not None:
            # Most often the claim outran the node's delegation record: hold it until
            # the delegation arrives; an unauthorised claim simply never takes effect.
            with self._lock:
                self._claims_waiting.append((claim, peer))
            return
        beyond = wire.claim_beyond_unit(claim, self._services.params.blocks_per_unit)
        if beyond is not None:
            self._services.reject(beyond, peer)
            return
        expires = min(claim.expires, now + wire.MAX_CLAIM_TTL)
        try:
            self._services.ledger.put_claim(
                claim_id(claim.node),
                claim.unit,
                claim.node,
                claim.account,
                expires,
                received_at=now,  # the node's clock, as next_unit's `now`
                done=claim.done,
            )
        except LedgerError as exc:
            self._services.event("warning", f"cannot store claim: {exc}")

    def retry_claims(self) -> None:
        """A delegation arrived: the claims that waited for one are judged again."""
        with self._lock:
            claims = list(self._claims_waiting)
            self._claims_waiting.clear()
        for claim, peer in claims:
            if claim.expires > self._services.clock():
                self.on_claim(claim, peer)

    def on_head(self, head: wire.Head, peer: str) -> None:
        # A head we already hold completely needs nothing; any other is fetched
        # again, so records whose fetch failed are retried at the next announcement.
        with self._lock:
            self._newest_head[peer] = head.head
            self._frontier_of[peer] = head.frontier
            self._bundles_of[peer] = head.bundles
            self._head_senders[peer] = None
        if head.acks:
            self._acknowledge_by_ids(head.acks, peer)
        if self._heads.holds(peer, head.head):
            return
        if self._heads.held_as_ours(peer, head.head):  # (nothing to read)
            self.reads.held(peer)
            try:  # (it lists whatever of our waiting records our head lists)
                listed = self._heads.listed_by_ours(self._services.ledger.unacknowledged())
                if listed:
                    self._acknowledge(listed, peer)
            except LedgerError as exc:
                self._services.event("warning", f"ledger: {exc}")
            return
        if self.reads.on_head(peer, head.count, self._store.counts()[0]) == READ:
            self._read_head(peer, head.head, why="at_once")

    def _read_head(self, peer: str, head_cid: str, *, why: str) -> None:
        """Queue a read of `peer`'s head; `why` is counted ("read_<why>" among the
        gets: which rule reads the heads, bench/swarm.py)."""
        self._count(f"read_{why}")
        with self._lock:
            self._following[peer] = head_cid
        self.want(HEAD, head_cid, peer)

    def _outbox_waits(self, now: float) -> bool:
        """Some of our records made more than a head's grace ago wait for a peer's head
        to list them (a head sent before a record reached its sender cannot; asked
        once per OUTBOX_COUNT_TTL_S)."""
        at, waiting = self._outbox_waiting
        if now - at >= OUTBOX_COUNT_TTL_S:
            before = self._services.clock() - headreads.HEAD_GRACE_S
            try:
                waiting = len(self._services.ledger.unacknowledged(created_before=before))
            except LedgerError:
                waiting = 0
            self._outbox_waiting = (now, waiting)
        return waiting > 0

    def follow_unread(self) -> None:
        """Read the heads the read policy says are due (headreads.py); the network
        loop calls this every round."""
        newest: dict[str, str] = {}
        for peer in self.reads.unread():
            with self._lock:
                head = self._newest_head.get(peer)
            if head is None or self._heads.holds(peer, head):
                self.reads.held(peer)
            else:
                newest[peer] = head
        if not newest:
            return
        due = self.reads.due(
            self._store.counts()[0],
            lambda: self._outbox_waits(time.monotonic()),
            # (a head whose read failed waits out its backoff, as a record would)
            skip=lambda peer: (
                peer not in newest
                or self.fetches.busy(peer)
                or not self.backoff.due(newest[peer])
            ),
        )
        for peer, how in due:
            if how == ACK:
                self._count("read_ack")
                self.want(ACK_READ, newest[peer], peer)
            else:
                self._read_head(
                    peer, newest[peer], why="backstop" if how == BACKSTOP else "after_grace"
                )

    def head_senders(self) -> int:
        """How many peers' heads came within the last HEAD_SENDERS_WINDOW_S."""
        with self._lock:
            self._head_senders.expire()
            return len(self._head_senders)

    def frontier_hint(self) -> int | None:
        """The highest frontier reported by a peer whose newest head we do not hold
        completely yet, or None when there is none (PROTOCOL §8, "Catching up").

        A peer whose head we hold completely tells us nothing more: we hold every
        record it knows, so our own state is at least as far (and a lie in it is
        ignored). A hint only: a peer may lie (§11 says what that can cost)."""
        with self._lock:
            newest = [
                (peer, head, self._frontier_of.get(peer, 0))
                for peer, head in self._newest_head.items()
            ]
        hints = [f for peer, head, f in newest if not self._heads.holds(peer, head)]
        return max(hints, default=None)

    def worth_fetching(self, cid: str) -> bool:
        """Not held, not refused, not pending, not fetched and waiting in the inbox, and
        not failed too recently."""
        if self._store.known(cid):
            return False
        with self._lock:
            if cid in self._fetched:
                return False
        return self.backoff.due(cid)

    def want_dependency(self, key: tuple[str, object], source: str) -> None:
        """A record from `source` waits, pending, for what `key` names: a work record
        (a check's or a dispute's) is asked for by its CID at once, under the peer that
        sent the record (one naming junk is that peer's flood), where it waited for a
        head read to list it (24 nodes: late nodes held 100+ checks for a minute).
        A missing delegation has no CID to ask for (its node announces it again to new
        peers, Publisher.new_peers)."""
        kind, what = key
        if kind != "work" or not isinstance(what, str) or not is_valid_cid(what):
            return
        if self.worth_fetching(what):
            self.want(RECORD, what, OWN if source in ("", FETCHED) else source)

    def want(self, kind: str, cid: str, peer: str = "") -> None:
        """Queue a fetch under the peer that announced or listed it (fairness, blame)."""
        self.fetches.put(peer, (kind, cid, peer))

    # --- fetcher threads -------------------------------------------------------------

    def fetch_loop(self, stop: threading.Event) -> None:
        """Fetch wanted records and heads off the network loop (gets may block)."""
        while not stop.is_set():
            taken = self.fetches.get(timeout=FETCH_WAIT_S)
            if taken is None:
                continue
            queue_peer, (kind, cid, peer) = taken
            ok = timed_out = False
            if kind == RECORD and self._store.known(cid):
                # (listed by several peers' heads: fetched under another's name first)
                self.fetches.done(queue_peer, ok=True)
                continue
            try:
                if kind in (HEAD, ACK_READ):
                    with self._lock:
                        stale = self._newest_head.get(peer, cid) != cid
                    if not stale:  # (a stale one counts as done: a newer head is due)
                        read = self._fetch_head if kind == HEAD else self._acknowledge_from
                        read(peer, cid)
                else:
                    # Every get has a hard deadline (fetch_timeout_s); a timed-out get
                    # counts against the peer that wanted it fetched (FetchQueue).
                    data = self._get("record", cid, codec.MAX_RECORD_BYTES)
                    with self._lock:
                        self._fetched[cid] = None
                    self.inbox.put((data, FETCHED, cid))
                self.backoff.succeeded(cid)
                ok = True
            except IpfsTimeout as exc:
                timed_out = True
                self.backoff.failed(cid)
                log.info("fetch %s timed out: %s", cid, exc)
            except IpfsError as exc:
                self.backoff.failed(cid)
                log.info("fetch %s failed: %s", cid, exc)
            except Exception:  # noqa: BLE001 - a fetcher must outlive anything a peer sends
                log.exception("fetching %s failed", cid)
            finally:
                self.fetches.done(queue_peer, ok=ok, timed_out=timed_out)
            self._follow_again(queue_peer)

    def ingested(self, cids: list[str]) -> None:
        """The network loop ingested these fetched records (whatever the verdict: one
        the store could not keep, e.g. with its pending set full, may be fetched
        again). When the inbox is empty, peers' heads we began to read and do not
        hold completely yet are read again (_follow_again)."""
        with self._lock:
            if cids:
                self.last_progress = time.monotonic()
            for cid in cids:
                self._fetched.pop(cid, None)
            peers = list(self._newest_head) if self.inbox.empty() else []
        for peer in peers:
            self._follow_again(peer)

    def _follow_again(self, peer: str) -> None:
        """Read `peer`'s newest head again once all we queued from it is done, if we
        began to read it and do not hold it all yet: what did not fit in the queue (a
        backlog larger than it) or failed is asked for now, not at the peer's next head
        announcement (an unchanged head is announced only once a minute). At most every
        REFOLLOW_INTERVAL_S per peer, so CIDs that keep failing cost nothing, and not
        while the head's own read is backed off after a failure."""
        if peer == OWN or self.fetches.busy(peer):
            return
        now = time.monotonic()
        with self._lock:
            head = self._newest_head.get(peer)
            if head is None or now - self._refollowed.get(peer, 0.0) < REFOLLOW_INTERVAL_S:
                return
            self._refollowed[peer] = now
            begun = self._following.get(peer) == head
        if begun and not self._heads.holds(peer, head) and self.backoff.due(head):
            self._read_head(peer, head, why="again")

    def _fetch_head(self, peer: str, head_cid: str) -> None:
        """Read a peer's head index and each of its pages we do not hold completely."""
        ledger = self._services.ledger
        index = self._cid_list("head", head_cid, wire.decode_head_index)
        if isinstance(index, Rejection):
            self._services.reject(index, peer)
            return
        held = self._heads.pages_held(peer)
        complete = True
        with self._lock:
            bundles_cid = self._bundles_of.get(peer, "")
        bundles: list[str] | None = None  # read once a page lacks something
        for i, page_cid in enumerate(index):
            if page_cid in held:
                continue
            if self._held_elsewhere(page_cid, peer):
                held.add(page_cid)
                self._count("page_held")
                continue
            page = self._cid_list("page", page_cid, wire.decode_cid_list)
            if isinstance(page, Rejection):
                self._services.reject(page, peer)
                complete = False
                continue
            try:
                self._acknowledge(page, peer)
                missing = ledger.missing(page)
            except LedgerError as exc:
                self._services.event("warning", f"ledger: {exc}")
                return
            if not missing:  # (stored, not merely taken from a bundle and still unjudged)
                self._heads.note_whole_page(page_cid)
            # (not counting records on their way in, taken from another peer's bundle:
            # a late joiner fetched each page's bundle again from every peer listing
            # it while the first bundle's records waited to be judged, 550-760
            # bundles each to catch up 700 records, bench/swarm.py at 24 nodes)
            if bundles_cid and self._worth_a_bundle(missing):
                if bundles is None:
                    bundles = self._bundle_index(bundles_cid, peer)
                if bundles:
                    missing = self._take_bundle(bundles[i], missing, peer)
            if self._want_missing(missing, peer):
                complete = False
            else:
                held.add(page_cid)
        try:
            ledger.note_peer_head(peer, head_cid)
        except LedgerError as exc:
            self._services.event("warning", f"ledger: {exc}")
        self._heads.followed(peer, head_cid, held, complete)
        if complete:
            self.reads.held(peer)
        else:
            self.reads.read_in_part(peer)

    def _acknowledge_from(self, peer: str, head_cid: str) -> None:
        """Read of `peer`'s head only what acknowledges our outbox: its index and the
        pages where our waiting records would be listed (a record's page is fixed by
        its CID, `wire.page_of`). Nothing else is fetched, and the head stays unread."""
        try:
            waiting = self._services.ledger.unacknowledged()
        except LedgerError as exc:
            self._services.event("warning", f"ledger: {exc}")
            return
        if not waiting:
            return
        index = self._cid_list("head", head_cid, wire.decode_head_index)
        if isinstance(index, Rejection):
            self._services.reject(index, peer)
            return
        for i in sorted({wire.page_of(cid) for cid in waiting}):
            page_cid = index[i]
            if self._held_elsewhere(page_cid, peer):
                continue  # (one of ours acknowledges what it lists; see there)
            page = self._cid_list("page", page_cid, wire.decode_cid_list)
            if isinstance(page, Rejection):
                self._services.reject(page, peer)
                return
            try:
                self._acknowledge(page, peer)
            except LedgerError as exc:
                self._services.event("warning", f"ledger: {exc}")
                return

    def _cid_list(
        self, what: str, cid: str, decode: Callable[[bytes], list[str] | Rejection]
    ) -> list[str] | Rejection:
        """A head index or page, from the cache of those read before or fetched (and
        then cached when well-formed). A CID names its content, so a page that several
        peers' heads list is read once: a node catching up held few pages whole, and
        fetched each peer's copy of each changed page again (bench/swarm.py)."""
        with self._lock:
            known = self._cid_lists.get((what, cid))
        if known is not None:
            self._count(f"{what}_cached")
            return known
        got = decode(self._get(what, cid, wire.MAX_HEAD_BYTES))
        if not isinstance(got, Rejection):
            with self._lock:
                self._cid_lists[(what, cid)] = got
        return got

    def _get(self, what: str, cid: str, max_bytes: int) -> bytes:
        self._count(what)
        data = self._services.ipfs.get(cid, self._timeout_s, max_bytes)
        if what != "record" and self.on_head_object is not None:
            self.on_head_object(cid)
        return data

    def _count(self, what: str) -> None:
        with self._lock:  # (fetcher threads)
            self._gets[what] += 1

    def gets_by_kind(self) -> dict[str, int]:
        with self._lock:
            return dict(self._gets)

    def _held_elsewhere(self, page_cid: str, peer: str) -> bool:
        """A page of `peer`'s that is one of ours, or that we held every record of when
        another peer listed it: nothing to fetch (a CID names its content). At 24 nodes
        every node read each changed page of each peer's heads, 63 % of them pages it
        already had. A page of ours acknowledges the records of ours it lists, as
        reading it would; a page held whole from another peer acknowledged them then."""
        ours = self._heads.our_page(page_cid)
        if ours is None:
            return self._heads.whole_page(page_cid)
        try:
            self._acknowledge(ours, peer)
        except LedgerError as exc:
            self._services.event("warning", f"ledger: {exc}")
            return False
        return True

    def _acknowledge_by_ids(self, acks: bytes, peer: str) -> None:
        """Our waiting outbox entries whose ack ids `peer`'s head names reached it: it
        says it added them since its previous head (PROTOCOL §8, "Acknowledgements").
        No read at all, where a head listing them had to be read first."""
        try:
            waiting = self._services.ledger.unacknowledged()
            if not waiting:
                return
            named = wire.ack_ids(acks)
            listed = [cid for cid in waiting if wire.ack_id(cid) in named]
            if listed:
                self._count("ack_by_head")
                self._acknowledge(listed, peer)
        except LedgerError as exc:
            self._services.event("warning", f"ledger: {exc}")

    def _acknowledge(self, cids: list[str], peer: str) -> None:
        """Our outbox entries among `cids` (a page `peer` lists) reached it (LedgerError)."""
        acked = self._services.ledger.acknowledge(cids, peer)
        if acked:
            self._services.event("acknowledged", f"{acked} of our records reached {peer}")

    def _worth_a_bundle(self, missing: list[str]) -> bool:
        """At least BUNDLE_MIN_MISSING of `missing` are still to be fetched."""
        wanted = 0
        for cid in missing:
            wanted += self.worth_fetching(cid)
            if wanted >= BUNDLE_MIN_MISSING:
                return True
        return False

    def _bundle_index(self, cid: str, peer: str) -> list[str]:
        """A peer's bundle index, or [] when unreachable or malformed (its records are
        then fetched one by one, as from a head without bundles)."""
        try:
            index = wire.decode_head_index(
                self._get("bundle_index", cid, wire.MAX_HEAD_BYTES)
            )
        except IpfsError as exc:
            log.info("bundle index %s of %s: %s", cid, peer, exc)
            return []
        if isinstance(index, Rejection):
            self._services.reject(index, peer)
            return []
        return index

    def _take_bundle(self, cid: str, missing: list[str], peer: str) -> list[str]:
        """Fetch one page's bundle and hand the records it holds that we lack to the
        network loop (as fetched records: validated as any other); returns what is
        still missing. A record is taken only under a CID the page lists and we lack,
        and its CID is its hash, so a bundle can bring nothing else."""
        try:
            bundle = wire.decode_bundle(
                self._get("bundle", cid, wire.BUNDLE_MAX_BYTES)
            )
        except IpfsError as exc:
            log.info("bundle %s of %s: %s", cid, peer, exc)
            return missing
        if isinstance(bundle, Rejection):
            self._services.reject(bundle, peer)
            return missing
        wanted = set(missing)
        taken: set[str] = set()
        for data in bundle:
            rec_cid = cid_for_bytes(data)
            if rec_cid not in wanted or rec_cid in taken or not self.worth_fetching(rec_cid):
                continue
            taken.add(rec_cid)
            with self._lock:
                self._fetched[rec_cid] = None
            self.inbox.put((data, FETCHED, rec_cid))
        with self._lock:  # (fetcher threads)
            self.bundled += len(taken)
        return [c for c in missing if c not in taken]

    def _want_missing(self, missing: list[str], peer: str) -> bool:
        """Queue what `peer`'s head page lists and we lack, under that peer (a head
        listing junk is that peer's flood); True if any is still unresolved (queued,
        pending, or failed fewer than `give_up` times)."""
        unresolved = False
        for cid in missing:
            if self._store.refused(cid):
                continue  # refused once: nothing to wait for
            waiting = self._store.is_pending(cid) or self.backoff.still_trying(cid)
            if self.worth_fetching(cid):
                self.want(RECORD, cid, peer)
                unresolved = True
            elif waiting:
                unresolved = True
        return unresolved
