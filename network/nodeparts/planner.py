"""The unit planner: which unit the compute loop gets next, claims, and our results.

`next_assignment` resumes our own checkpoint first, then (under the trust protocol)
a unit the draw asks us to check, then the lowest unit `network.state.next_unit`
gives, and claims it on the network. `take_unit` is what the compute loop asks
(PROTOCOL §8, "Choosing work"): the same order, but a new unit is taken only after
listening to the network for a while (`LISTEN_S`), is chosen among the lowest few
open ones, and is computed only if, a settle time (`CLAIM_SETTLE_S`) after our claim,
no conflicting claim outranks ours (`network.state.claim_wins`); until then it says
`Hold`. While the node catches up, it is given a floor (the highest frontier its
peers' heads report): no new unit below it is taken (PROTOCOL §8, "Catching up").
When the connected peers change, our live claim is sent again (`note_peers`), so a
joining node learns it. A checkpoint of a unit the network
verified without us is deleted. `submit_unit` turns a finished unit into a
signed work record (under the trust protocol a commit, the record sealed in a file
until its reveal, trustduty.py) with its evidence served and kept.

Runs on the compute loop, and makes no blocking IPFS call: reads come from the
store, a claim is a pubsub publish and evidence an IPFS `add` (both local).

Lock discipline: `_lock` serialises choosing a unit (two compute workers must not
pick the same one); it is held across ledger reads and checkpoint file renames,
never across a ledger write or an IPFS call (the claim is made after it is released).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import Assignment, UnitResult, checkpoint_unit, unit_checkpoint_path
from engine.checkpoint import checkpoint_blocks_done
from engine.files import write_atomic
from network import codec, wire
from network import trust as T
from network.ipfs import cid_for_bytes
from network.ledger import ClaimRow, LedgerError
from network.nodeparts.publisher import Publisher
from network.nodeparts.services import Services
from network.nodeparts.store import RecordStore
from network.nodeparts.sync import claim_id
from network.nodeparts.trustduty import reveal_path
from network.records import MAX_CANDIDATES, CommitRecord, WorkRecord, candidate_list_bytes
from network.state import (
    NetworkState,
    claim_in_force,
    claim_rank,
    claim_wins,
    next_unit,
    open_units,
)
from network.trust import TrustPolicy

# After claiming a fresh unit, wait this long before computing it, then compute it only
# if no conflicting claim outranks ours (PROTOCOL §8, "Conflicting claims"). About one
# gossip round trip: a claim reaches loopback peers in 0.1-2 s (bench/swarm.py), so
# the claims of nodes that chose the same unit at the same moment arrive within it.
# A production unit takes minutes, so this costs under 1 % of a unit. The least wait:
# while gossip is slower the node waits longer (settle_for: DeliveryLag, at most 10 s).
CLAIM_SETTLE_S = 2.0
# A node that starts takes no new unit (it may resume its checkpoint) until it has had
# peers this long: they send their live claims again when they see it (`note_peers`),
# within a peer check (1 s) and a gossip delivery. Bounded by the sync timeout, so a
# node whose peers never answer still works.
LISTEN_S = 3.0
# An idle node chooses among the lowest few open units, so idle nodes spread instead
# of all claiming one unit: one per node it knows of (itself, its connected peers up
# to SPREAD_UNITS, every node whose head it heard lately), at most SPREAD_UNITS_MAX
# (made-up head senders widen the spread that far, never further).
SPREAD_UNITS = 8
SPREAD_UNITS_MAX = 64


def spread_units(peers: int, heard: int) -> int:
    """How many of the lowest open units an idle node chooses among, knowing `peers`
    connected peers and `heard` nodes whose heads came lately (PROTOCOL §8,
    "Choosing work", step 3).

    Every unit but the frontier takes one account at a time, so as many units as
    nodes keep idle nodes apart. Counting connected peers alone kept a sparse swarm
    on 2-4 units (a node given 1-3 peers): at 50 nodes on two cores six or more
    nodes claimed each unit while claims took longer than the settle time to cross
    (bench/swarm.py: 1,433 work records for the 200 needed; 867-994 after).
    """
    return max(1, min(SPREAD_UNITS_MAX, max(min(SPREAD_UNITS, 1 + peers), 1 + heard)))


# A peer that just connected may not have subscribed to our gossip yet: our live claim
# is sent again this long after the first time.
REPUBLISH_AGAIN_S = 2.0


@dataclass(frozen=True, slots=True)
class Hold:
    """No unit to compute yet, but one soon: listening, or settling a fresh claim.

    Attributes:
        reason: a short phrase for a status line.
        retry_s: when to ask again.
    """

    reason: str
    retry_s: float


@dataclass(frozen=True, slots=True)
class _Taken:
    """A unit another account already committed on, given to next_unit as a claim."""

    unit: int
    node: bytes
    account: bytes
    expires_at: float


class Planner:
    """Chooses, claims and reports units.

    Args:
        services: identity, ledger, clock and events.
        store: the records held and the derived state.
        publisher: stores and announces our records, claims and evidence.
        data_dir: the profile's data folder (checkpoints and reveals live under it).
        trust: the verification protocol's policy (None: two-account quorum).
        claim_ttl_s: how long a claim holds.
        unit_limit: units at or above this index are never handed out.
        trust_stall_s: how long a reporter holds a round without a pair.
        on_submitted: called once per unit reported (the spot-check budget grows).
        settle_s: `take_unit`'s wait between claiming a fresh unit and computing it.
        settle_for: the wait for a base `settle_s` now (DeliveryLag.settle_s: longer
            while gossip is slow); None: `settle_s` as it is.
        listen_s: how long a new node has had peers before `take_unit` gives a new unit.
        listen_max_s: after this long since `started()`, listening ends regardless.
        alone: no peers are configured (nothing to listen or settle for).

    Attributes:
        roles: unit -> the reporter we compute it to check (read by trustduty.py).
    """

    def __init__(
        self,
        services: Services,
        store: RecordStore,
        publisher: Publisher,
        *,
        data_dir: Path,
        trust: TrustPolicy | None,
        claim_ttl_s: int,
        unit_limit: int | None,
        trust_stall_s: float,
        on_submitted: Callable[[], None],
        settle_s: float = CLAIM_SETTLE_S,
        settle_for: Callable[[float], float] | None = None,
        listen_s: float = LISTEN_S,
        listen_max_s: float = 20.0,
        alone: bool = False,
    ) -> None:
        self._services = services
        self._store = store
        self._publisher = publisher
        self._data_dir = data_dir
        self._trust = trust
        self._claim_ttl_s = claim_ttl_s
        self._unit_limit = unit_limit
        self._trust_stall_s = trust_stall_s
        self._on_submitted = on_submitted
        self._lock = threading.Lock()
        self.roles: dict[int, bytes] = {}
        self._seeded_at: dict[int, float] = {}  # unit -> when we first saw its draw
        self._settle_s = settle_s
        self._settle_for = settle_for or (lambda base: base)
        self._listen_s = listen_s
        self._listen_max_s = listen_max_s
        self._alone = alone
        # Guarded by _lock: when we started and our claim waiting out its settle time
        # (unit, until).
        self._started_at: float | None = None
        self._settling: tuple[int, float] | None = None
        # Guarded by _peers_lock, which the network loop's peer watch (note_peers) takes
        # alone: it waited on _lock while the compute loop chose a unit. Taken inside
        # _lock (never the other way round). The peers we last saw, how many nodes'
        # heads we heard, since when we have had peers, and when to send our live
        # claim again.
        self._peers_lock = threading.Lock()
        self._peers: frozenset[str] = frozenset()
        self._heard = 0  # nodes whose heads came lately (spread_units)
        self._peers_since: float | None = None
        self._republish_at: float | None = None

    @property
    def _checkpoints(self) -> Path:
        return self._data_dir / "checkpoints"

    def checkpoint_path(self, unit: int) -> Path:
        return unit_checkpoint_path(self._checkpoints, self._services.params, unit)

    def _reveal_path(self, unit: int) -> Path:
        return reveal_path(self._data_dir, self._services.params.name, unit)

    # --- choosing a unit -------------------------------------------------------------

    def next_assignment(self) -> Assignment | None:
        """Claim and return the next unit to compute (resuming our own checkpoint first)."""
        services = self._services
        with self._lock:
            st = self._store.state()
            now = services.clock()
            claims = services.ledger.active_claims(now)
            unit = self._resume_or_duty(st, claims, now)
            if unit is None:
                unit = next_unit(
                    st,
                    [*claims, *self._committed_units(st)],
                    services.account_pub,
                    now,
                    my_node=services.node_pub,
                    unit_limit=self._unit_limit,
                )
            if unit is None:
                return None
        self.claim(unit)
        return Assignment.of_unit(services.params, unit, self._checkpoints)

    def take_unit(self, *, floor: int | None = None) -> Assignment | Hold | None:
        """The compute loop's next unit (PROTOCOL §8, "Choosing work"), claimed: our own
        checkpoint (or checker duty) at once; a new unit only after listening, chosen
        among the lowest open ones, and handed out only once its claim has settled
        and still wins (`claim_wins`). Hold while listening or settling; None when no
        unit is open to us. With a `floor` (a node catching up: the highest frontier
        its peers report, "Catching up"), no new unit below it: the network verified
        those, as far as we know; our own checkpoint is resumed all the same."""
        services = self._services
        with self._lock:
            st = self._store.state()
            now = services.clock()
            claims = services.ledger.active_claims(now)
            unit = self._resume_or_duty(st, claims, now, floor)
            if unit is not None:
                self._settling = None
                settle = False
            else:
                unit = self._choose(st, claims, now, floor)
                if not isinstance(unit, int):
                    return unit  # a Hold, the settled unit, or None
                with self._peers_lock:
                    settle_s = self._settle_for(self._settle_s) if self._peers else 0.0
                settle = settle_s > 0
                if settle:
                    self._settling = (unit, now + settle_s)
        # The claim after the lock: a ledger write and a (local) publish.
        self.claim(unit)
        if settle:
            return Hold(f"claimed unit {unit}; checking for other claims", settle_s)
        return Assignment.of_unit(services.params, unit, self._checkpoints)

    def _resume_or_duty(
        self, st: NetworkState, claims: list[ClaimRow], now: float, floor: int | None = None
    ) -> int | None:
        """(Under _lock.) What comes before any new unit: our own checkpoint that still
        needs us, else (trust protocol) the unit the draw asks us to check."""
        unit = self._resumable_unit(st, claims, now)
        if unit is None and self._trust is not None:
            unit = self._checker_duty(st, floor=floor)
        return unit

    def _choose(
        self, st: NetworkState, claims: list[ClaimRow], now: float, floor: int | None = None
    ) -> int | Assignment | Hold | None:
        """(Under _lock.) A claim settling: Hold, or once settled, its Assignment if it
        won. Else Hold while listening, None with no unit open, or the unit to claim:
        of the lowest few open at or above `floor`, the one where our claim would rank
        best (idle nodes spread over them, each where it would win a tie anyway)."""
        services = self._services
        taken = [*claims, *self._committed_units(st)]
        if self._settling is not None:
            unit, until = self._settling
            if now < until:
                return Hold(f"claimed unit {unit}; checking for other claims", until - now)
            self._settling = None
            if floor is not None and unit < floor:
                services.event("claim dropped", f"unit {unit}: peers report it verified")
            elif self._still_ours(st, taken, unit, now):
                return Assignment.of_unit(services.params, unit, self._checkpoints)
            else:
                services.event("claim lost", f"unit {unit}: a better-ranked claim holds it")
        listening = self._listening(now)
        if listening is not None:
            return listening
        with self._peers_lock:
            spread = spread_units(len(self._peers), self._heard)
        units = open_units(
            st,
            taken,
            services.account_pub,
            now,
            my_node=services.node_pub,
            unit_limit=self._unit_limit,
            count=spread,
            first_report_at=self._first_report_at(st, st.frontier),
            floor=floor,
        )
        if not units:
            return None
        return min(units, key=lambda u: claim_rank(u, services.node_pub))

    def _still_ours(self, st: NetworkState, claims: list[Any], unit: int, now: float) -> bool:
        """After the settle time: `unit` still needs us and our claim wins it."""
        services = self._services
        entry = st.units.get(unit)
        if st.status_of(unit) == "verified" or (
            entry is not None and services.account_pub in entry.reporters()
        ):
            return False
        if any(isinstance(c, _Taken) and c.unit == unit for c in claims):
            return False  # (trust protocol) a commit arrived: its checker takes it
        return claim_wins(
            st,
            claims,
            unit,
            services.account_pub,
            services.node_pub,
            now,
            first_report_at=self._first_report_at(st, unit),
        )

    def _first_report_at(self, st: NetworkState, unit: int) -> float | None:
        """When `unit`'s earliest counted report was made (its `created`), or None."""
        entry = st.units.get(unit)
        if entry is None or not entry.roots:
            return None
        works = (self._store.work(cid) for r in entry.roots for cid in r.work_cids)
        times = [w.created for w in works if w is not None]
        return float(min(times)) if times else None

    def _listening(self, now: float) -> Hold | None:
        """Hold while a node that started recently has not had peers for listen_s
        (their live claims reach us then), for at most listen_max_s after start."""
        if self._alone or self._listen_s <= 0:
            return None
        started = self._started_at if self._started_at is not None else now
        if now - started >= self._listen_max_s:
            return None
        with self._peers_lock:
            since = self._peers_since
        if since is not None and now - since >= self._listen_s:
            return None
        return Hold("listening for the network's claims", 0.5)

    def started(self) -> None:
        """The node started: listening for claims begins now."""
        with self._lock:
            self._started_at = self._services.clock()

    def note_peers(self, peers: Iterable[str], *, heard: int = 0) -> bool:
        """The peers we are connected to now, and how many nodes' heads we heard lately
        (`heard`; the network loop calls this about once a second). A new peer gets
        our live claim at once and again REPUBLISH_AGAIN_S later: claims travel only
        when made or renewed, so a joining (or returning) node would otherwise not
        learn them. True when there is a new peer."""
        now = self._services.clock()
        current = frozenset(peers)
        with self._peers_lock:
            self._heard = max(0, heard)
            gained = bool(current - self._peers)
            self._peers = current
            if not current:
                self._peers_since = None
            elif self._peers_since is None:
                self._peers_since = now
            due = self._republish_at is not None and now >= self._republish_at
            if gained:
                self._republish_at = now + REPUBLISH_AGAIN_S
            elif due:
                self._republish_at = None
        if gained or due:
            self.republish_claim()
        return gained

    def republish_claim(self) -> None:
        """Send our claim in force again as it is stored (same expiry and `done`: for
        the peers that have it already it changes nothing, rule 1 of PROTOCOL §8)."""
        services = self._services
        now = services.clock()
        try:
            claims = services.ledger.active_claims(now)
        except LedgerError as exc:
            services.event("warning", f"ledger: {exc}")
            return
        for c in claims:
            if c.node == services.node_pub and claim_in_force(c, now):
                self._publisher.publish_claim(c.unit, c.claim_id, int(c.expires_at), c.done)

    def checker_duty(self) -> Assignment | None:
        """The unit the draw asks this node to check now (claimed), or None; the
        compute loop gets it first from next_assignment."""
        with self._lock:
            unit = self._checker_duty(self._store.state())
        if unit is None:
            return None
        self.claim(unit)
        return Assignment.of_unit(self._services.params, unit, self._checkpoints)

    def claim(self, unit: int) -> None:
        """Publish (or renew) our claim on `unit` for claim_ttl_s (peers cut it to
        MAX_CLAIM_TTL), showing the blocks its checkpoint holds: a renewal extends the
        claim only when that grew (PROTOCOL §8, "Claims")."""
        params = self._services.params
        expires = self._services.now() + min(self._claim_ttl_s, wire.MAX_CLAIM_TTL)
        done = min(checkpoint_blocks_done(self.checkpoint_path(unit)), params.blocks_per_unit)
        self._publisher.publish_claim(unit, claim_id(self._services.node_pub), expires, done)

    def _committed_units(self, st: NetworkState) -> list[_Taken]:
        """Under the trust protocol, units with a live commit already have a reporter
        (their drawn checker takes it from there): shown to next_unit as claimed."""
        if st.trust is None:
            return []
        units = {
            c.unit
            for _cid, c in self._store.by_kind("commit")
            if c.account not in st.trust.slashed and c.unit > st.frontier
        }
        units |= {u for u in range(st.frontier, st.frontier + 1) if self._reveal_path(u).exists()}
        return [_Taken(u, bytes(32), u.to_bytes(32, "big"), float("inf")) for u in sorted(units)]

    def _resumable_unit(
        self, st: NetworkState, claims: Iterable[ClaimRow], now: float
    ) -> int | None:
        """A unit we have a checkpoint of that still needs us, lowest first."""
        services = self._services
        if not self._checkpoints.is_dir():
            return None
        others = {
            c.unit
            for c in claims
            if c.node != services.node_pub
            and claim_in_force(c, now)
            and not (c.unit in st.units and c.account in st.units[c.unit].reporters())
        }
        for path in sorted(self._checkpoints.glob(f"{services.params.name}-unit*.ckpt")):
            unit = checkpoint_unit(path, services.params)
            if unit is None:
                continue
            if path != self.checkpoint_path(unit):
                try:  # an older name for the same unit's checkpoint
                    path.replace(self.checkpoint_path(unit))
                except OSError:
                    continue
            entry = st.units.get(unit)
            mine = entry is not None and services.account_pub in entry.reporters()
            if st.status_of(unit) == "verified" and unit != self._computing():
                # Verified without needing us: nothing will resume it.
                try:
                    path.unlink(missing_ok=True)
                    services.event("checkpoint removed", f"unit {unit} is verified")
                except OSError:
                    pass
                continue
            if self._unit_limit is not None and unit >= self._unit_limit:
                continue
            if st.status_of(unit) != "verified" and not mine and unit not in others:
                return unit
        return None

    def _computing(self) -> int | None:
        """The unit our node's claim in force is on (it may be being computed)."""
        services = self._services
        now = services.clock()
        for c in services.ledger.active_claims(now):
            if c.node == services.node_pub and claim_in_force(c, now):
                return c.unit
        return None

    def _checker_duty(self, st: NetworkState, floor: int | None = None) -> int | None:
        """The lowest unit (at or above `floor`) whose earliest reporter drew us as its
        best checker not yet bound, while that reporter's root is still sealed (T4)."""
        if st.trust is None:
            return None
        me = self._services.account_pub
        k = self._trust.check_rank
        commits: dict[int, list[tuple[int, str, bytes]]] = {}
        for cid, c in self._store.by_kind("commit"):
            if c.account not in st.trust.slashed:
                commits.setdefault(c.unit, []).append((c.created, cid, c.account))
        revealed = {(w.unit, w.account) for _c, w in self._store.by_kind("work")}
        for unit in sorted(commits):
            if floor is not None and unit < floor:
                continue
            tally = st.trust.units.get(unit)
            if tally is None or tally.seed is None or tally.phase in (T.PAIRED, T.VERIFIED):
                continue
            accounts = {a for _t, _c, a in commits[unit]}
            if me in accounts or self._reveal_path(unit).exists():
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
            if todo and todo[0] == me:
                self.roles[unit] = reporter
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
        return order[int((now - since) // self._trust_stall_s) % len(order)]

    # --- reporting a unit ------------------------------------------------------------

    def submit_unit(self, assignment: Assignment, result: UnitResult) -> str:
        """Sign the unit's work record, store it durably, publish it. Returns its CID."""
        services, publisher = self._services, self._publisher
        evidence = b"".join(result.leaves)
        evidence_cid = cid_for_bytes(evidence)
        publisher.add_evidence(evidence_cid, evidence, "evidence")
        candidates_cid = None
        if len(result.candidates) > MAX_CANDIDATES:
            # More candidates than a record lists: the full list is its own object,
            # kept and served like the evidence, so no report is ever lost.
            listing = candidate_list_bytes(result.candidates)
            candidates_cid = cid_for_bytes(listing)
            publisher.add_evidence(candidates_cid, listing, "candidate list")
        nonce = os.urandom(32)
        record = WorkRecord.from_unit_result(
            result,
            services.params,
            assignment.unit,
            services.node_pub,
            services.account_pub,
            services.now(),
            evidence_cid=evidence_cid,
            candidates_cid=candidates_cid,
            nonce=nonce,
        )
        if self._trust is not None:
            # Commit-reveal (PROTOCOL §11, T1): the root is bound now, revealed once the
            # partner is bound too (TrustDuty.tick).
            commit = CommitRecord(
                unit=assignment.unit,
                commitment=T.commitment(assignment.unit, record.root, services.node_pub, nonce),
                node=services.node_pub,
                account=services.account_pub,
                created=services.now(),
            )
            write_atomic(self._reveal_path(assignment.unit), codec.encode(services.sign(record)))
            cid = publisher.add_own(services.sign(commit))
            self._on_submitted()
            services.event("committed", f"unit {assignment.unit}", cid)
            return cid
        if record.has_candidates:
            services.event(
                "candidate", f"unit {assignment.unit}: {record.candidate_count} candidate(s)"
            )
        cid = publisher.add_own(services.sign(record))
        self._on_submitted()
        services.event("published", f"unit {assignment.unit}", cid)
        return cid
