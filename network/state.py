"""The network state: a pure, deterministic function of a set of valid records.

`derive_state(records, params)` reads no clock, no file and no network, and ignores
the order and any duplication of its input, so two nodes holding the same records
(and the same confirmed disputes) show exactly the same state (docs/PROTOCOL.md,
"Network state"). Claims are ephemeral and live in the ledger; `next_unit` combines
a state with the current claims to choose what to compute next.

Rules, in order:

1. Authority. A work, check, spot-check or dispute record *counts* only if its node is
   delegated by its account at the record's `created` time: some non-revoked delegation
   (account, node) has `created <= t` and (`expires == 0` or `t < expires`), and no
   revocation of (account, node) has `created <= t`. Work must also use `params`
   (every field but the informational name). Everything else is ignored, not an error.
   The delegation rule is `network.validate.Delegations`, the one validation uses.
2. Disputes. A dispute against counted work W, block b (b < blocks per unit), is
   *confirmed* when its own node is delegated and either its CID is in
   `confirmed_dispute_cids` (this node recomputed block b and got the dispute's
   leaf), or a counted check record of W, block b, says `match=False` with the same
   leaf and comes from an account other than W's and the dispute's. A confirmed
   dispute removes every counted work record of W's unit with W's root (the root
   commits to the bad leaf) and marks the unit disputed.
3. Quorum. Per unit, each remaining root collects the distinct accounts that reported
   it. The unit is *verified* when exactly one root has two or more accounts.
   Otherwise it is *disputed* if a confirmed dispute hit it, *conflicting* if it has
   two or more roots, *reported_once* if it has one, and *open* if none is left.
4. Frontier: the number of consecutive verified units from unit 0, and the integer
   bound `params.start + frontier * params.unit_size` below which everything is
   verified by the network.
5. Leaderboard. On a verified unit the accounts of the verified root are ordered by
   their earliest report (created, then CID); the first two (the quorum) are
   credited, the first with a first report, the second with a second report. Entries
   are ordered by units credited (desc), first reports (desc), then account key.
   Each account is also shown the blocks of others' counted work it recomputed (a
   check record counts one, a spot-check record each block it names).
6. Usernames: network.usernames decides owners among current account records; the
   others are shown as ``name#xxxx``. Accounts without an account record show the
   first 8 hex digits of their key.

`derive_state` runs one function per rule: `_counted_work` (1), `_disputes` (2),
`_units` with `_root_reports` and `_quorum_status` or, under a trust policy,
`_trust_verdicts` and `_trust_status` (3), `_frontier` (4), `_leaderboard` with its
`_Tally` per account (5) and `network.directory` (6); `_rechecks` and `_candidates` collect
what the unit statuses list about candidates.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from engine.params import Params
from network import trust as T
from network.directory import AccountEntry, Identities, directory_of
from network.validate import Delegations, dispute_is_proven

OPEN = "open"
REPORTED_ONCE = "reported_once"
CONFLICTING = "conflicting"
VERIFIED = "verified"
DISPUTED = "disputed"
# A counted report lists a number that did not fall below itself: never verified, and
# the frontier stops before it (PROTOCOL §2: a candidate is never counted as passed).
CANDIDATE = "candidate"
UNIT_STATUSES = (OPEN, REPORTED_ONCE, CONFLICTING, VERIFIED, DISPUTED, CANDIDATE)

QUORUM = 2  # distinct accounts that must report the same root
ANONYMOUS_HEX_DIGITS = 8


class SignedLike(Protocol):
    """What state needs of a signed record: its payload (network.records.*Record)."""

    @property
    def record(self) -> Any: ...


class ValidRecord(Protocol):
    """A record that passed validation: network.rejection.Accepted fits.

    `record.record` is the payload (AccountRecord, DelegationRecord, WorkRecord,
    CheckRecord or DisputeRecord from network.records), whose `KIND` says which.
    """

    @property
    def cid(self) -> str: ...

    @property
    def record(self) -> SignedLike: ...


class ClaimLike(Protocol):
    """A claim as the ledger keeps it (network.ledger.ClaimRow fits).

    It may also carry `first_seen` (unix seconds: its account's first claim on the
    unit), which caps how long it counts (`claim_in_force`).
    """

    @property
    def unit(self) -> int: ...

    @property
    def node(self) -> bytes: ...

    @property
    def account(self) -> bytes: ...

    @property
    def expires_at(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RootReport:
    """The accounts that reported one root for a unit.

    Attributes:
        root: the Merkle root (32 bytes).
        accounts: distinct reporting accounts, in order of their earliest report.
        work_cids: the counted work records with this root, sorted.
    """

    root: bytes
    accounts: tuple[bytes, ...]
    work_cids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Recheck:
    """One account's exact re-check of a candidate (network.records.RecheckRecord).

    Attributes:
        candidate: the number.
        fell: it fell below itself after `steps` odd steps (validation proved it);
            otherwise it still stood after `bound` odd steps.
        steps: odd steps until it fell (0 if it did not).
        bound: odd steps the re-check allowed.
        account: who re-checked.
        cid: the re-check record.
    """

    candidate: int
    fell: bool
    steps: int
    bound: int
    account: bytes
    cid: str


@dataclass(frozen=True, slots=True)
class UnitStatus:
    """What the network knows about one unit.

    Attributes:
        unit: the unit index.
        status: one of UNIT_STATUSES.
        roots: the remaining reports, by root (sorted by root bytes).
        verified_root: the root with quorum, when verified.
        disputed: True if a confirmed dispute hit this unit (even if it is verified again).
        disputes: CIDs of the confirmed disputes against this unit's work, sorted.
        removed: CIDs of work records removed by those disputes, sorted.
        candidates: the candidates listed inline by any counted report, sorted.
        candidate_count: the largest candidate count any counted report gives
            (reports may list only the first 16 inline; the rest sit in a CID list).
        candidate_reports: CIDs of the counted work records that report candidates.
        phase: under a trust policy, how far the unit got (network.trust.PHASES:
            committed, revealed, paired, verified, conflicting, withheld, candidate).
        reopened: under a trust policy, a slashed account had revealed on this unit,
            which is now judged without it (backtracking).
        rechecks: counted re-checks of its candidates with a far larger bound.
    """

    unit: int
    status: str
    roots: tuple[RootReport, ...]
    verified_root: bytes | None = None
    disputed: bool = False
    disputes: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    candidates: tuple[int, ...] = ()
    candidate_count: int = 0
    candidate_reports: tuple[str, ...] = ()
    phase: str = ""
    reopened: bool = False
    rechecks: tuple[Recheck, ...] = ()

    def reporters(self) -> frozenset[bytes]:
        """Every account with a counted report on this unit."""
        return frozenset(a for r in self.roots for a in r.accounts)


@dataclass(frozen=True, slots=True)
class LeaderboardEntry:
    """One account's standing.

    Attributes:
        rank: 1-based position.
        account: the account key.
        display_name: as the account directory shows it.
        units_credited: verified units where the account was in the quorum.
        numbers_verified: units_credited times the unit size.
        first_reports: credited units where it reported first.
        second_reports: credited units where it reported second.
        pending: units it reported that are not verified (yet).
        checks: blocks of others' work it recomputed (counted check and spot-check
            records: one per check record, each block of a spot-check record).
    """

    rank: int
    account: bytes
    display_name: str
    units_credited: int
    numbers_verified: int
    first_reports: int
    second_reports: int
    pending: int
    checks: int


@dataclass(frozen=True)
class NetworkState:
    """Everything the app shows about the network, derived by `derive_state`.

    Attributes:
        params: the parameter set the state is about.
        units: unit index -> UnitStatus, for every unit with a counted or removed report.
        frontier: consecutive verified units from unit 0.
        frontier_bound: every integer below this is verified (params.start + frontier units).
        leaderboard: ranked entries, one per account with a counted report.
        accounts: account key -> AccountEntry, for accounts with an account record.
        name_owners: normalised username -> owning account.
        confirmed_disputes: CIDs of the confirmed disputes.
        ignored: CIDs of records that do not count (no delegation, revoked, other params,
            dispute or check not about counted work), sorted.
        record_count: distinct valid records given.
        trust: the trust protocol's verdicts (weights, slashed accounts, per-unit
            tallies) when derive_state ran with a policy; None otherwise.
    """

    params: Params
    units: Mapping[int, UnitStatus]
    frontier: int
    frontier_bound: int
    leaderboard: tuple[LeaderboardEntry, ...]
    accounts: Mapping[bytes, AccountEntry]
    name_owners: Mapping[str, bytes]
    confirmed_disputes: frozenset[str]
    ignored: tuple[str, ...]
    record_count: int
    trust: T.TrustState | None = None

    @functools.cached_property
    def reporters_by_unit(self) -> Mapping[int, frozenset[bytes]]:
        """unit -> accounts with a counted report on it (computed once per state)."""
        return {u: e.reporters() for u, e in self.units.items()}

    def account_weight(self, account: bytes) -> int | None:
        """The account's earned weight under the trust policy (None without one)."""
        return None if self.trust is None else self.trust.weights.get(account, 0)

    @property
    def units_verified(self) -> int:
        """How many units are verified (frontier or not)."""
        return sum(1 for u in self.units.values() if u.status == VERIFIED)

    @property
    def candidate_units(self) -> tuple[UnitStatus, ...]:
        """Units some counted report says hold a candidate, by unit (a historic finding
        if it stands; the app raises it prominently)."""
        return tuple(u for _, u in sorted(self.units.items()) if u.status == CANDIDATE)

    def status_of(self, unit: int) -> str:
        """The unit's status; OPEN for a unit nobody reported."""
        entry = self.units.get(unit)
        return OPEN if entry is None else entry.status

    def display_name(self, account: bytes) -> str:
        """How to show `account`: its directory name, or its first key hex digits."""
        return _display_name(self.accounts, account)


def params_key(p: Params) -> tuple:
    """Params identity for matching work: every field except the informational name."""
    return tuple(getattr(p, f.name) for f in fields(p) if f.name != "name")


@dataclass(frozen=True, slots=True)
class _Inputs:
    """The records derive_state reads, by kind, each list sorted by CID (so nothing
    downstream can depend on the input order or on duplicates)."""

    account: list[tuple[str, Any]]
    delegation: list[tuple[str, Any]]
    work: list[tuple[str, Any]]
    check: list[tuple[str, Any]]
    spotcheck: list[tuple[str, Any]]
    dispute: list[tuple[str, Any]]
    commit: list[tuple[str, Any]]
    beacon: list[tuple[str, Any]]
    recheck: list[tuple[str, Any]]

    @classmethod
    def of(cls, records: Iterable[ValidRecord]) -> _Inputs:
        by_kind: dict[str, dict[str, Any]] = {f.name: {} for f in fields(cls)}
        for item in records:
            payload = item.record.record
            bucket = by_kind.get(payload.KIND)
            if bucket is not None:
                bucket[item.cid] = payload
        return cls(**{k: sorted(v.items()) for k, v in by_kind.items()})

    @property
    def count(self) -> int:
        return sum(len(getattr(self, f.name)) for f in fields(self))


@dataclass(slots=True)
class _Candidates:
    """What counted reports say about one unit's candidates."""

    listed: set[int] = field(default_factory=set)
    count: int = 0
    reports: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Disputes:
    """Rule 2's outcome: the confirmed disputes, and what they removed per unit."""

    confirmed: dict[str, Any]
    removed: dict[int, list[str]]
    by_unit: dict[int, list[str]]


@dataclass(slots=True)
class _Tally:
    """One account's leaderboard counts (rule 5)."""

    credited: int = 0
    first: int = 0
    second: int = 0
    pending: int = 0
    checks: int = 0


def derive_state(
    records: Iterable[ValidRecord],
    params: Params,
    confirmed_dispute_cids: Iterable[str] = (),
    *,
    trust: T.TrustPolicy | None = None,
    refuted_dispute_cids: Iterable[str] = (),
    identities: Identities | None = None,
) -> NetworkState:
    """The network state of a set of valid records (see the module doc for the rules).

    Args:
        records: validated records (network.rejection.Accepted or anything with `cid` and
            `record.record`); order and duplicates do not matter.
        params: the parameter set whose units are counted; other work is ignored.
        confirmed_dispute_cids: disputes this node confirmed by recomputing the block.
        trust: the verification protocol's policy (PROTOCOL §11). With one, a unit is
            verified only under network.trust's rules (commit-reveal, drawn checker,
            audits, weight, slashing); without one, the two-account quorum of rule 3.
        refuted_dispute_cids: disputes this node refuted by recomputing the block.
        identities: the account and delegation records, kept indexed by the caller
            (the record store's `network.directory.IdentityBook`); `records` then
            need not hold them, and those it holds are not read. Without it the
            delegation index and the directory are built from `records`.

    Returns:
        The derived NetworkState.
    """
    inputs = _Inputs.of(records)
    if identities is None:
        deleg = Delegations.of(d for _cid, d in inputs.delegation)
        directory = directory_of(inputs.account, deleg)
        record_count = inputs.count
    else:
        deleg, directory = identities.delegations, identities.directory
        record_count = inputs.count - len(inputs.account) - len(inputs.delegation)
        record_count += identities.records
    blocks = params.blocks_per_unit
    ignored: set[str] = set()  # every rule adds the records it does not count

    def counts(r: Any) -> bool:
        return deleg.authorises(r.account, r.node, r.created)

    work = _counted_work(inputs.work, counts, params, ignored)
    rechecks = _rechecks(inputs.recheck, work, counts, ignored)
    # Before disputes remove anything: a proven-wrong root does not make a listed
    # number fall below itself; only a re-check would.
    candidates = _candidates(work)
    checks: dict[str, Any] = {}
    for cid, c in inputs.check:
        if counts(c) and c.work_cid in work and c.block < blocks:
            checks[cid] = c
        else:
            ignored.add(cid)
    # Spot-checks only ever state matches: nothing but the leaderboard reads them.
    spotchecks: dict[str, Any] = {}
    for cid, c in inputs.spotcheck:
        if counts(c) and c.work_cid in work and c.blocks[-1] < blocks:
            spotchecks[cid] = c
        else:
            ignored.add(cid)

    trust_state = None
    confirmed_local = frozenset(confirmed_dispute_cids)
    if trust is not None:
        trust_state = _trust_verdicts(
            inputs,
            work,
            checks,
            counts,
            blocks,
            trust,
            confirmed_local,
            frozenset(refuted_dispute_cids),
            ignored,
        )
        # The trust rules judged disputes (refutations by this node win).
        confirmed_local = trust_state.frauds

    disputes = _disputes(
        inputs.dispute, work, checks, counts, blocks, confirmed_local, trust is None, ignored
    )
    units, quorum_members = _units(work, disputes, candidates, rechecks, trust_state)
    frontier = _frontier(units)
    accounts = directory.accounts
    ignored |= directory.ignored  # (account records whose username does not normalise)
    return NetworkState(
        params=params,
        units=units,
        frontier=frontier,
        frontier_bound=params.start + frontier * params.unit_size,
        leaderboard=_leaderboard(units, quorum_members, checks, spotchecks, accounts, params),
        accounts=accounts,
        name_owners=directory.name_owners,
        confirmed_disputes=frozenset(disputes.confirmed),
        ignored=tuple(sorted(ignored)),
        record_count=record_count,
        trust=trust_state,
    )


def _counted_work(
    items: list[tuple[str, Any]], counts: Callable[[Any], bool], params: Params, ignored: set[str]
) -> dict[str, Any]:
    """Rule 1: work from a delegated node on our parameter set (every field but the name)."""
    want = params_key(params)
    work: dict[str, Any] = {}
    for cid, w in items:
        if counts(w) and params_key(w.params) == want:
            work[cid] = w
        else:
            ignored.add(cid)
    return work


def _rechecks(
    items: list[tuple[str, Any]],
    work: Mapping[str, Any],
    counts: Callable[[Any], bool],
    ignored: set[str],
) -> dict[int, list[Recheck]]:
    """Counted re-checks of counted work's candidates, per unit."""
    by_unit: dict[int, list[Recheck]] = {}
    for cid, r in items:
        target = work.get(r.work_cid)
        if target is None or not counts(r):
            ignored.add(cid)
            continue
        by_unit.setdefault(target.unit, []).append(
            Recheck(r.candidate, r.fell, r.steps, r.bound, r.account, cid)
        )
    return by_unit


def _candidates(work: Mapping[str, Any]) -> dict[int, _Candidates]:
    """A counted report of a candidate keeps its unit from being verified, whatever
    else is said about the unit (PROTOCOL §2)."""
    by_unit: dict[int, _Candidates] = {}
    for cid, w in work.items():
        if w.has_candidates:
            c = by_unit.setdefault(w.unit, _Candidates())
            c.listed.update(w.candidates)
            c.count = max(c.count, w.candidate_count)
            c.reports.append(cid)
    return by_unit


def _disputes(
    items: list[tuple[str, Any]],
    work: dict[str, Any],
    checks: Mapping[str, Any],
    counts: Callable[[Any], bool],
    blocks: int,
    confirmed_local: frozenset[str],
    independent_checks_confirm: bool,
    ignored: set[str],
) -> _Disputes:
    """Rule 2: confirmed disputes remove every counted work of their unit with the
    disputed root (from `work`, in place). Without a trust policy a check from a third
    account with the dispute's leaf confirms it too."""
    refuting: dict[tuple[str, int, bytes], set[bytes]] = {}
    for c in checks.values():
        if not c.match:
            refuting.setdefault((c.work_cid, c.block, c.leaf), set()).add(c.account)
    confirmed: dict[str, Any] = {}
    for cid, d in items:
        target = work.get(d.work_cid)
        if target is None or not counts(d) or d.block >= blocks or not dispute_is_proven(d, target):
            ignored.add(cid)
            continue
        independent = refuting.get((d.work_cid, d.block, d.recomputed_leaf), set()) - {
            target.account,
            d.account,
        }
        if cid in confirmed_local or (independent and independent_checks_confirm):
            confirmed[cid] = d
    bad_roots: dict[tuple[int, bytes], list[str]] = {}
    for cid, d in confirmed.items():
        target = work[d.work_cid]
        bad_roots.setdefault((target.unit, target.root), []).append(cid)
    removed: dict[int, list[str]] = {}
    for cid, w in list(work.items()):
        if (w.unit, w.root) in bad_roots:
            removed.setdefault(w.unit, []).append(cid)
            del work[cid]
    by_unit: dict[int, list[str]] = {}
    for (unit, _root), cids in bad_roots.items():
        by_unit.setdefault(unit, []).extend(cids)
    return _Disputes(confirmed=confirmed, removed=removed, by_unit=by_unit)


def _root_reports(work: Mapping[str, Any]) -> dict[int, tuple[RootReport, ...]]:
    """Per unit, each remaining root with its distinct accounts in order of their
    earliest report (one account's reports of one root count once, at the earliest)."""
    earliest: dict[tuple[int, bytes, bytes], tuple[int, str]] = {}
    cids_per_root: dict[tuple[int, bytes], list[str]] = {}
    for cid, w in work.items():
        key = (w.unit, w.root, w.account)
        stamp = (w.created, cid)
        if key not in earliest or stamp < earliest[key]:
            earliest[key] = stamp
        cids_per_root.setdefault((w.unit, w.root), []).append(cid)
    per_root: dict[tuple[int, bytes], list[tuple[tuple[int, str], bytes]]] = {}
    for (unit, root, account), stamp in earliest.items():
        per_root.setdefault((unit, root), []).append((stamp, account))
    by_unit: dict[int, list[RootReport]] = {}
    for unit, root in sorted(per_root):
        by_unit.setdefault(unit, []).append(
            RootReport(
                root=root,
                accounts=tuple(a for _stamp, a in sorted(per_root[(unit, root)])),
                work_cids=tuple(sorted(cids_per_root[(unit, root)])),
            )
        )
    return {u: tuple(r) for u, r in by_unit.items()}


def _units(
    work: Mapping[str, Any],
    disputes: _Disputes,
    candidates: Mapping[int, _Candidates],
    rechecks: Mapping[int, list[Recheck]],
    trust_state: T.TrustState | None,
) -> tuple[dict[int, UnitStatus], dict[int, tuple[bytes, ...]]]:
    """Rule 3: each unit's status, and the accounts credited for each verified unit."""
    reports = _root_reports(work)
    all_units = set(reports) | set(disputes.removed) | set(candidates)
    if trust_state is not None:
        all_units |= set(trust_state.units)
    units: dict[int, UnitStatus] = {}
    quorum_members: dict[int, tuple[bytes, ...]] = {}
    for unit in sorted(all_units):
        roots = reports.get(unit, ())
        disputed = unit in disputes.by_unit
        cand = candidates.get(unit, _Candidates())
        tally = None if trust_state is None else trust_state.units.get(unit)
        verified_root = None
        if cand.count:
            status = CANDIDATE
        elif trust_state is not None:
            status, verified_root = _trust_status(tally, disputed, roots)
            if status == VERIFIED:
                quorum_members[unit] = (tally.reporter, tally.checker)
        else:
            status, verified_root = _quorum_status(disputed, roots)
            if status == VERIFIED:
                with_quorum = [r for r in roots if r.root == verified_root]
                quorum_members[unit] = with_quorum[0].accounts[:QUORUM]
        units[unit] = UnitStatus(
            unit=unit,
            status=status,
            roots=roots,
            verified_root=verified_root,
            disputed=disputed,
            disputes=tuple(sorted(disputes.by_unit.get(unit, ()))),
            removed=tuple(sorted(disputes.removed.get(unit, ()))),
            candidates=tuple(sorted(cand.listed)),
            candidate_count=cand.count,
            candidate_reports=tuple(sorted(cand.reports)),
            phase=tally.phase if tally is not None else "",
            rechecks=tuple(sorted(rechecks.get(unit, ()), key=lambda r: r.cid)),
            reopened=tally.reopened if tally is not None else False,
        )
    return units, quorum_members


def _quorum_status(disputed: bool, roots: tuple[RootReport, ...]) -> tuple[str, bytes | None]:
    """Rule 3 without a trust policy: verified when exactly one root has QUORUM accounts."""
    with_quorum = [r for r in roots if len(r.accounts) >= QUORUM]
    if len(with_quorum) == 1:
        return VERIFIED, with_quorum[0].root
    if disputed:
        return DISPUTED, None
    if len(roots) >= 2:
        return CONFLICTING, None
    return (REPORTED_ONCE if roots else OPEN), None


def _frontier(units: Mapping[int, UnitStatus]) -> int:
    """Rule 4: consecutive verified units from unit 0."""
    frontier = 0
    while units.get(frontier) is not None and units[frontier].status == VERIFIED:
        frontier += 1
    return frontier


def _leaderboard(
    units: Mapping[int, UnitStatus],
    quorum_members: Mapping[int, tuple[bytes, ...]],
    checks: Mapping[str, Any],
    spotchecks: Mapping[str, Any],
    accounts: Mapping[bytes, AccountEntry],
    params: Params,
) -> tuple[LeaderboardEntry, ...]:
    """Rule 5: the quorum of each verified unit is credited (first and second report);
    other reporters are listed; ranked by credited, first reports, then account key."""
    tallies: dict[bytes, _Tally] = {}
    for unit, entry in units.items():
        members = quorum_members.get(unit, ())
        for position, account in enumerate(members):
            t = tallies.setdefault(account, _Tally())
            t.credited += 1
            if position == 0:
                t.first += 1
            else:
                t.second += 1
        if entry.status != VERIFIED:
            for account in entry.reporters():
                tallies.setdefault(account, _Tally()).pending += 1
        else:
            for account in entry.reporters() - set(members):
                tallies.setdefault(account, _Tally())  # listed, with nothing credited
    for c in checks.values():
        tallies.setdefault(c.account, _Tally()).checks += 1
    for c in spotchecks.values():
        tallies.setdefault(c.account, _Tally()).checks += len(c.blocks)
    ordered = sorted(tallies.items(), key=lambda kv: (-kv[1].credited, -kv[1].first, kv[0]))
    return tuple(
        LeaderboardEntry(
            rank=i + 1,
            account=account,
            display_name=_display_name(accounts, account),
            units_credited=t.credited,
            numbers_verified=t.credited * params.unit_size,
            first_reports=t.first,
            second_reports=t.second,
            pending=t.pending,
            checks=t.checks,
        )
        for i, (account, t) in enumerate(ordered)
    )


def _trust_verdicts(
    inputs: _Inputs,
    work: Mapping[str, Any],
    checks: Mapping[str, Any],
    counts: Callable[[Any], bool],
    blocks: int,
    policy: T.TrustPolicy,
    confirmed_local: frozenset[str],
    refuted_local: frozenset[str],
    ignored: set[str],
) -> T.TrustState:
    """Collect the records the trust rules read (all counted) and run them."""
    commits = {cid: c for cid, c in inputs.commit if counts(c)}
    beacons = {cid: b for cid, b in inputs.beacon if counts(b) and b.account in policy.beacons}
    disputes = {
        cid: d
        for cid, d in inputs.dispute
        if d.work_cid in work
        and counts(d)
        and d.block < blocks
        and dispute_is_proven(d, work[d.work_cid])
    }
    for cid, _ in inputs.commit + inputs.beacon:
        if cid not in commits and cid not in beacons:
            ignored.add(cid)
    return T.evaluate(
        works=work,
        commits=commits,
        beacons=beacons,
        checks=checks,
        disputes=disputes,
        policy=policy,
        blocks=blocks,
        confirmed_local=confirmed_local,
        refuted_local=refuted_local,
    )


def _trust_status(
    tally: T.UnitTally | None, disputed: bool, roots: tuple[RootReport, ...]
) -> tuple[str, bytes | None]:
    """A unit's status (UNIT_STATUSES) from its trust tally."""
    if tally is not None and tally.phase == T.VERIFIED:
        return VERIFIED, tally.root
    if disputed:
        return DISPUTED, None
    if (tally is not None and tally.phase == T.CONFLICTING) or len(roots) >= 2:
        return CONFLICTING, None
    return (REPORTED_ONCE if roots else OPEN), None


def _display_name(accounts: Mapping[bytes, AccountEntry], account: bytes) -> str:
    entry = accounts.get(account)
    return entry.display_name if entry is not None else account.hex()[:ANONYMOUS_HEX_DIGITS]


CLAIMS_PER_WEIGHT = 8  # one more counted claim per this much earned weight
FRONTIER_WORKERS = 2  # claims by this many accounts close the frontier unit to others
# A claim keeps others off its unit for at most this long after its account's first
# claim on that unit was seen, however it is renewed (with real or faked progress) or
# re-made (PROTOCOL §8, "Claims"). 4 h: the slowest setting on one measured core (5 %
# CPU share at 6.2e9 numbers/s) takes 59 min per production unit, so this leaves a
# core four times slower room to finish; a unit's honest time at full speed is 3 min.
MAX_CLAIM_HOLD_S = 4 * 3600


def claim_in_force(c: ClaimLike, now: float, max_hold: float = MAX_CLAIM_HOLD_S) -> bool:
    """Whether a claim still keeps others off its unit at `now`: unexpired, and held
    less than `max_hold` since its account's first claim on the unit (`first_seen`,
    when the claim carries it; synthetic claims without it only expire)."""
    if c.expires_at <= now:
        return False
    first_seen = getattr(c, "first_seen", None)
    return first_seen is None or now < first_seen + max_hold


def claim_limit(state: NetworkState, account: bytes) -> int:
    """How many of an account's claims count: 1, plus 1 per CLAIMS_PER_WEIGHT weight."""
    weight = state.account_weight(account) or 0
    return 1 + weight // CLAIMS_PER_WEIGHT


# On the frontier unit once its first report is in, another account's claim counts as
# giving the second report (and keeps others from racing it) for this long after it
# was first seen; after that only FRONTIER_WORKERS claims close the unit, so one claim
# (a squatter's, or one left by a node that vanished) delays the frontier's second
# report at most this long. 10 min: over three times a production unit at the measured
# single-core speed (177 s). A slower honest claimer may see a second account compute
# the unit with it after that (a duplicate result, as before this rule). Scaled with
# `max_hold` where a caller scales that (the simulator).
FRONTIER_GRACE_S = 600


def _frontier_grace(max_hold: float) -> float:
    return FRONTIER_GRACE_S * max_hold / MAX_CLAIM_HOLD_S


def _reports_lacking(state: NetworkState, unit: int) -> int:
    """How many more accounts `unit` needs for a quorum (its best root's counted)."""
    entry = state.units.get(unit)
    have = max((len(r.accounts) for r in entry.roots), default=0) if entry is not None else 0
    return max(1, QUORUM - have)


def _fresh(c: ClaimLike, now: float, grace: float, since: float | None) -> bool:
    """A racer for the frontier's second report: first seen less than `grace` ago and
    not before `since` (when the unit's first report was made, if known: a claim
    from before it was a first-report worker's, which gives its report itself or is
    gone). A claim without `first_seen` counts as fresh."""
    first_seen = getattr(c, "first_seen", None)
    if first_seen is None:
        return True
    return now < first_seen + grace and (since is None or first_seen >= since)


def unit_capacity(state: NetworkState, unit: int) -> int:
    """How many accounts may hold `unit` at once: FRONTIER_WORKERS on the frontier unit,
    one on any other (a second report comes after the first; a unit that has its
    first report is open to one more account).

    The frontier keeps FRONTIER_WORKERS even once its first report is in, although it
    then needs only one more: one account's claim (a squatter's, or a node that
    vanished holding it) must never close the frontier alone (PROTOCOL §11,
    "Claims"). Racing for its second report is settled by the frontier grace
    instead (`FRONTIER_GRACE_S`, `claim_wins`, `open_units`)."""
    return FRONTIER_WORKERS if unit == state.frontier else 1


CLAIM_RANK_DOMAIN = b"hailstone/claim-rank/v1\x00"


def claim_rank(unit: int, node: bytes, done: int = 0) -> tuple[int, bytes]:
    """Where a claim on `unit` stands when claims conflict, lowest first (PROTOCOL §8,
    "Conflicting claims"): a claim showing progress (`done` > 0) before one without,
    then SHA-256(domain ‖ unit ‖ node key). Every node computes the same order from
    the claims alone; a node's place differs from unit to unit."""
    digest = hashlib.sha256(CLAIM_RANK_DOMAIN + unit.to_bytes(8, "big") + node).digest()
    return (0 if done > 0 else 1, digest)


def _counted_claims(
    state: NetworkState, claims: Iterable[ClaimLike], now: float, max_hold: float
) -> dict[bytes, list[ClaimLike]]:
    """Per account, the claims that count (in force, not on a unit the account has
    reported, its lowest `claim_limit` units)."""
    reporters = state.reporters_by_unit
    per_account: dict[bytes, list[ClaimLike]] = {}
    for c in claims:
        if not claim_in_force(c, now, max_hold):
            continue
        # A claim is done once its account has reported the unit: from then on it
        # must not keep others from giving the second result.
        if c.account in reporters.get(c.unit, ()):
            continue
        per_account.setdefault(c.account, []).append(c)
    # Claims count per account, not per node key (one account with many delegated
    # nodes must not hold many units), and only as many as its weight allows.
    return {
        account: sorted(held, key=lambda c: (c.unit, c.node))[: claim_limit(state, account)]
        for account, held in per_account.items()
    }


def claim_wins(
    state: NetworkState,
    claims: Iterable[ClaimLike],
    unit: int,
    my_account: bytes,
    my_node: bytes,
    now: float,
    *,
    max_hold: float = MAX_CLAIM_HOLD_S,
    first_report_at: float | None = None,
) -> bool:
    """Whether our claim on `unit` may be computed now (PROTOCOL §8, "Conflicting
    claims"): every account is represented by its best-ranked counted claim on the
    unit (`claim_rank`), and ours must be our account's best and among the
    `unit_capacity` best accounts; on the frontier unit, also fewer claims first seen
    less than the frontier grace ago (`FRONTIER_GRACE_S`) may rank ahead of it than
    the reports the unit lacks, so once its first report is in one racer gives the
    second. Under a trust policy a weighted account, on the frontier unit, is
    outranked only by weighted accounts (as in next_unit).

    Our own claim must be among `claims` (in force); False otherwise. Our account's
    claims all compete here, whatever its `claim_limit` (that limit says how many
    units an account keeps others off, not how many it may compute).
    """
    claims = list(claims)
    counted = _counted_claims(state, claims, now, max_hold)
    counted[my_account] = [
        c
        for c in claims
        if c.account == my_account
        and claim_in_force(c, now, max_hold)
        and my_account not in state.reporters_by_unit.get(unit, ())
    ]
    best: dict[bytes, tuple[tuple[int, bytes], ClaimLike]] = {}
    for account, held in counted.items():
        for c in held:
            if c.unit != unit:
                continue
            rank = claim_rank(c.unit, c.node, getattr(c, "done", 0))
            if account not in best or rank < best[account][0]:
                best[account] = (rank, c)
    mine = best.get(my_account)
    if mine is None or mine[1].node != my_node:
        return False  # no claim of ours counts, or another node of our account ranks first
    if (
        unit == state.frontier
        and state.trust is not None
        and (state.account_weight(my_account) or 0) > 0
    ):
        best = {
            a: r for a, r in best.items() if a == my_account or (state.account_weight(a) or 0) > 0
        }
    ahead = [c for a, (r, c) in best.items() if a != my_account and r < mine[0]]
    if len(ahead) >= unit_capacity(state, unit):
        return False
    if unit != state.frontier:
        return True
    # The frontier: only as many fresh claims ahead of ours as reports it lacks.
    grace = _frontier_grace(max_hold)
    racers = sum(1 for c in ahead if _fresh(c, now, grace, first_report_at))
    return racers < _reports_lacking(state, unit)


def next_unit(
    state: NetworkState,
    claims: Iterable[ClaimLike],
    my_account: bytes,
    now: float,
    *,
    my_node: bytes | None = None,
    unit_limit: int | None = None,
    max_hold: float = MAX_CLAIM_HOLD_S,
    first_report_at: float | None = None,
) -> int | None:
    """The lowest unit this account should compute next, or None (the first of
    `open_units`; see there for the rules)."""
    units = open_units(
        state,
        claims,
        my_account,
        now,
        my_node=my_node,
        unit_limit=unit_limit,
        max_hold=max_hold,
        count=1,
        first_report_at=first_report_at,
    )
    return units[0] if units else None


def open_units(
    state: NetworkState,
    claims: Iterable[ClaimLike],
    my_account: bytes,
    now: float,
    *,
    my_node: bytes | None = None,
    unit_limit: int | None = None,
    max_hold: float = MAX_CLAIM_HOLD_S,
    count: int = 1,
    first_report_at: float | None = None,
    floor: int | None = None,
) -> list[int]:
    """The lowest `count` units this account may compute next, lowest first.

    A unit qualifies when it is not verified, this account has no counted report on
    it (never our own second result), and fewer other accounts than its
    `unit_capacity` hold a counted claim in force on it (`claim_in_force`: unexpired
    and held less than `max_hold`; a claim whose account has already reported the
    unit no longer counts), and no other node of this account holds one (its report
    would not count twice). Claims count per account, at most `claim_limit` of each
    account's (its lowest units). So the frontier unit stays open until
    FRONTIER_WORKERS accounts (weighted ones, under a trust policy) claim it, or as
    many as it lacks reports claimed it less than FRONTIER_GRACE_S ago (scaled with
    `max_hold`), and any other unit is open to one account at a time.
    A claim is ours when it is by `my_account` and, if `my_node` is given, by that node.

    Args:
        state: the current derived state.
        claims: current claims (expired ones are skipped here).
        my_account: this node's account key.
        now: the current time, unix seconds (claims expire at `expires_at`).
        my_node: this node's key, to tell our claims from our other nodes' claims.
        unit_limit: units at or above this index are not handed out.
        max_hold: seconds a claim counts after its `first_seen` (the simulator scales it).
        count: how many units to list at most.
        first_report_at: when the frontier unit's first counted report was made (its
            `created`), if it has one: claims first seen before it are not racers for
            its second report.
        floor: no unit below this is listed (a node catching up: the highest frontier
            its peers' heads report, PROTOCOL §8 "Catching up").

    Returns:
        Up to `count` unit indexes, ascending; empty when no unit in
        [max(frontier, floor), unit_limit) qualifies.
    """
    reporters = state.reporters_by_unit
    holders: dict[int, set[bytes]] = {}  # unit -> other accounts with a counted claim
    fresh: set[bytes] = set()  # other accounts with a fresh claim on the frontier
    ours_elsewhere: set[int] = set()  # units another node of our account holds
    grace = _frontier_grace(max_hold)
    for account, held in _counted_claims(state, claims, now, max_hold).items():
        for c in held:
            mine = c.account == my_account and (my_node is None or c.node == my_node)
            if not mine:
                holders.setdefault(c.unit, set()).add(account)
                if c.unit == state.frontier and _fresh(c, now, grace, first_report_at):
                    fresh.add(account)
            if account == my_account and not mine:
                ours_elsewhere.add(c.unit)  # one account's second report would not count
    # The frontier unit is open to FRONTIER_WORKERS accounts at once. Under a trust
    # policy a weighted account is kept off it only by weighted accounts' claims, so
    # a squatter (or a flood of fresh accounts) can never freeze the frontier.
    on_frontier = holders.get(state.frontier, set())
    if state.trust is not None and (state.account_weight(my_account) or 0) > 0:
        holders[state.frontier] = {a for a in on_frontier if (state.account_weight(a) or 0) > 0}
    blocked = {u for u, accounts in holders.items() if len(accounts) >= unit_capacity(state, u)}
    blocked |= ours_elsewhere
    # The frontier also closes once as many accounts as it lacks reports hold fresh
    # claims on it (first seen within the frontier grace): its racers are settled.
    if len(fresh & holders.get(state.frontier, set())) >= _reports_lacking(state, state.frontier):
        blocked.add(state.frontier)
    for unit, entry in state.units.items():
        if entry.status == VERIFIED or my_account in reporters[unit]:
            blocked.add(unit)
    found: list[int] = []
    unit = state.frontier if floor is None else max(state.frontier, floor)
    # Terminates: `blocked` is finite, so at most len(blocked) + count units are looked at.
    while len(found) < max(1, count):
        if unit_limit is not None and unit >= unit_limit:
            break
        if unit not in blocked:
            found.append(unit)
        unit += 1
    return found
