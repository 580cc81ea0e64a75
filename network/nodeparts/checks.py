"""Others' work we recompute: spot-checks, drawn audits, dispute confirmations, and
exact re-checks of reported candidates.

The compute loop asks `next_block_task()`: a dispute to confirm first, then (under
the trust protocol) a drawn audit, then a spot-check when the budget allows (every
unit we report earns `spot_check_share` of a unit's blocks; an idle node checks
without budget, but only works fewer than IDLE_CHECKERS accounts checked). It runs
the block and hands the result to `submit_block`: a check record, or a dispute on
a mismatch. A spot-check draws several blocks of one work (a `_SpotGroup`) and
publishes one spot-check record naming those that matched once all are done. The
evidence a check needs is fetched on EvidenceFetcher's own thread (evidence.py), so
the compute loop never waits for IPFS. Candidates that others
report are re-checked on `recheck_loop`'s thread.

Lock discipline: `_lock` guards the confirmations queue, filled on the network loop
(`note_accepted`) and drained by the compute loop; it is never held across an IPFS
call or a ledger write. The spot-check budget, `_group`, `_checked` and
`_evidence_retry` are the compute loop's alone.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from engine import BlockEvidence, merkle_proof, merkle_root
from network import trust as T
from network.ipfs import MAX_OBJECT_BYTES, IpfsError
from network.ledger import LedgerError
from network.nodeparts.evidence import PENDING, EvidenceFetcher
from network.nodeparts.services import Services
from network.nodeparts.store import RecordStore
from network.records import (
    MAX_SPOT_BLOCKS,
    RECHECK_FACTOR,
    CheckRecord,
    DisputeRecord,
    RecheckRecord,
    SignedRecord,
    SpotCheckRecord,
    WorkRecord,
)
from network.state import NetworkState
from network.trust import TrustPolicy
from network.validate import recheck

# An idle node spot-checks a work only while fewer accounts than this have checked it:
# every idle node checking every work made check records (and evidence fetches) grow
# with nodes x works (bench/swarm.py: 370 checks for 50 works at 16 nodes).
IDLE_CHECKERS = 2
# Dispute confirmations (and candidate re-checks) waiting for their thread.
MAX_CONFIRM_TASKS = 1000
# The re-check thread with nothing to do waits this long (woken by a candidate or stop()).
RECHECK_WAIT_S = 5.0
# Evidence objects: one 32-byte leaf per block, in one IPFS object.
MAX_EVIDENCE_BYTES = MAX_OBJECT_BYTES
# An evidence fetch waits (within its timeout) while the IPFS backend has this many
# fetches still running: evidence that cannot be had keeps a library fetch running
# after its timeout, and at 50 nodes on two cores such fetches took all 32 of the
# library's slots, so every record and head fetch failed at once and each peer was
# put on hold for it (bench/swarm.py). Records and heads keep the rest.
EVIDENCE_MAX_PENDING = 8
EVIDENCE_WAIT_STEP_S = 0.5
SPOT_DOMAIN = b"hailstone/spot/v1\x00"


@dataclass(frozen=True, slots=True)
class BlockTask:
    """One block of someone else's work to recompute.

    `purpose` is "spot-check" (we chose the block), "audit" (the trust protocol drew
    it for us) or "confirm" (a dispute names it).
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


@dataclass(slots=True)
class _SpotGroup:
    """The blocks of one work drawn for one spot-check: those still to hand out, and
    those whose result came back (matched or not)."""

    work_cid: str
    todo: deque[BlockTask]
    blocks: frozenset[int]
    matched: set[int]
    done: set[int]


class BlockChecks:
    """Chooses blocks of others' work to recompute, and publishes the outcomes.

    Args:
        services: identity, IPFS, clock and events.
        store: the records held and the derived state.
        add_own: stores and announces one of our records (Publisher.add_own).
        head_cid: our current head's CID (it seeds our spot-check draws).
        trust: the verification protocol's policy (None: no drawn audits).
        spot_check_share: blocks checked per block reported.
        fetch_timeout_s: the evidence get's deadline.
        evidence_retry_s: how long unreachable evidence is left alone.

    Attributes:
        spot_budget: spot-checks earned and not yet run.
    """

    def __init__(
        self,
        services: Services,
        store: RecordStore,
        add_own: Callable[[SignedRecord], str],
        head_cid: Callable[[], str],
        *,
        trust: TrustPolicy | None,
        spot_check_share: float,
        fetch_timeout_s: float,
        evidence_retry_s: float,
    ) -> None:
        self._services = services
        self._store = store
        self._add_own = add_own
        self._head_cid = head_cid
        self._trust = trust
        self._share = spot_check_share
        self._timeout_s = fetch_timeout_s
        self._retry_s = evidence_retry_s
        self._lock = threading.Lock()
        self._confirm_tasks: deque[BlockTask] = deque()
        self._confirming: set[tuple[str, int]] = set()
        # (work CID, candidate); None: stop() wakes the idle re-check thread
        self._rechecks: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._checked: set[str] = set()
        self._group: _SpotGroup | None = None
        self._evidence_retry: dict[str, float] = {}
        self._evidence = EvidenceFetcher(self._fetch_evidence_of)
        self.spot_budget = 0.0
        # Told of each peer's evidence object fetched (its leaves are then held in
        # memory): the node removes it from its store a while later (blockgc.py).
        self.on_evidence_object: Callable[[str], None] | None = None

    def start(self, checked: set[str]) -> None:
        """Start the evidence fetcher; `checked`: works we checked before a restart."""
        self._checked = set(checked)
        self._evidence.start()

    def stop(self, timeout_s: float) -> None:
        self._rechecks.put(None)
        self._evidence.stop(timeout_s=timeout_s)

    def earn(self) -> None:
        """One unit reported: its share of spot-checks is earned."""
        self.spot_budget += self._share * self._services.params.blocks_per_unit

    # --- what arrives (network loop) ----------------------------------------------------

    def note_accepted(self, signed: SignedRecord, cid: str) -> None:
        """Queue a confirmation for others' disputes, a re-check for their candidates."""
        record, me = signed.record, self._services.account_pub
        # (validation accepts a dispute only once its work record is known)
        if isinstance(record, DisputeRecord) and record.account != me:
            self._queue_confirm(cid, record)
        if isinstance(record, WorkRecord) and record.account != me:
            for candidate in record.candidates:
                if self._rechecks.qsize() < MAX_CONFIRM_TASKS:
                    self._rechecks.put((cid, candidate))
            if record.has_candidates:
                self._services.event(
                    "candidate", f"unit {record.unit}: {record.candidate_count} reported"
                )

    def _queue_confirm(self, dispute_cid: str, d: DisputeRecord) -> None:
        params = self._services.params
        work = self._store.work(d.work_cid)
        if work is None or work.params != params or work.account == self._services.account_pub:
            return
        lo, _ = params.unit_range(work.unit)
        blo = lo + d.block * params.block_size
        task = BlockTask(
            "confirm",
            d.work_cid,
            d.block,
            blo,
            blo + params.block_size,
            d.claimed_leaf,
            d.proof,
            dispute_cid,
            d.recomputed_leaf,
        )
        key = (d.work_cid, d.block)
        with self._lock:
            # One recomputation per block, however many disputes name it.
            if key in self._confirming or len(self._confirm_tasks) >= MAX_CONFIRM_TASKS:
                return
            self._confirming.add(key)
            self._confirm_tasks.append(task)

    def recheck_loop(self, stop: threading.Event) -> None:
        """Re-check reported candidates exactly with a far larger bound and publish the
        outcome as a signed record (PROTOCOL §2, §6 recheck)."""
        services = self._services
        bound = RECHECK_FACTOR * services.params.exact_step_bound
        while not stop.is_set():
            try:
                # (idle: waits RECHECK_WAIT_S at a time, woken by a candidate or stop())
                item = self._rechecks.get(timeout=RECHECK_WAIT_S)
            except queue.Empty:
                continue
            if item is None:
                continue
            work_cid, candidate = item
            fell, steps = recheck(candidate, bound)
            rec = RecheckRecord(
                work_cid=work_cid,
                candidate=candidate,
                bound=bound,
                fell=fell,
                steps=steps,
                node=services.node_pub,
                account=services.account_pub,
                created=services.now(),
            )
            self._add_own(services.sign(rec))
            outcome = f"fell after {steps}" if fell else f"still stands after {bound}"
            services.event("candidate", f"re-check: {candidate} {outcome} odd steps")

    # --- the compute loop ----------------------------------------------------------------

    def next_block_task(self, *, idle: bool = False) -> BlockTask | None:
        """A dispute to confirm, else a drawn audit, else a spot-check when the budget
        allows, else None.

        An idle node (no unit to compute) spot-checks without budget: checking is
        then the most useful thing its cores can do.
        """
        with self._lock:
            if self._confirm_tasks:
                return self._confirm_tasks.popleft()
        if self._trust is not None:
            audit = self._audit_duty(self._store.state())
            if audit is not None:
                return audit
        if self._group is not None and self._group.todo:
            return self._group.todo.popleft()
        if self.spot_budget < 1.0 and not idle:
            return None
        # Budgeted checks pick any work and spend the budget on its blocks; checks
        # beyond the budget (idle) only the works that fewer than IDLE_CHECKERS
        # accounts have checked, as many blocks as one reported unit earns.
        budgeted = self.spot_budget >= 1.0
        size = int(self.spot_budget) if budgeted else round(self._share * self._blocks_per_unit)
        group = self._choose_spot_check(min(max(size, 1), MAX_SPOT_BLOCKS), budgeted)
        if group is None:
            return None
        if budgeted:
            self.spot_budget -= len(group.blocks)
        return group.todo.popleft()

    @property
    def _blocks_per_unit(self) -> int:
        return self._services.params.blocks_per_unit

    def _audit_duty(self, st: NetworkState) -> BlockTask | None:
        """A drawn audit of a paired unit: its drawn block, not one we choose (T5)."""
        if st.trust is None:
            return None
        services = self._services
        me = services.account_pub
        for unit, tally in sorted(st.trust.units.items()):
            if tally.phase not in (T.PAIRED, T.WITHHELD):
                continue
            pair = (tally.reporter, tally.checker)
            if me not in st.trust.ranking(unit, b"audit", pair)[: self._trust.audit_rank]:
                continue
            for cid, w in self._store.by_kind("work"):
                if w.unit != unit or w.account != tally.reporter or cid in self._checked:
                    continue
                leaves = self._evidence.result(cid)
                if leaves is PENDING:
                    continue  # asked for; a later call finds it
                self._checked.add(cid)
                block = T.audit_block(tally.seed, me, services.params.blocks_per_unit)
                if leaves is None:
                    # Withheld (or wrong) evidence is a fault on the record, not a retry.
                    rec = CheckRecord(
                        work_cid=cid,
                        block=block,
                        leaf=bytes(32),
                        match=False,
                        node=services.node_pub,
                        account=me,
                        created=services.now(),
                        unavailable=True,
                    )
                    self._add_own(services.sign(rec))
                    continue
                return self._block_task("audit", cid, unit, block, leaves)
        return None

    def _spot_check_order(self) -> list[tuple[str, WorkRecord, int]]:
        """Others' works we have not checked, with how many accounts checked each: the
        fewest checked first, then in an order of our own (a hash of our node key and
        the work's CID). In CID order, as before, every node that chose at the same
        moment checked the same work: 24 nodes on two cores made about 12 check
        records per work where the budget asks about 5 and idle checks 2 more
        (bench/swarm.py)."""
        services = self._services
        out = [
            (cid, w, len(self._store.checkers(cid)))
            for cid, w in self._store.works()
            if w.account != services.account_pub
            and cid not in self._checked
            and w.params == services.params
        ]

        def order(item: tuple[str, WorkRecord, int]) -> tuple[int, bytes]:
            cid, _w, checkers = item
            return checkers, hashlib.sha256(services.node_pub + cid.encode()).digest()

        return sorted(out, key=order)

    def _choose_spot_check(self, size: int, well_checked_too: bool) -> _SpotGroup | None:
        """Draw `size` blocks (at most all) of the first work in our order whose evidence
        we hold, and make them the current spot-check group."""
        services = self._services
        # (an older state only risks checking work a dispute has just removed)
        st = self._store.last_state()
        now = time.monotonic()
        for cid, w, checkers in self._spot_check_order():
            if not well_checked_too and checkers >= IDLE_CHECKERS:
                break  # (the rest are checked as often or more)
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
                self._evidence_retry[cid] = now + self._retry_s
                continue
            self._checked.add(cid)
            # The reporter cannot predict our key nor our current head: it cannot
            # know which blocks we will recompute.
            seed = hashlib.sha256(
                SPOT_DOMAIN + cid.encode() + services.node_pub + self._head_cid().encode()
            ).digest()
            blocks = draw_blocks(seed, len(leaves), min(size, len(leaves)))
            self._end_abandoned_group()
            self._group = _SpotGroup(
                work_cid=cid,
                todo=deque(self._block_task("spot-check", cid, w.unit, b, leaves) for b in blocks),
                blocks=frozenset(blocks),
                matched=set(),
                done=set(),
            )
            return self._group
        return None

    def _block_task(
        self, purpose: str, cid: str, unit: int, block: int, leaves: list[bytes]
    ) -> BlockTask:
        params = self._services.params
        lo, _ = params.unit_range(unit)
        blo = lo + block * params.block_size
        return BlockTask(
            purpose,
            cid,
            block,
            blo,
            blo + params.block_size,
            leaves[block],
            tuple(merkle_proof(leaves, block)),
        )

    def _fetch_evidence_of(self, cid: str) -> list[bytes] | None:
        """The evidence fetcher's job (its own thread): the leaves of work `cid`, or
        None when unreachable or not matching the record's root."""
        w = self._store.work(cid)
        if w is None:
            return None
        ipfs = self._services.ipfs
        deadline = time.monotonic() + self._timeout_s
        while ipfs.pending_fetches() >= EVIDENCE_MAX_PENDING and time.monotonic() < deadline:
            time.sleep(EVIDENCE_WAIT_STEP_S)
        try:
            data = ipfs.get(
                w.evidence_cid, max(0.1, deadline - time.monotonic()), MAX_EVIDENCE_BYTES
            )
        except IpfsError as exc:
            self._services.event("warning", f"evidence {w.evidence_cid} unavailable: {exc}")
            return None
        if self.on_evidence_object is not None:
            self.on_evidence_object(w.evidence_cid)
        n = self._services.params.blocks_per_unit
        if len(data) != 32 * n:
            return None
        leaves = [data[i * 32 : (i + 1) * 32] for i in range(n)]
        if merkle_root(leaves) != w.root:
            return None
        return leaves

    def submit_block(self, task: BlockTask, evidence: BlockEvidence) -> str:
        """Publish the outcome of a recomputed block: a dispute on a mismatch; for a
        spot-check that matched, the group's spot-check record once its last block is
        in ("" until then); otherwise a check record (also for a spot-check block that
        comes back after its group ended). Returns the CID published."""
        services = self._services
        leaf = evidence.leaf()
        if task.purpose == "spot-check":
            group = self._group
            if group is not None and group.work_cid == task.work_cid and task.block in group.blocks:
                group.done.add(task.block)
                if leaf == task.claimed_leaf:
                    group.matched.add(task.block)
                    return self._publish_group() if group.done == group.blocks else ""
                if group.done == group.blocks:
                    self._publish_group()
        now = services.now()
        if task.purpose == "confirm" or leaf == task.claimed_leaf:
            # A check says whether the work's leaf (proven against its root) stands. For
            # a dispute we were asked to confirm, match=False with our leaf equal to the
            # dispute's confirms it.
            record: CheckRecord | DisputeRecord = CheckRecord(
                work_cid=task.work_cid,
                block=task.block,
                leaf=leaf,
                match=leaf == task.claimed_leaf,
                node=services.node_pub,
                account=services.account_pub,
                created=now,
            )
        else:
            record = DisputeRecord(
                work_cid=task.work_cid,
                block=task.block,
                recomputed_leaf=leaf,
                claimed_leaf=task.claimed_leaf,
                proof=task.proof,
                node=services.node_pub,
                account=services.account_pub,
                created=now,
            )
        cid = self._add_own(services.sign(record))
        services.event("published", f"{record.KIND} on block {task.block} of {task.work_cid}", cid)
        return cid

    def _publish_group(self) -> str:
        """Publish the current group's spot-check record (the blocks that matched, if
        any) and end the group; the record's CID, or "" when nothing matched.

        Raises:
            LedgerError, OSError: the record could not be stored; the group stays, so
                the caller's retry of the same block publishes it.
        """
        group = self._group
        cid = ""
        if group is not None and group.matched:
            services = self._services
            record = SpotCheckRecord(
                work_cid=group.work_cid,
                blocks=tuple(sorted(group.matched)),
                node=services.node_pub,
                account=services.account_pub,
                created=services.now(),
            )
            cid = self._add_own(services.sign(record))
            services.event(
                "published", f"spotcheck of {len(record.blocks)} blocks of {group.work_cid}", cid
            )
        self._group = None
        return cid

    def _end_abandoned_group(self) -> None:
        """A new group starts while blocks of the last were handed out and never came
        back (the compute loop dropped them): publish what matched, or drop it when
        that cannot be stored now (spot-checks are chosen again, never owed)."""
        try:
            self._publish_group()
        except (LedgerError, OSError) as exc:
            self._services.event("warning", f"a spot-check record was not stored: {exc}")
            self._group = None


def draw_blocks(seed: bytes, n: int, k: int) -> list[int]:
    """`k` distinct blocks out of `n` (k <= n), in the order `seed` draws them."""
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} distinct blocks of {n}")
    chosen: dict[int, None] = {}
    counter = 0
    while len(chosen) < k:
        h = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        chosen.setdefault(int.from_bytes(h[:8], "big") % n, None)
        counter += 1
    return list(chosen)
