"""Gossip out: our records, our head, our claims, and our evidence.

Every record we make is written to the ledger's outbox (durably, through the store)
before it is announced, and re-announced every `reannounce_interval_s` until a
peer's head lists it (sync.py acknowledges it then). Our head lists every record we
hold, in pages (heads.py): only changed pages are added to IPFS again. Our evidence
(and long candidate lists) are also kept as files, so they can be served again
after an IPFS repo loss.

Lock discipline: the publisher has no lock of its own and keeps no state but the
evidence folder; the store serialises its ledger writes, the head book locks
itself, and no lock is held across an IPFS call.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.files import write_atomic
from network import codec, wire
from network.ipfs import IpfsError
from network.ledger import LedgerError, OutboxEntry
from network.nodeparts.heads import HeadBook
from network.nodeparts.services import Services
from network.nodeparts.store import RecordStore
from network.records import SignedRecord
from network.rejection import Rejection

# The longest wait between two announcements of one record, in re-announce intervals.
REANNOUNCE_BACKOFF_MAX = 32
# Re-announcing runs on the network loop and each publish is a library call that a
# busy machine can hold for a second or more: at 50 nodes on two cores, with outboxes
# of 40-90 records, the loops sat in re-announcements most of the time and read no
# gossip meanwhile. One call re-announces for this long at most; the rest wait for
# the next (Node retries a second later).
REANNOUNCE_BUDGET_S = 0.25
# Our identity records (account, delegation) go out again when new peers appear, at
# most this often: every other record of ours waits, pending, at a node that lacks
# them, and a node that joined after our start missed their first announcement (they
# are acknowledged, so never re-announced, and one record among thousands in a head).
# At 50 nodes the nodes held 7,000-17,000 records pending for want of delegations.
IDENTITY_AGAIN_S = 30.0


def _due(entry: OutboxEntry, now: float, interval_s: float) -> bool:
    if entry.published_at is None:  # stored, but its first announcement failed
        return True
    factor = min(2 ** max(0, entry.publish_count - 1), REANNOUNCE_BACKOFF_MAX)
    return now - entry.published_at >= interval_s * factor


class Publisher:
    """Stores and announces our records; publishes our head, claims and evidence.

    Args:
        services: identity, ledger, IPFS, clock and events.
        store: where our records are stored (ledger and memory) first.
        heads: our head's pages (shared with sync).
        evidence_dir: where our evidence objects are kept as files.
    """

    def __init__(
        self, services: Services, store: RecordStore, heads: HeadBook, *, evidence_dir: Path
    ) -> None:
        self._services = services
        self._store = store
        self._heads = heads
        self._evidence_dir = evidence_dir
        # Our account and delegation records as (CID, bytes) (set_identity), and when
        # they were last announced to new peers / are due again (network loop only).
        self._identity: list[tuple[str, bytes]] = []
        self._identity_sent = -IDENTITY_AGAIN_S
        self._identity_due: float | None = None

    def publish(self, signed: SignedRecord) -> str | Rejection:
        """Validate a record signed by this node's key, store it durably and announce it.

        Returns its CID, or the Rejection (nothing stored) when it does not validate.
        """
        verdict = self._store.check(signed)
        if isinstance(verdict, Rejection):
            return verdict
        return self.add_own(signed)

    def add_own(self, signed: SignedRecord) -> str:
        """Store our record and its outbox entry durably, then announce it."""
        row = self._store.store_own(signed)
        self._announce(row.cid, row.data)
        return row.cid

    def set_identity(self, records: list[SignedRecord]) -> None:
        """Our account and delegation records, announced again to new peers."""
        self._identity = [(codec.record_cid(data), data) for data in map(codec.encode, records)]

    def new_peers(self, now: float) -> None:
        """New peers appeared: our identity goes out again, at once or, within
        IDENTITY_AGAIN_S of the last time, when that has passed."""
        if self._identity and self._identity_due is None:
            self._identity_due = max(now, self._identity_sent + IDENTITY_AGAIN_S)

    def announce_identity_if_due(self, now: float) -> bool:
        """Announce our identity records (one message) if new peers made them due."""
        if self._identity_due is None or now < self._identity_due:
            return False
        self._identity_due, self._identity_sent = None, now
        self._send_batched(dict(self._identity))
        return True

    def _announce(self, cid: str, data: bytes) -> None:
        self._send([(cid, data)], wire.encode_announcement(data, cid))

    def _send(self, records: list[tuple[str, bytes]], message: bytes) -> None:
        """Serve `records` and publish the one message announcing them."""
        ipfs = self._services.ipfs
        try:
            for _cid, data in records:
                ipfs.add(data)
            ipfs.publish(self._services.topic("records"), message)
            self._services.ledger.mark_published(
                [cid for cid, _data in records], at=self._services.clock()
            )
        except (IpfsError, LedgerError) as exc:
            # Stays in the outbox; the next re-announce tries again.
            what = records[0][0] if len(records) == 1 else f"{len(records)} records"
            self._services.event("warning", f"could not publish {what}: {exc}")

    def reannounce(self, interval_s: float = 0.0, budget_s: float | None = None) -> bool:
        """Announce outbox entries (those no peer's head lists yet) again.

        With ``interval_s``, only those due: an entry announced k times waits
        ``interval_s * 2**(k-1)`` (at most REANNOUNCE_BACKOFF_MAX times ``interval_s``)
        since its last announcement. Each announcement is a new gossip message that
        crosses the whole network, and when the network lags behind (a busy machine,
        a large swarm) heads arrive late, so announcing every entry at a fixed interval
        repeated each record several times exactly when the network was slowest.
        Nothing waits on it: our head lists every record we hold, so a peer that
        missed every announcement fetches the record when it reads our head.
        Without ``interval_s`` every entry goes out now (e.g. to a peer just connected).
        The entries due go out together, in batches (wire.encode_announcements).
        With ``budget_s``, it stops announcing once that long has passed (oldest
        entries first) and returns True: entries were left that are due.
        """
        try:
            entries = self._services.ledger.outbox()
        except LedgerError as exc:
            self._services.event("warning", f"ledger: {exc}")
            return False
        now = self._services.clock()
        stop_at = None if budget_s is None else time.monotonic() + budget_s
        due = {e.cid: e.data for e in entries if interval_s <= 0 or _due(e, now, interval_s)}
        return self._send_batched(due, stop_at)

    def _send_batched(self, records: dict[str, bytes], stop_at: float | None = None) -> bool:
        """Announce `records` (CID -> bytes, in order) in as few messages as the limits
        allow (PROTOCOL §8, "Batches": a pass of 90 entries was 90 messages, each
        crossing the whole network; now it is three). Past `stop_at` (monotonic) it
        stops and returns True: some were left."""
        for message, cids in wire.encode_announcements(list(records.items())):
            if stop_at is not None and time.monotonic() >= stop_at:
                return True
            self._send([(cid, records[cid]) for cid in cids], message)
        return False

    def publish_head(self) -> tuple[str, ...]:
        """Add our head pages and index to IPFS (only what changed) and announce the
        head. Returns the objects of our last head that this one no longer names."""
        services = self._services
        try:
            head = self._heads.our_head_of_pages(self._store.page_lists(), services.ledger.get_many)
        except LedgerError as exc:
            services.event("warning", f"could not publish head: {exc}")
            return ()
        try:
            for obj in head.new_objects:
                services.ipfs.add(obj)
            # Our frontier rides along: a node still catching up takes no new unit
            # below the highest one its peers report (PROTOCOL §8, "Catching up").
            frontier = min(self._store.state().frontier, wire.MAX_HEAD_FRONTIER)
            msg = wire.sign_head(
                wire.Head(
                    services.node_pub,
                    head.head_cid,
                    head.count,
                    frontier=frontier,
                    bundles=head.bundles_cid,
                    # What reached us since our last head: its authors stop
                    # re-announcing it (PROTOCOL §8, "Acknowledgements").
                    acks=wire.encode_acks(head.added),
                ),
                services.node_key,
            )
            services.ipfs.publish(services.topic("heads"), msg)
        except IpfsError as exc:
            self._heads.forget_ours()  # everything is offered again next time
            services.event("warning", f"could not publish head: {exc}")
        return head.retired

    def publish_claim(self, unit: int, claim_id: str, expires: int, done: int = 0) -> None:
        """Store our claim on `unit` (`done` blocks finished) and announce it (a failure
        is only a warning)."""
        services = self._services
        c = wire.Claim(unit, services.node_pub, services.account_pub, expires, done=done)
        try:
            services.ledger.put_claim(
                claim_id,
                unit,
                services.node_pub,
                services.account_pub,
                expires,
                received_at=services.now(),  # the node's clock, as next_unit's `now`
                done=done,
            )
            services.ipfs.publish(services.topic("claims"), wire.sign_claim(c, services.node_key))
        except (IpfsError, LedgerError) as exc:
            services.event("warning", f"could not publish claim on unit {unit}: {exc}")

    def add_evidence(self, cid: str, data: bytes, what: str) -> None:
        """Serve one of our evidence objects (`what` names it in a warning) and keep
        it as a file; IPFS's `add` is local, so this never waits for a peer."""
        try:
            self._services.ipfs.add(data)
        except IpfsError as exc:
            self._services.event("warning", f"{what} not stored in IPFS yet: {exc}")
        # Our own leaves, kept so we can serve them again after an IPFS repo loss.
        write_atomic(self._evidence_dir / cid, data)

    def republish_evidence(self) -> None:
        """Add every kept evidence file to IPFS again (at start)."""
        if self._evidence_dir.is_dir():
            for path in self._evidence_dir.iterdir():
                try:
                    self._services.ipfs.add(path.read_bytes())
                except (OSError, IpfsError):
                    pass
