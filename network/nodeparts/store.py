"""The record store: every valid record the node holds, and the derived state.

Each record is parsed once: one given again is found held by its CID, unparsed.
Account and delegation records are indexed as they arrive (`IdentityBook`: the
delegation rule and the directory) and not kept; every other record is kept in
memory by CID and by kind, the work records indexed, so validation and
`derive_state` never re-parse the ledger. Records that arrive before their
delegation or work record wait in `pending` (bounded, forgotten after
PENDING_TTL_S). Each waits on one key: the node key its delegation must authorise,
or the work CID it reports on; only the records waiting on what just arrived are
validated again, so a backlog of records no delegation will ever authorise costs
nothing per accepted record. Records dropped because the pending set is full or
because they waited too long are counted as rejections. CIDs we refused are
remembered (bounded) so they are not fetched again.

Lock discipline: `_lock` guards the in-memory tables; readers (state(), the planner,
fetcher threads) take it briefly. `_write_lock` makes check → validate → ledger →
cache one step among writers; it is taken before `_lock`, never inside it. `_lock`
is never held across the ledger's fsync'd write, and neither lock across an IPFS
call (ingest adds the record to IPFS after releasing both).
"""

from __future__ import annotations

import threading
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence

from cachetools import FIFOCache

from engine import Params
from network import codec
from network import rejection as R
from network.directory import IdentityBook
from network.ipfs import IpfsError
from network.ledger import LedgerError, StoredRecord, stored_record
from network.nodeparts.heads import PageLists
from network.nodeparts.pending import PendingRecords, Waiting, WaitKey
from network.nodeparts.services import Services
from network.records import (
    CheckRecord,
    DelegationRecord,
    SignedRecord,
    SpotCheckRecord,
    WorkRecord,
)
from network.rejection import Accepted, Rejection
from network.state import NetworkState, derive_state
from network.trust import TrustPolicy
from network.validate import Delegations, ValidationContext, authorised, validate
from network.validate import context as validation_context

# Records waiting for their delegation or work record to arrive, and for how long.
MAX_PENDING = 10_000
PENDING_TTL_S = 600.0
# How many refused CIDs are remembered.
MAX_REMEMBERED = 50_000

AcceptListener = Callable[[SignedRecord, str, str], None]  # (record, CID, source)


class RecordStore:
    """Validated records by CID, the derived state, pending and refused records.

    Args:
        services: identity, ledger, IPFS, clock and events.
        param_sets: parameter sets work may use (ours first).
        trust: the verification protocol's policy for derive_state (None: quorum).
        max_skew_s: how far a record's `created` may lie ahead of our clock.
        on_accept: called after a record from the network is stored, with its CID and
            source (a peer id, or "fetch"; no lock held).
    """

    def __init__(
        self,
        services: Services,
        *,
        param_sets: tuple[Params, ...],
        trust: TrustPolicy | None,
        max_skew_s: int,
        on_accept: AcceptListener,
    ) -> None:
        self._services = services
        self._params = services.params
        self._param_sets = param_sets
        self._trust = trust
        self._max_skew_s = max_skew_s
        self._on_accept = on_accept
        self._lock = threading.RLock()
        self._write_lock = threading.RLock()
        self._held: set[str] = set()  # the CID of every record held, of any kind
        # Account and delegation records are indexed once, as they arrive, for
        # validation and the directory, and not kept otherwise (the ledger and IPFS
        # have them); the state is derived from the rest (`_activity`, also indexed
        # by kind). So what a flood of fresh accounts costs each later record, each
        # state derivation and each read by kind does not grow with the flood, and a
        # held identity record costs only its index entries (bench/fresh_accounts.py).
        self._identities = IdentityBook()
        self._activity: dict[str, SignedRecord] = {}
        self._by_kind: dict[str, dict[str, SignedRecord]] = {}  # activity records only
        self._pages = PageLists()  # (our head lists every record held)
        self._works: dict[str, WorkRecord] = {}
        self._checkers: dict[str, set[bytes]] = {}  # work CID -> accounts that checked it
        self._state: NetworkState | None = None
        self._last_state: NetworkState | None = None  # (kept when a record arrives)
        self._pending = PendingRecords(MAX_PENDING)  # until their delegation or work arrives
        # Told (no lock held) what a record from `source` now waits for: the node asks
        # for a missing work record by its CID at once (Sync.want_dependency).
        self.on_wait: Callable[[WaitKey, str], None] | None = None
        self._rejected: FIFOCache[str, None] = FIFOCache(MAX_REMEMBERED)

    # --- writing ---------------------------------------------------------------------

    def load(self, rows: Iterable[StoredRecord]) -> None:
        """Hold the ledger's records (validated when stored: parsed, never re-validated)."""
        for row in rows:
            signed = codec.parse(row.data)
            if not isinstance(signed, Rejection):
                self._cache(row.cid, signed)

    def ingest(self, data: bytes, source: str) -> Accepted | Rejection | None:
        """Parse, validate and store one record. Returns None for a known record."""
        return self.ingest_many([(data, source)])[0]

    def ingest_many(self, items: Sequence[tuple[bytes, str]]) -> list[Accepted | Rejection | None]:
        """Parse, validate and store records, the accepted ones in one ledger
        transaction (one fsync for a whole fetched batch, not one per record).

        Each record is validated against what we hold plus the records accepted
        before it in the batch (a delegation and the work it authorises may arrive
        together), but nothing is held, nor visible to readers, until the batch
        is durable. Returns a verdict per item: None for a record we already hold,
        or when the ledger could not store the batch (a peer's head offers it again).
        """
        return self._ingest([(data, source, None) for data, source in items])

    def _ingest(
        self, items: Sequence[tuple[bytes, str, SignedRecord | None]]
    ) -> list[Accepted | Rejection | None]:
        """ingest_many's work; an item's parsed form, when given, is not parsed (nor
        its signature checked) again."""
        waiting_on: list[tuple[WaitKey, str]] = []
        try:
            return self._ingest_noting(items, waiting_on)
        finally:  # (after every lock is released)
            if self.on_wait is not None:
                for key, source in waiting_on:
                    self.on_wait(key, source)

    def _ingest_noting(
        self,
        items: Sequence[tuple[bytes, str, SignedRecord | None]],
        waiting_on: list[tuple[WaitKey, str]],
    ) -> list[Accepted | Rejection | None]:
        """_ingest's work; appends to `waiting_on` what each record held pending waits
        on, with its source."""
        services = self._services
        verdicts: list[Accepted | Rejection | None] = [None] * len(items)
        batch: list[
            tuple[int, SignedRecord, str, bytes, str]
        ] = []  # (i, record, cid, bytes, source)
        batch_cids: set[str] = set()
        # (the batch's delegations, over those held: a record may use one before it)
        batch_delegations = self._identities.delegations.layer()
        new_works: dict[str, WorkRecord] = {}
        with self._write_lock:
            for i, (data, source, parsed) in enumerate(items):
                # A record held already is known by its bytes' hash alone: the same
                # bytes parse the same, so it is not parsed, nor its signature checked,
                # again (a page's bundle brings mostly records held; a flood replays).
                cid = codec.record_cid(data)
                with self._lock:
                    if cid in self._held or cid in batch_cids:
                        continue
                signed = codec.parse(data) if parsed is None else parsed
                if isinstance(signed, Rejection):
                    services.reject(signed, source)
                    verdicts[i] = signed
                    continue
                with self._lock:  # (nothing is held meanwhile: writers take _write_lock)
                    # (every record here came from codec.parse of `data`, now or
                    # when it was first held pending: its signature is verified)
                    verdict = validate(
                        signed, self._context(batch_delegations.view, new_works), parsed_cid=cid
                    )
                    # May simply have arrived before its delegation or work record.
                    waits = isinstance(verdict, Rejection) and verdict.reason_code in (
                        R.NO_DELEGATION,
                        R.UNKNOWN_WORK,
                    )
                    if waits:
                        held = Waiting(
                            data, source, time.monotonic(), _waits_on(signed, verdict), signed
                        )
                        if self._pending.add(cid, held):
                            verdicts[i] = verdict
                            if held.key is not None:
                                waiting_on.append((held.key, source))
                            continue
                verdicts[i] = verdict
                if isinstance(verdict, Rejection):
                    if waits:
                        # No room to hold it: counted, not remembered (its dependency
                        # may still come, and a peer's head will offer it again).
                        why = f"pending set full: {verdict.message}"
                        services.reject(Rejection(verdict.reason_code, why), source)
                        continue
                    with self._lock:
                        self._rejected[cid] = None
                    services.reject(verdict, source)
                    continue
                batch.append((i, signed, cid, data, source))
                batch_cids.add(cid)
                if isinstance(signed.record, DelegationRecord):
                    batch_delegations.add(signed.record)
                elif isinstance(signed.record, WorkRecord):
                    new_works[cid] = signed.record
            if not batch:
                return verdicts
            try:
                services.ledger.add_records(stored_record(b[1], b[4]) for b in batch)
            except LedgerError as exc:
                # Not stored, so not held: a peer's head will offer them again.
                services.event("warning", f"cannot store {len(batch)} record(s): {exc}")
                for i, *_ in batch:
                    verdicts[i] = None
                return verdicts
            for _, signed, cid, _, _ in batch:
                self._cache(cid, signed)
            with self._lock:
                for _, _, cid, _, _ in batch:
                    self._pending.discard(cid)
        arrived: set[WaitKey] = set()
        for _, signed, cid, data, source in batch:
            # Our head lists every record we hold, so we must be able to serve each one.
            try:
                services.ipfs.add(data)
            except IpfsError as exc:
                services.event("warning", f"cannot store {cid} in IPFS: {exc}")
            services.event("accepted", f"{signed.kind} from {source}", cid)
            if isinstance(signed.record, DelegationRecord):
                arrived.add(("node", signed.record.node))
            elif isinstance(signed.record, WorkRecord):
                arrived.add(("work", cid))
        if arrived:
            self._retry_pending(arrived)
        for _, signed, cid, _, source in batch:
            self._on_accept(signed, cid, source)
        return verdicts

    def store_own(self, signed: SignedRecord) -> StoredRecord:
        """Store our own record and its outbox entry durably (not yet announced).

        Raises:
            LedgerError: the ledger could not write it (nothing is held then).
        """
        row = stored_record(signed)
        with self._write_lock:  # not `_lock`: the write below fsyncs
            self._services.ledger.add_own_record(row)
            self._cache(row.cid, signed)
        return row

    def _cache(self, cid: str, signed: SignedRecord) -> None:
        with self._lock:
            self._held.add(cid)
            self._pages.add(cid)
            if not self._identities.add(cid, signed):
                self._activity[cid] = signed
                self._by_kind.setdefault(signed.kind, {})[cid] = signed
            if isinstance(signed.record, WorkRecord):
                self._works[cid] = signed.record
            elif isinstance(signed.record, CheckRecord | SpotCheckRecord):
                self._checkers.setdefault(signed.record.work_cid, set()).add(signed.record.account)
            self._state = None

    def _retry_pending(self, arrived: set[WaitKey]) -> None:
        """Validate again the records waiting on what `arrived` (and those whose wait
        is unknown); the rest stay as they are."""
        with self._lock:
            due = self._pending.take(arrived)
        if due:
            self._ingest([(w.data, w.source, w.signed) for w in due])

    def forget_pending(self, older_than: float) -> int:
        """Drop records pending since before `older_than` (time.monotonic()), counting
        each as a rejection; returns how many."""
        with self._lock:
            dropped = self._pending.take_older_than(older_than)
        for w in dropped:
            source, key = w.source, w.key
            what = "its delegation" if key is not None and key[0] == "node" else "its work record"
            self._services.reject(
                Rejection(
                    R.NO_DELEGATION if key is not None and key[0] == "node" else R.UNKNOWN_WORK,
                    f"dropped after {PENDING_TTL_S:.0f} s waiting for {what}",
                ),
                source,
            )
        return len(dropped)

    # --- reading ---------------------------------------------------------------------

    def _context(
        self,
        delegations: Delegations | None = None,
        new_works: Mapping[str, WorkRecord] | None = None,
    ) -> ValidationContext:
        """What validation consults; call with `_lock` held. `delegations` (those held
        unless given) and `new_works` may include records of a batch being ingested,
        valid but not held yet."""
        return validation_context(
            self._services.now(),
            param_sets=self._param_sets,
            indexed=self._identities.delegations.view if delegations is None else delegations,
            max_skew_s=self._max_skew_s,
            works=ChainMap(new_works, self._works) if new_works else self._works,
        )

    def check(self, signed: SignedRecord) -> Accepted | Rejection:
        """Validate a record against what we hold (nothing is stored)."""
        with self._lock:
            return validate(signed, self._context())

    def authorised(self, account: bytes, node: bytes, at: int) -> Rejection | None:
        """None if `account` had delegated `node` at time `at` (as far as we know)."""
        with self._lock:
            return authorised(self._context(), account, node, at)

    def state(self) -> NetworkState:
        """The derived network state (cached until a record arrives)."""
        with self._lock:
            if self._state is None:
                valid = [Accepted(record=s, cid=c) for c, s in self._activity.items()]
                self._state = derive_state(
                    valid, self._params, trust=self._trust, identities=self._identities.snapshot()
                )
                self._last_state = self._state
            return self._state

    def last_state(self) -> NetworkState:
        """The state as last derived, which may miss records that arrived since
        (derived now only if it never was). For reads that an older state cannot
        mislead (Node.unit_floor says why): deriving the state is O(records), and
        with records arriving all the time every ask derived it again; at 32 nodes
        on two cores that was a third of a node's Python time (py-spy --gil)."""
        with self._lock:
            last = self._last_state
        return self.state() if last is None else last

    def page_lists(self) -> list[list[str]]:
        """The CIDs of every held record, by head page, sorted (what our head lists)."""
        with self._lock:
            return self._pages.lists()

    def by_kind(self, kind: str) -> list[tuple[str, object]]:
        """(CID, payload) of every held record of `kind`, by CID.

        Raises:
            ValueError: `kind` is "account" or "delegation" (indexed, not kept: the
                state's directory and `authorised` answer for them).
        """
        if kind in IdentityBook.KINDS:
            raise ValueError(f"{kind} records are indexed, not kept")
        with self._lock:
            return [(c, s.record) for c, s in sorted(self._by_kind.get(kind, {}).items())]

    def work(self, cid: str) -> WorkRecord | None:
        with self._lock:
            return self._works.get(cid)

    def works(self) -> list[tuple[str, WorkRecord]]:
        """Every held work record, by CID."""
        with self._lock:
            return sorted(self._works.items())

    def checkers(self, work_cid: str) -> frozenset[bytes]:
        """The accounts whose check records of `work_cid` we hold."""
        with self._lock:
            return frozenset(self._checkers.get(work_cid, ()))

    def checked_by_node(self, node: bytes) -> set[str]:
        """Work CIDs that `node` checked or disputed (our own, after a restart)."""
        with self._lock:
            return {
                s.record.work_cid
                for kind in ("check", "spotcheck", "dispute")
                for s in self._by_kind.get(kind, {}).values()
                if s.record.node == node
            }

    def holds(self, cid: str) -> bool:
        with self._lock:
            return cid in self._held

    def refused(self, cid: str) -> bool:
        with self._lock:
            return cid in self._rejected

    def is_pending(self, cid: str) -> bool:
        with self._lock:
            return cid in self._pending

    def known(self, cid: str) -> bool:
        """Held, refused or pending: nothing to fetch."""
        with self._lock:
            return cid in self._held or cid in self._rejected or cid in self._pending

    def counts(self) -> tuple[int, int]:
        """(records held, records pending)."""
        with self._lock:
            return len(self._held), len(self._pending)


def _waits_on(signed: SignedRecord, verdict: Rejection) -> WaitKey | None:
    """What a record refused for a missing dependency waits on (None: unknown, retried
    whenever any delegation or work record arrives)."""
    record = signed.record
    if verdict.reason_code == R.NO_DELEGATION:
        node = getattr(record, "node", None)
        return ("node", node) if isinstance(node, bytes) else None
    work_cid = getattr(record, "work_cid", None)
    return ("work", work_cid) if isinstance(work_cid, str) else None
