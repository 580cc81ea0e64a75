"""The verification protocol: when a unit counts as verified (docs/PROTOCOL.md §11).

A pure function of a set of valid records, like network/state.py: no clock, no I/O, no
dependence on input order. One small function per rule, each with its argument in
PROTOCOL §11; `evaluate` runs them in order and returns a typed tally per unit.

Rules:
  T1 commit-reveal: a work record (the reveal) counts only if a commit record of the
     same unit, node and account carries commitment(unit, root, node, nonce).
  T2 beacon: a unit's draw seed is the value of the lowest beacon round that lists a
     commit on the unit; a unit no round has seen cannot be verified yet.
  T3 weight: genesis accounts start with weight; others earn it one unit at a time by
     verified units (as first reporter or checker); slashed and penalised accounts
     weigh nothing. Only accounts with weight can check or audit.
  T4 pairing: the verified root needs a first reporter and a checker drawn by the seed
     (among the `check_rank` best-ranked weighted accounts other than the reporter),
     whose reveals each list the other's commit (both roots were fixed before either
     was revealed), and no weighted account may have revealed another root.
  T5 audits: `audits` matching checks of the drawn block by drawn third accounts.
  T6 withheld evidence: `unavailable_limit` weighted third accounts that could not fetch
     the evidence, and fewer matching audits than that, keep the unit open.
  T7 disputes, slash and backtrack: a confirmed dispute proves a root wrong; every
     account that revealed that root is slashed (weight 0, all its reveals ignored), so
     every unit it helped verify is evaluated again without it. A refuted dispute costs
     its accuser (and any account whose check confirmed it) all weight.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.evidence import encode_uint

COMMIT_DOMAIN = b"hailstone/commit/v1\x00"
DRAW_DOMAIN = b"hailstone/draw/v1\x00"

# Unit phases, in the order a unit moves through them (PROTOCOL §11, "Unit phases").
OPEN = "open"
COMMITTED = "committed"
REVEALED = "revealed"
PAIRED = "paired"  # a drawn checker agrees; audits still missing
VERIFIED = "verified"
CONFLICTING = "conflicting"  # weighted accounts revealed different roots
WITHHELD = "withheld"  # evidence reported unavailable by weighted third accounts
CANDIDATE = "candidate"
PHASES = (OPEN, COMMITTED, REVEALED, PAIRED, VERIFIED, CONFLICTING, WITHHELD, CANDIDATE)


def commitment(unit: int, root: bytes, node: bytes, nonce: bytes) -> bytes:
    """H(unit, root, node key, nonce): what a commit record binds before the reveal."""
    return hashlib.sha256(COMMIT_DOMAIN + encode_uint(unit) + root + node + nonce).digest()


def draw_seed(beacon_value: bytes, unit: int) -> bytes:
    """The unit's draw seed from the beacon round that first saw a commit on it."""
    return hashlib.sha256(DRAW_DOMAIN + beacon_value + encode_uint(unit)).digest()


def _score(seed: bytes, role: bytes, account: bytes, weight: int) -> tuple[int, bytes]:
    # Weighted draw: a uniform 64-bit ticket divided by the weight, lowest first, so an
    # account's chance to rank first grows with its weight (ties by key).
    ticket = int.from_bytes(hashlib.sha256(seed + role + account).digest()[:8], "big")
    return ticket // weight, account


def ranking(
    seed: bytes, role: bytes, weights: Mapping[bytes, int], exclude: Iterable[bytes] = ()
) -> list[bytes]:
    """Weighted accounts in draw order for `role` (b"check" or b"audit")."""
    skip = set(exclude)
    eligible = [a for a, w in weights.items() if w > 0 and a not in skip]
    return sorted(eligible, key=lambda a: _score(seed, role, a, weights[a]))


def audit_block(seed: bytes, auditor: bytes, blocks: int) -> int:
    """The block `auditor` must recompute for a unit with this seed (not its choice)."""
    digest = hashlib.sha256(seed + b"block" + auditor).digest()
    return int.from_bytes(digest[:8], "big") % blocks


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """The configurable root of trust and the protocol's counts (PROTOCOL §11).

    Attributes:
        genesis: accounts that carry weight from the start (the root of trust).
        beacons: accounts whose nodes publish beacon rounds.
        genesis_weight: a genesis account's starting weight.
        weight_cap: the most weight an account can earn (a sleeper's reach is bounded).
        check_rank: the checker must rank within this many weighted accounts.
        audit_rank: an audit counts only from this many best-ranked auditors.
        audits: matching audits needed to verify.
        unavailable_limit: weighted third accounts reporting the evidence unavailable
            that keep a unit open (withholding is a fault, not a silent retry).
        weight_lag: unit u's draw uses weight earned below u - weight_lag, and opens once
            the frontier reaches u - weight_lag, so a draw never changes afterwards
            (short of a slash, which re-judges everything above it).
    """

    genesis: frozenset[bytes] = frozenset()
    beacons: frozenset[bytes] = frozenset()
    genesis_weight: int = 8
    weight_cap: int = 32
    check_rank: int = 3
    audit_rank: int = 4
    audits: int = 1
    unavailable_limit: int = 2
    weight_lag: int = 64

    def __post_init__(self) -> None:
        if min(self.genesis_weight, self.check_rank, self.audit_rank, self.unavailable_limit) < 1:
            raise ValueError("weights and ranks must be at least 1")
        if self.weight_lag < 0:
            raise ValueError("weight_lag must be non-negative")
        if self.audits < 0 or self.weight_cap < 0:
            raise ValueError("audits and weight_cap must be non-negative")


@dataclass(frozen=True, slots=True)
class Reveal:
    """A counted reveal: a work record whose commit is in the record set."""

    cid: str
    commit_cid: str
    work: Any


@dataclass(frozen=True, slots=True)
class UnitTally:
    """How far one unit got under the protocol.

    Attributes:
        unit: the unit index.
        phase: one of PHASES.
        commits: counted commits on the unit.
        reveals: counted reveals (slashed accounts' excluded).
        seed: the draw seed, once a beacon round saw a commit on the unit.
        root: the verified (or paired) root.
        reporter, checker: the pair that verified it.
        audits: CIDs of the matching audits counted.
        unavailable: weighted third accounts that could not fetch the evidence.
        reopened: a slashed account had revealed on this unit (backtracked).
    """

    unit: int
    phase: str
    commits: int = 0
    reveals: int = 0
    seed: bytes | None = None
    root: bytes | None = None
    reporter: bytes | None = None
    checker: bytes | None = None
    audits: tuple[str, ...] = ()
    unavailable: int = 0
    reopened: bool = False


@dataclass(frozen=True)
class TrustState:
    """The protocol's verdicts: per-unit tallies, weights, slashed accounts."""

    units: Mapping[int, UnitTally]
    weights: Mapping[bytes, int]
    slashed: frozenset[bytes]
    penalised: frozenset[bytes]
    frauds: frozenset[str] = field(default_factory=frozenset)  # confirmed dispute CIDs
    false_accusations: frozenset[str] = field(default_factory=frozenset)
    unit_weights: Mapping[int, Mapping[bytes, int]] = field(default_factory=dict)

    def verified(self) -> frozenset[int]:
        return frozenset(u for u, t in self.units.items() if t.phase == VERIFIED)

    def ranking(self, unit: int, role: bytes, exclude: Iterable[bytes] = ()) -> list[bytes]:
        """The draw for `unit` as the rules use it (the weights in force at that unit):
        who must check (role b"check") or audit (b"audit"). Empty before its beacon."""
        tally = self.units.get(unit)
        if tally is None or tally.seed is None:
            return []
        return ranking(tally.seed, role, self.unit_weights.get(unit, {}), exclude)


# --- T1 commit-reveal ----------------------------------------------------------------


def counted_reveals(works: Mapping[str, Any], commits: Mapping[str, Any]) -> dict[str, Reveal]:
    """T1: work records whose commitment is in a commit record of the same node/account."""
    by_binding: dict[tuple[int, bytes, bytes, bytes], str] = {}
    for cid, c in sorted(commits.items()):
        by_binding.setdefault((c.unit, c.node, c.account, c.commitment), cid)
    out: dict[str, Reveal] = {}
    for cid, w in sorted(works.items()):
        key = (w.unit, w.node, w.account, commitment(w.unit, w.root, w.node, w.nonce))
        commit_cid = by_binding.get(key)
        if commit_cid is not None:
            out[cid] = Reveal(cid=cid, commit_cid=commit_cid, work=w)
    return out


# --- T2 beacon -----------------------------------------------------------------------


def first_rounds(beacons: Mapping[str, Any]) -> dict[str, tuple[int, str, bytes]]:
    """T2: for every listed CID, the (round, beacon CID, value) that first listed it."""
    first_round: dict[str, tuple[int, str, bytes]] = {}
    for bcid, b in beacons.items():
        for cid in b.listed:
            stamp = (b.round, bcid, b.value)
            if cid not in first_round or stamp < first_round[cid]:
                first_round[cid] = stamp
    return first_round


def unit_seeds(
    commits: Mapping[str, Any], first_round: Mapping[str, tuple[int, str, bytes]]
) -> dict[int, bytes]:
    """T2: each unit's seed from the lowest beacon round listing a commit on it."""
    per_unit: dict[int, tuple[int, str, bytes]] = {}
    for ccid, c in commits.items():
        stamp = first_round.get(ccid)
        if stamp is not None and (c.unit not in per_unit or stamp < per_unit[c.unit]):
            per_unit[c.unit] = stamp
    return {unit: draw_seed(value, unit) for unit, (_r, _cid, value) in per_unit.items()}


# --- T7 disputes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DisputeVerdicts:
    """Which disputes proved fraud, which were false, and whom that costs."""

    confirmed: frozenset[str]
    refuted: frozenset[str]
    bad_roots: frozenset[tuple[int, bytes]]
    slashed: frozenset[bytes]
    penalised: frozenset[bytes]


def judge_disputes(
    disputes: Mapping[str, Any],
    checks: Mapping[str, Any],
    works: Mapping[str, Any],
    reveals: Mapping[str, Reveal],
    confirmed_local: frozenset[str],
    refuted_local: frozenset[str],
) -> DisputeVerdicts:
    """T7: a dispute is confirmed by this node's own recomputation (confirmed_local) or
    by an independent check with the same leaf; refuted by this node's recomputation
    (refuted_local, which wins) or by an independent matching check and no confirming
    one. The disputes given are already proven (Merkle path against the work's root)."""
    refuting: dict[tuple[str, int, bytes], set[bytes]] = {}
    matching: dict[tuple[str, int], set[bytes]] = {}
    refute_checks: dict[tuple[str, int, bytes], set[bytes]] = {}
    for c in checks.values():
        if c.unavailable:
            continue
        if c.match:
            matching.setdefault((c.work_cid, c.block), set()).add(c.account)
        else:
            refuting.setdefault((c.work_cid, c.block, c.leaf), set()).add(c.account)
            refute_checks.setdefault((c.work_cid, c.block, c.leaf), set()).add(c.account)
    confirmed: set[str] = set()
    refuted: set[str] = set()
    penalised: set[bytes] = set()
    for cid, d in sorted(disputes.items()):
        target = works[d.work_cid]
        others = {target.account, d.account}
        agree = refuting.get((d.work_cid, d.block, d.recomputed_leaf), set()) - others
        deny = matching.get((d.work_cid, d.block), set()) - others
        if cid in refuted_local or (cid not in confirmed_local and deny and not agree):
            refuted.add(cid)
            penalised.add(d.account)
            penalised.update(refute_checks.get((d.work_cid, d.block, d.recomputed_leaf), ()))
        elif cid in confirmed_local or agree:
            confirmed.add(cid)
    bad_roots = frozenset(
        (works[disputes[c].work_cid].unit, works[disputes[c].work_cid].root) for c in confirmed
    )
    slashed = frozenset(
        r.work.account for r in reveals.values() if (r.work.unit, r.work.root) in bad_roots
    ) | frozenset(works[disputes[c].work_cid].account for c in confirmed)
    return DisputeVerdicts(
        confirmed=frozenset(confirmed),
        refuted=frozenset(refuted),
        bad_roots=bad_roots,
        slashed=slashed,
        penalised=frozenset(penalised) - slashed,
    )


# --- T3 weight, T4 pairing, T5 audits, T6 withheld -----------------------------------


def _linked(a: list[Reveal], b: list[Reveal], *, any_reveal: bool = False) -> bool:
    """T4: both roots were fixed before either was revealed: every reveal of each side
    lists a commit of the other side (a later re-reveal cannot repair an early one).
    For a pair of drawn accounts one reveal each suffices (see find_pair)."""
    a_commits = {r.commit_cid for r in a}
    b_commits = {r.commit_cid for r in b}
    merge = set.union if any_reveal else set.intersection
    a_seen = merge(*(set(r.work.seen_commits) for r in a))
    b_seen = merge(*(set(r.work.seen_commits) for r in b))
    return bool(a_seen & b_commits) and bool(b_seen & a_commits)


def _not_a_copy(
    mine: list[Reveal],
    pair: tuple[bytes, bytes],
    by_account: Mapping[bytes, list[Reveal]],
    first_round: Mapping[str, tuple[int, str, bytes]],
) -> bool:
    """T4: no round before the one that first listed the account's commit listed another
    account's reveal of the same root (else it may have copied that root). Within one
    round the order is unknown; the beacon period bounds that window."""
    commit_round = min(
        (first_round[r.commit_cid][0] for r in mine if r.commit_cid in first_round),
        default=None,
    )
    if commit_round is None:
        return False
    root = mine[0].work.root
    for account, theirs in by_account.items():
        if account in pair:
            continue
        for r in theirs:
            if r.work.root == root and r.cid in first_round:
                if first_round[r.cid][0] < commit_round:
                    return False
    return True


def find_pair(
    seed: bytes,
    by_account: Mapping[bytes, list[Reveal]],
    weights: Mapping[bytes, int],
    k: int,
    first_round: Mapping[str, tuple[int, str, bytes]],
) -> tuple[bytes, bytes, bytes] | None:
    """T4: (root, reporter, checker) with the best-ranked drawn checker, or None."""
    best: tuple[int, bytes, bytes, bytes] | None = None
    core = set(ranking(seed, b"check", weights)[: k + 1])
    for reporter, mine in sorted(by_account.items()):
        root = mine[0].work.root
        order = ranking(seed, b"check", weights, exclude=(reporter,))[:k]
        for rank, checker in enumerate(order):
            theirs = by_account.get(checker)
            if not theirs or theirs[0].work.root != root:
                continue
            pair = (reporter, checker)
            both_drawn = reporter in core and checker in core
            if not _linked(mine, theirs, any_reveal=both_drawn):
                continue
            # A pair of drawn accounts may confirm a root that is already public (a
            # unit re-opened after its first reporter was slashed could never be
            # verified otherwise); anyone else committing after it was public may
            # have copied it.
            if not both_drawn and not (
                _not_a_copy(mine, pair, by_account, first_round)
                and _not_a_copy(theirs, pair, by_account, first_round)
            ):
                continue
            cand = (rank, checker, reporter, root)
            if best is None or cand < best:
                best = cand
            break
    if best is None:
        return None
    return best[3], best[2], best[1]


def count_audits(
    seed: bytes,
    work_cids: set[str],
    checks_by_work: Mapping[str, list[tuple[str, Any]]],
    weights: Mapping[bytes, int],
    pair: tuple[bytes, bytes],
    policy: TrustPolicy,
    blocks: int,
) -> tuple[tuple[str, ...], int]:
    """T5 and T6: matching audits of the drawn block by drawn auditors, and how many
    weighted third accounts report the evidence unavailable."""
    auditors = set(ranking(seed, b"audit", weights, exclude=pair)[: policy.audit_rank])
    good: dict[bytes, str] = {}
    unavailable: set[bytes] = set()
    for wcid in sorted(work_cids):
        for ccid, c in checks_by_work.get(wcid, ()):
            if c.account in pair or weights.get(c.account, 0) <= 0:
                continue
            if c.unavailable:
                unavailable.add(c.account)
            elif (
                c.match
                and c.account in auditors
                and c.block == audit_block(seed, c.account, blocks)
            ):
                good.setdefault(c.account, ccid)
    return tuple(sorted(good.values())), len(unavailable - set(good))


def evaluate(
    *,
    works: Mapping[str, Any],
    commits: Mapping[str, Any],
    beacons: Mapping[str, Any],
    checks: Mapping[str, Any],
    disputes: Mapping[str, Any],
    policy: TrustPolicy,
    blocks: int,
    confirmed_local: Iterable[str] = (),
    refuted_local: Iterable[str] = (),
) -> TrustState:
    """Run T1..T7 over counted records (authority and params already checked).

    Args:
        works, commits, beacons, checks, disputes: counted records by CID; beacons only
            from policy.beacons accounts; disputes only proven ones about known work.
        policy: the root of trust and the counts.
        blocks: blocks per unit.
        confirmed_local, refuted_local: disputes this node settled by recomputing.
    """
    reveals = counted_reveals(works, commits)
    rounds = first_rounds({c: b for c, b in beacons.items() if b.account in policy.beacons})
    seeds = unit_seeds(commits, rounds)
    verdicts = judge_disputes(
        disputes, checks, works, reveals, frozenset(confirmed_local), frozenset(refuted_local)
    )
    excluded = verdicts.slashed | verdicts.penalised
    checks_by_work: dict[str, list[tuple[str, Any]]] = {}
    for ccid, c in sorted(checks.items()):
        checks_by_work.setdefault(c.work_cid, []).append((ccid, c))
    commits_per_unit: dict[int, int] = {}
    for c in commits.values():
        commits_per_unit[c.unit] = commits_per_unit.get(c.unit, 0) + 1
    per_unit: dict[int, dict[bytes, list[Reveal]]] = {}
    reopened: set[int] = set()
    for r in sorted(reveals.values(), key=lambda r: (r.work.created, r.cid)):
        if r.work.account in verdicts.slashed:
            reopened.add(r.work.unit)  # backtracking: this unit is judged without it
            continue
        per_unit.setdefault(r.work.unit, {}).setdefault(r.work.account, []).append(r)
    for by_account in per_unit.values():
        for account in [a for a, v in by_account.items() if len({r.work.root for r in v}) > 1]:
            # Two roots for one unit from one account: neither can be its honest result.
            del by_account[account]

    earned: dict[bytes, int] = {}

    def weights() -> dict[bytes, int]:
        out = {}
        for a in set(policy.genesis) | set(earned):
            if a in excluded:
                continue
            base = policy.genesis_weight if a in policy.genesis else 0
            out[a] = base + min(policy.weight_cap, earned.get(a, 0))
        return out

    units: dict[int, UnitTally] = {}
    unit_weights: dict[int, dict[bytes, int]] = {}
    credits: list[tuple[int, tuple[bytes, bytes]]] = []  # (verified unit, its pair), in order
    applied = 0
    frontier = 0
    # T3: the weights of unit u's draw come from the verified units below u - weight_lag,
    # and u is drawn only once all of those are verified (the frontier passed them), so
    # a draw never moves when units verify out of order. One pass in unit order.
    for unit in sorted(set(commits_per_unit) | set(per_unit) | reopened):
        while applied < len(credits) and credits[applied][0] < unit - policy.weight_lag:
            for a in credits[applied][1]:
                earned[a] = earned.get(a, 0) + 1
            applied += 1
        w = weights()
        unit_weights[unit] = w
        drawn = frontier >= unit - policy.weight_lag
        by_account = per_unit.get(unit, {})
        tally = _judge_unit(
            unit,
            by_account,
            seeds.get(unit) if drawn else None,
            w,
            checks_by_work,
            policy,
            blocks,
            rounds,
        )
        tally = dataclasses.replace(
            tally, commits=commits_per_unit.get(unit, 0), reopened=unit in reopened
        )
        units[unit] = tally
        if tally.phase == VERIFIED:
            credits.append((unit, (tally.reporter, tally.checker)))
            if unit == frontier:
                frontier += 1
    for _unit, pair in credits[applied:]:
        for a in pair:
            earned[a] = earned.get(a, 0) + 1
    return TrustState(
        units=units,
        weights=weights(),
        slashed=verdicts.slashed,
        penalised=verdicts.penalised,
        frauds=verdicts.confirmed,
        false_accusations=verdicts.refuted,
        unit_weights=unit_weights,
    )


def _judge_unit(
    unit: int,
    by_account: Mapping[bytes, list[Reveal]],
    seed: bytes | None,
    weights: Mapping[bytes, int],
    checks_by_work: Mapping[str, list[tuple[str, Any]]],
    policy: TrustPolicy,
    blocks: int,
    rounds: Mapping[str, tuple[int, str, bytes]],
) -> UnitTally:
    n = sum(len(v) for v in by_account.values())
    if any(r.work.has_candidates for v in by_account.values() for r in v):
        return UnitTally(unit=unit, phase=CANDIDATE, reveals=n, seed=seed)
    if not by_account:
        return UnitTally(unit=unit, phase=COMMITTED, seed=seed)
    if seed is None:
        return UnitTally(unit=unit, phase=REVEALED, reveals=n)
    pair = find_pair(seed, by_account, weights, policy.check_rank, rounds)
    if pair is None:
        weighted_roots = {v[0].work.root for a, v in by_account.items() if weights.get(a, 0) > 0}
        phase = CONFLICTING if len(weighted_roots) > 1 else REVEALED
        return UnitTally(unit=unit, phase=phase, reveals=n, seed=seed)
    root, reporter, checker = pair
    base = dict(unit=unit, reveals=n, seed=seed, root=root, reporter=reporter, checker=checker)
    if any(v[0].work.root != root and weights.get(a, 0) > 0 for a, v in by_account.items()):
        return UnitTally(phase=CONFLICTING, **base)
    work_cids = {r.cid for a in (reporter, checker) for r in by_account[a]}
    audits, unavailable = count_audits(
        seed, work_cids, checks_by_work, weights, (reporter, checker), policy, blocks
    )
    if unavailable >= policy.unavailable_limit and len(audits) < unavailable:
        return UnitTally(phase=WITHHELD, audits=audits, unavailable=unavailable, **base)
    if len(audits) < policy.audits:
        return UnitTally(phase=PAIRED, audits=audits, unavailable=unavailable, **base)
    return UnitTally(phase=VERIFIED, audits=audits, unavailable=unavailable, **base)
