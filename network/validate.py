"""Record validation: every record is accepted or rejected with a reason code.

`validate` is pure: the same record and context always give the same verdict,
and it changes nothing. Seeing the same record twice is therefore harmless;
the ledger deduplicates by CID (docs/PROTOCOL.md, "Validation").

Work records are checked in this order, the first failure wins:

1. signer is the node key and the signature verifies (bad_signature, wrong_signer);
2. created <= now + max_skew_s (from_future);
3. params equal one of the context's parameter sets (unknown_params);
4. a delegation from `account` to `node` exists in the context, is not
   expired at `created` (delegation_expired), and no revocation of that pair
   has created <= the work's created (no_delegation, node_revoked);
5. tested equals the sieve's exact count for the unit (tested_mismatch);
6. totals are consistent (bad_totals): overflows and candidate_count are
   at most tested (a candidates_cid must be a valid CID, bad_field); with tested = 0 odd_steps, max_value and max_n are 0;
   otherwise max_n is a tested number of the unit and max_value >= 3*max_n + 1;
7. (tested - candidate_count) * min_odd_steps(k) <= odd_steps
   <= (tested - candidate_count) * 256 (odd_steps_out_of_band);
8. every candidate is a tested number of the unit (bad_candidate) and does
   not fall below itself within exact_step_bound odd steps when iterated
   exactly (candidate_falls).
"""

from __future__ import annotations

import bisect
import functools
from collections import ChainMap
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

from engine import reference, sieve
from engine.evidence import verify_proof
from engine.params import DEV, PRODUCTION, Params
from network import codec
from network import rejection as R
from network.ipfs.cid import is_valid_cid
from network.records import (
    RECHECK_FACTOR,
    BeaconRecord,
    CheckRecord,
    CommitRecord,
    DelegationRecord,
    DisputeRecord,
    RecheckRecord,
    SignedRecord,
    SpotCheckRecord,
    WorkRecord,
)
from network.rejection import Accepted, Rejection

__all__ = [
    "Accepted",
    "DelegationIndex",
    "Delegations",
    "Rejection",
    "ValidationContext",
    "authorised",
    "odd_steps_band",
    "validate",
]

DEFAULT_MAX_SKEW_S = 600
# Average odd steps per tested number allowed before a total is implausible.
# Survivors of the sieve average a few dozen; 256 leaves a wide margin.
MAX_MEAN_ODD_STEPS = 256


@dataclass(frozen=True)
class ValidationContext:
    """What validation may consult besides the record itself.

    Attributes:
        now: the local clock, unix seconds.
        delegations: delegation records the caller already validated
            (revocations included); only these authorise node keys.
        indexed: the same, indexed (a `DelegationIndex` view); when given,
            `delegations` is not read.
        param_sets: parameter sets work may use (tests add small ones).
        max_skew_s: how far `created` may lie ahead of `now`.
        works: known work records by CID, so disputes' Merkle proofs and
            block indexes can be checked.
        recheck_candidates: iterate candidates exactly (step 8); off only
            for tools that display records.
    """

    now: int
    delegations: tuple[DelegationRecord, ...] = ()
    param_sets: tuple[Params, ...] = (PRODUCTION, DEV)
    max_skew_s: int = DEFAULT_MAX_SKEW_S
    works: Mapping[str, WorkRecord] = field(default_factory=dict)
    recheck_candidates: bool = True
    indexed: Delegations | None = None

    @functools.cached_property
    def delegation_index(self) -> Delegations:
        """The context's delegations, indexed by (account, node) once (`indexed`
        when the caller keeps them indexed already)."""
        return self.indexed if self.indexed is not None else Delegations.of(self.delegations)


def context(
    now: int,
    delegations: Iterable[DelegationRecord] = (),
    param_sets: Iterable[Params] = (PRODUCTION, DEV),
    **kwargs,
) -> ValidationContext:
    """Convenience constructor that accepts any iterables."""
    return ValidationContext(
        now=now, delegations=tuple(delegations), param_sets=tuple(param_sets), **kwargs
    )


@functools.lru_cache(maxsize=4096)
def expected_tested(params: Params, unit: int) -> int:
    """Exact count of tested numbers in unit `unit` (cached per (params, unit))."""
    lo, hi = params.unit_range(unit)
    return sieve.load(params.sieve_k).count_tested(lo, hi)


@functools.lru_cache(maxsize=64)
def min_odd_steps(sieve_k: int) -> int:
    """Fewest odd steps any tested number takes before falling below itself.

    A survivor with a k-step jump cannot fall within its first k steps, which
    contain jump_c odd steps. Survivors without a jump (NO_JUMP) are only
    known to be 3 mod 4, and such an n needs at least 2 odd steps.
    """
    s = sieve.load(sieve_k)
    jumps = s.jump_c[s.jump_c != sieve.NO_JUMP]
    bound = int(jumps.min()) if len(jumps) else 2
    if len(jumps) < len(s):
        bound = min(bound, 2)
    return bound


def odd_steps_band(params: Params, tested: int) -> tuple[int, int]:
    """The inclusive [low, high] band a unit's odd_steps total must fall in."""
    return tested * min_odd_steps(params.sieve_k), tested * MAX_MEAN_ODD_STEPS


@dataclass(frozen=True, slots=True)
class Delegations:
    """The delegation rule, written once: validation (`authorised`) and the derived
    state (network/state.py rule 1) both ask it.

    `account` authorises `node` at time t when some delegation of that pair that is
    not a revocation has created <= t and (expires == 0 or t < expires), and no
    revocation of the pair has created <= t (revocation is permanent).

    Attributes:
        grants: (account, node) -> (created, expires) of each delegation, sorted.
        revoked_at: (account, node) -> the earliest revocation's created.
    """

    grants: Mapping[tuple[bytes, bytes], Sequence[tuple[int, int]]]
    revoked_at: Mapping[tuple[bytes, bytes], int]

    @classmethod
    def of(cls, records: Iterable[DelegationRecord]) -> Delegations:
        return DelegationIndex(records).view

    def verdict(self, account: bytes, node: bytes, t: int) -> Rejection | None:
        """None if `account` had delegated `node` at time `t`, else why not."""
        started = [e for c, e in self.grants.get((account, node), ()) if c <= t]
        if not started:
            return Rejection(
                R.NO_DELEGATION,
                f"node {node.hex()[:16]} is not delegated by account {account.hex()[:16]} at {t}",
            )
        revoked = self.revoked_at.get((account, node))
        if revoked is not None and revoked <= t:
            return Rejection(
                R.NODE_REVOKED,
                f"node {node.hex()[:16]} was revoked at {revoked}, record created {t}",
            )
        if not any(e == 0 or t < e for e in started):
            return Rejection(R.DELEGATION_EXPIRED, f"the delegation expired before {t}")
        return None

    def authorises(self, account: bytes, node: bytes, t: int) -> bool:
        return self.verdict(account, node, t) is None


class DelegationIndex:
    """`Delegations` kept up to date one record at a time, for a holder of records
    that grow (the node's record store).

    Rebuilding `Delegations.of` from every held delegation for each record validated
    made each validation O(delegations held): with 20,000 fresh accounts held (any
    flooder can sign those) an honest record took 116 ms instead of 0.9 ms
    (bench/fresh_accounts.py). Here each delegation is indexed once, when it is
    added, and `view` is the same rule over the live index.

    `view` reflects later `add`s: use it under the lock that guards the adds.
    """

    def __init__(
        self,
        records: Iterable[DelegationRecord] = (),
        *,
        over: DelegationIndex | None = None,
    ) -> None:
        # (`over`: a layer over that index; adds go to the layer, reads see both)
        self._grants: MutableMapping[tuple[bytes, bytes], list[tuple[int, int]]] = (
            {} if over is None else ChainMap({}, over._grants)
        )
        self._revoked_at: MutableMapping[tuple[bytes, bytes], int] = (
            {} if over is None else ChainMap({}, over._revoked_at)
        )
        self.view = Delegations(grants=self._grants, revoked_at=self._revoked_at)
        for d in records:
            self.add(d)

    def add(self, d: DelegationRecord) -> None:
        key = (d.account, d.node)
        if d.revoked:
            old = self._revoked_at.get(key)
            self._revoked_at[key] = d.created if old is None else min(old, d.created)
            return
        # (kept sorted in place: an account may sign any number of delegations of one
        # node, and re-sorting them all at each one would make that flood quadratic)
        entries = self._own_grants(key)
        entry = (d.created, d.expires)
        i = bisect.bisect_left(entries, entry)
        if i == len(entries) or entries[i] != entry:
            entries.insert(i, entry)

    def _own_grants(self, key: tuple[bytes, bytes]) -> list[tuple[int, int]]:
        """The pair's entries to add to: in a layer, a copy of those below it."""
        grants = self._grants
        if isinstance(grants, ChainMap):
            own = grants.maps[0]
            if key not in own:
                own[key] = list(grants.get(key, ()))
            return own[key]
        return grants.setdefault(key, [])

    def layer(self) -> DelegationIndex:
        """An index over this one whose adds stay in the layer (records of a batch
        being ingested, not held yet), this index unchanged: O(1) to make; an add
        copies at most its own pair's entries from below."""
        return DelegationIndex(over=self)


def authorised(
    ctx: ValidationContext, account: bytes, node: bytes, created: int
) -> Rejection | None:
    """None if `account` had delegated `node` at time `created`, else why not."""
    return ctx.delegation_index.verdict(account, node, created)


def _validate_work(w: WorkRecord, ctx: ValidationContext) -> Rejection | None:
    if w.params not in ctx.param_sets:
        names = ", ".join(p.name for p in ctx.param_sets)
        return Rejection(R.UNKNOWN_PARAMS, f"params {w.params.name!r} match none of: {names}")
    denied = authorised(ctx, w.account, w.node, w.created)
    if denied is not None:
        return denied
    if w.evidence_cid is None or not is_valid_cid(w.evidence_cid):
        # Work nobody can spot-check could carry any root: it must name its leaves.
        return Rejection(R.BAD_FIELD, "work record without a valid evidence CID")
    p = w.params
    lo, hi = p.unit_range(w.unit)
    expected = expected_tested(p, w.unit)
    if w.tested != expected:
        return Rejection(
            R.TESTED_MISMATCH,
            f"unit {w.unit} has {expected} tested numbers, record says {w.tested}",
        )
    sv = sieve.load(p.sieve_k)
    if w.overflows > w.tested or w.candidate_count > w.tested:
        return Rejection(R.BAD_TOTALS, "more overflows or candidates than tested numbers")
    if w.candidates_cid is not None and not is_valid_cid(w.candidates_cid):
        return Rejection(R.BAD_FIELD, "candidates_cid is not a valid CID")
    if w.tested == 0:
        if w.odd_steps or w.max_value or w.max_n:
            return Rejection(R.BAD_TOTALS, "nothing tested, but steps or a maximum reported")
    elif not (lo <= w.max_n < hi and sv.is_tested(w.max_n) and w.max_value >= 3 * w.max_n + 1):
        return Rejection(R.BAD_TOTALS, "max_n is not a tested number of the unit below max_value")
    # Candidates add nothing to odd_steps (PROTOCOL §2), so only the others bound it below.
    low, high = odd_steps_band(p, w.tested - w.candidate_count)
    if not low <= w.odd_steps <= high:
        return Rejection(
            R.ODD_STEPS_OUT_OF_BAND, f"odd_steps {w.odd_steps} outside [{low}, {high}]"
        )
    for c in w.candidates:
        if not (lo <= c < hi and sv.is_tested(c)):
            return Rejection(R.BAD_CANDIDATE, f"candidate {c} is not a tested number of the unit")
    if ctx.recheck_candidates:
        for c in w.candidates:
            if reference.glide(c, p.exact_step_bound).fell:
                return Rejection(
                    R.CANDIDATE_FALLS, f"candidate {c} falls below itself: not a candidate"
                )
    return None


def _validate_commit(c: CommitRecord | BeaconRecord, ctx: ValidationContext) -> Rejection | None:
    return authorised(ctx, c.account, c.node, c.created)


# Odd steps validation repeats to prove a re-check's "fell after n steps" (a few
# seconds of exact Python arithmetic at most); longer claims are refused, not trusted.
MAX_RECHECK_VERIFY_STEPS = 1 << 24


def _validate_recheck(r: RecheckRecord, ctx: ValidationContext) -> Rejection | None:
    denied = authorised(ctx, r.account, r.node, r.created)
    if denied is not None:
        return denied
    work = ctx.works.get(r.work_cid)
    if work is None:
        return Rejection(R.UNKNOWN_WORK, f"work record {r.work_cid} is not known yet")
    p = work.params
    lo, hi = p.unit_range(work.unit)
    listed = r.candidate in work.candidates
    unlisted_ok = work.extra_candidates > 0 and lo <= r.candidate < hi
    if not (listed or unlisted_ok) or not sieve.load(p.sieve_k).is_tested(r.candidate):
        return Rejection(R.BAD_CANDIDATE, f"{r.candidate} is not a candidate of that work")
    if r.bound < RECHECK_FACTOR * p.exact_step_bound:
        return Rejection(
            R.BAD_FIELD, f"a re-check needs a bound of at least {RECHECK_FACTOR} x exact_step_bound"
        )
    if r.fell and ctx.recheck_candidates:
        if r.steps > MAX_RECHECK_VERIFY_STEPS:
            return Rejection(R.BAD_FIELD, f"{r.steps} steps is too long to verify here")
        g = reference.glide(r.candidate, r.steps)
        if not (g.fell and g.odd_steps == r.steps):
            return Rejection(R.BAD_CANDIDATE, f"{r.candidate} does not fall after {r.steps} steps")
    return None


def recheck(candidate: int, bound: int) -> tuple[bool, int]:
    """Iterate a candidate exactly up to `bound` odd steps: (fell, steps until it fell)."""
    g = reference.glide(candidate, bound)
    return g.fell, g.odd_steps if g.fell else 0


def _validate_report(
    r: CheckRecord | SpotCheckRecord | DisputeRecord, ctx: ValidationContext
) -> Rejection | None:
    denied = authorised(ctx, r.account, r.node, r.created)
    if denied is not None:
        return denied
    work = ctx.works.get(r.work_cid)
    if work is None:
        # Judged only against its work record: a node holds it until that arrives.
        return Rejection(R.UNKNOWN_WORK, f"work record {r.work_cid} is not known yet")
    blocks = work.params.blocks_per_unit
    # (a spot-check's blocks are strictly increasing: its last is its largest)
    last = r.blocks[-1] if isinstance(r, SpotCheckRecord) else r.block
    if last >= blocks:
        return Rejection(R.BAD_FIELD, f"block {last} is past the unit's {blocks} blocks")
    if isinstance(r, DisputeRecord) and not dispute_is_proven(r, work):
        # Without the worker's own leaf, proven against its root, a dispute could
        # accuse correct work and honest nodes would "confirm" it.
        return Rejection(R.BAD_PROOF, "the dispute does not prove the work's leaf for that block")
    return None


def dispute_is_proven(d: DisputeRecord, work: WorkRecord) -> bool:
    """True if `d` carries the leaf `work` committed to for block d.block, with its proof."""
    if d.claimed_leaf is None:
        return False
    return verify_proof(d.claimed_leaf, d.block, work.params.blocks_per_unit, d.proof, work.root)


def validate(
    item: SignedRecord, ctx: ValidationContext, *, parsed_cid: str | None = None
) -> Accepted | Rejection:
    """Accept or reject a parsed signed record; never raises for any SignedRecord.

    `parsed_cid`: the CID of the wire bytes `codec.parse` made `item` from. Parsing
    checked the signer and verified the signature, so neither is done again, and the
    CID is not computed again (a second Ed25519 verification and a re-encoding were
    a seventh of what the record store spent a record).
    """
    if not isinstance(item, SignedRecord):
        return Rejection(R.MALFORMED, "not a signed record")
    record = item.record
    if parsed_cid is None:
        if item.signer != record.signer:
            return Rejection(
                R.WRONG_SIGNER, f"{item.kind} record signed by a key other than its signer"
            )
        if not codec.verify_signature(item):
            return Rejection(R.BAD_SIGNATURE, f"{item.kind} record signature does not verify")
    if record.created > ctx.now + ctx.max_skew_s:
        return Rejection(
            R.FROM_FUTURE, f"created {record.created - ctx.now} s ahead of the local clock"
        )
    verdict: Rejection | None = None
    if isinstance(record, WorkRecord):
        verdict = _validate_work(record, ctx)
    elif isinstance(record, RecheckRecord):
        verdict = _validate_recheck(record, ctx)
    elif isinstance(record, CommitRecord | BeaconRecord):
        verdict = _validate_commit(record, ctx)
    elif isinstance(record, CheckRecord | SpotCheckRecord | DisputeRecord):
        verdict = _validate_report(record, ctx)
    if verdict is not None:
        return verdict
    return Accepted(record=item, cid=codec.record_cid(item) if parsed_cid is None else parsed_cid)
