"""Typed, immutable protocol records.

Each record checks its own field types, sizes and ranges when it is built, so
a record object that exists is well-formed; whether it is *true* (signature,
delegation, arithmetic) is network/validate.py's job. Only network/codec.py
turns records into bytes and back (docs/PROTOCOL.md, "Records").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import cbor2

from engine.evidence import UnitResult
from engine.params import Params
from network.usernames import UsernameError, normalize

KEY_BYTES = 32
SIGNATURE_BYTES = 64
HASH_BYTES = 32

# Protocol time bounds: nothing predates 2024-01-01, nothing is past year 36812.
MIN_CREATED = 1_704_067_200
MAX_CREATED = (1 << 40) - 1

# Candidates listed inline in a work record (each is re-checked with up to exact_step_bound
# exact steps by every validating node). A unit may hold any number: the record then
# carries the count, the first MAX_CANDIDATES inline and the CID of the full list.
MAX_CANDIDATES = 16
MAX_SEEN_COMMITS = 8  # other accounts' commits a reveal lists (commit-reveal pairing)
MAX_BIG_UINT = (1 << 512) - 1  # max_value/max_n/candidates: far beyond any reachable peak
MAX_COUNT = (1 << 64) - 1  # tested, odd_steps, overflows, unit, block
MAX_COMPUTE_MS = (1 << 48) - 1
MAX_BACKEND_CHARS = 16
MAX_PARAMS_NAME_CHARS = 32
MAX_CID_CHARS = 128
MAX_USERNAME_CHARS = 64
MAX_PROOF_HASHES = 48  # a Merkle path over up to 2**48 leaves
# Blocks one spot-check record may name: the default share (2 %) of a production unit's
# 4096 blocks is 82, so one record per checked work; 128 keep the record under 1 KiB.
MAX_SPOT_BLOCKS = 128


def _check_bytes(name: str, value: object, size: int) -> None:
    if type(value) is not bytes or len(value) != size:
        raise ValueError(f"{name} must be {size} bytes")


def _check_uint(name: str, value: object, maximum: int) -> None:
    if type(value) is not int or not 0 <= value <= maximum:
        raise ValueError(f"{name} must be an integer in 0..{maximum}")


def _check_text(name: str, value: object, max_chars: int, *, printable_ascii: bool) -> None:
    if type(value) is not str or not 1 <= len(value) <= max_chars:
        raise ValueError(f"{name} must be text of 1..{max_chars} characters")
    if printable_ascii and not all(0x21 <= ord(c) <= 0x7E for c in value):
        raise ValueError(f"{name} must be printable ASCII without spaces")


def _check_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise ValueError(f"{name} must be true or false")


def _check_created(value: object) -> None:
    if type(value) is not int or not MIN_CREATED <= value <= MAX_CREATED:
        raise ValueError(f"created must be unix seconds in {MIN_CREATED}..{MAX_CREATED}")


def _check_increasing(
    name: str, value: object, check_item: Callable[[object], None], max_len: int, min_len: int = 0
) -> None:
    """`value` is a tuple of min_len..max_len items, each passing `check_item`, strictly
    increasing (sorted, no repeats: a set has one spelling, so a record has one CID)."""
    if type(value) is not tuple or not min_len <= len(value) <= max_len:
        raise ValueError(f"{name} must be a tuple of {min_len}..{max_len} items")
    for item in value:
        check_item(item)
    if list(value) != sorted(set(value)):
        raise ValueError(f"{name} must be strictly increasing (sorted, distinct)")


def _check_params(value: object) -> None:
    if type(value) is not Params:
        raise ValueError("params must be an engine Params")
    _check_text("params.name", value.name, MAX_PARAMS_NAME_CHARS, printable_ascii=True)
    for field in ("version", "unit_bits", "block_bits", "sieve_k"):
        _check_uint(f"params.{field}", getattr(value, field), MAX_COUNT)
    _check_uint("params.start", value.start, MAX_BIG_UINT)
    _check_uint("params.step_bound", value.step_bound, MAX_COUNT)
    _check_uint("params.exact_step_bound", value.exact_step_bound, MAX_COUNT)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountRecord:
    """A person's account: its public key and the username it claims.

    Signed by the account key itself.
    """

    KIND: ClassVar[str] = "account"

    account: bytes
    username: str
    created: int

    def __post_init__(self) -> None:
        _check_bytes("account", self.account, KEY_BYTES)
        _check_text("username", self.username, MAX_USERNAME_CHARS, printable_ascii=False)
        try:
            normalize(self.username)
        except UsernameError as exc:
            raise ValueError(f"username: {exc}") from None
        _check_created(self.created)

    @property
    def signer(self) -> bytes:
        return self.account


@dataclass(frozen=True, slots=True, kw_only=True)
class DelegationRecord:
    """An account authorising a node key, or revoking it (revoked=True).

    Signed by the account key. A delegation authorises work created from
    `created` on, until `expires` (0: no expiry). A revocation (revoked=True,
    `expires` 0) is permanent: the node's work created at or after the
    revocation's `created` is refused; re-authorising needs a new node key.
    """

    KIND: ClassVar[str] = "delegation"

    account: bytes
    node: bytes
    created: int
    expires: int = 0
    revoked: bool = False

    def __post_init__(self) -> None:
        _check_bytes("account", self.account, KEY_BYTES)
        _check_bytes("node", self.node, KEY_BYTES)
        if self.node == self.account:
            raise ValueError("node key must differ from the account key")
        _check_created(self.created)
        _check_uint("expires", self.expires, MAX_CREATED)
        _check_bool("revoked", self.revoked)
        if self.expires and self.expires <= self.created:
            raise ValueError("expires must be 0 or after created")
        if self.revoked and self.expires:
            raise ValueError("a revocation has no expiry")

    @property
    def signer(self) -> bytes:
        return self.account


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkRecord:
    """A node's claim to have verified one work unit.

    Signed by the node key; credit goes to `account`. The totals are the
    unit's (engine.evidence.UnitResult), `root` the Merkle root of its block
    leaves, and `evidence_cid` optionally names the leaves object that
    spot-checkers fetch.
    """

    KIND: ClassVar[str] = "work"

    params: Params
    unit: int
    root: bytes
    tested: int
    odd_steps: int
    max_value: int
    max_n: int
    overflows: int
    candidates: tuple[int, ...] = ()
    extra_candidates: int = 0  # candidates beyond the inline MAX_CANDIDATES
    candidates_cid: str | None = None
    backend: str
    compute_ms: int
    node: bytes
    account: bytes
    created: int
    evidence_cid: str | None = None
    nonce: bytes = bytes(HASH_BYTES)
    seen_commits: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_params(self.params)
        _check_uint("unit", self.unit, MAX_COUNT)
        _check_bytes("root", self.root, HASH_BYTES)
        for field in ("tested", "odd_steps", "overflows"):
            _check_uint(field, getattr(self, field), MAX_COUNT)
        _check_uint("max_value", self.max_value, MAX_BIG_UINT)
        _check_uint("max_n", self.max_n, MAX_BIG_UINT)
        _check_increasing(
            "candidates",
            self.candidates,
            lambda c: _check_uint("candidate", c, MAX_BIG_UINT),
            MAX_CANDIDATES,
        )
        _check_uint("extra_candidates", self.extra_candidates, MAX_COUNT)
        if self.extra_candidates:
            # Bounded record, unbounded report: the first MAX_CANDIDATES inline, all of
            # them in a content-addressed list.
            if len(self.candidates) != MAX_CANDIDATES or self.candidates_cid is None:
                raise ValueError(
                    f"more than {MAX_CANDIDATES} candidates: list the first {MAX_CANDIDATES} "
                    "and name the full list by candidates_cid"
                )
        elif self.candidates_cid is not None:
            raise ValueError("candidates_cid is only for more than MAX_CANDIDATES candidates")
        if self.candidates_cid is not None:
            _check_text("candidates_cid", self.candidates_cid, MAX_CID_CHARS, printable_ascii=True)
        _check_text("backend", self.backend, MAX_BACKEND_CHARS, printable_ascii=True)
        _check_uint("compute_ms", self.compute_ms, MAX_COMPUTE_MS)
        _check_bytes("node", self.node, KEY_BYTES)
        _check_bytes("account", self.account, KEY_BYTES)
        _check_created(self.created)
        if self.evidence_cid is not None:
            _check_text("evidence_cid", self.evidence_cid, MAX_CID_CHARS, printable_ascii=True)
        _check_bytes("nonce", self.nonce, HASH_BYTES)
        _check_increasing(
            "seen_commits",
            self.seen_commits,
            lambda c: _check_text("seen commit", c, MAX_CID_CHARS, printable_ascii=True),
            MAX_SEEN_COMMITS,
        )

    @property
    def signer(self) -> bytes:
        return self.node

    @property
    def candidate_count(self) -> int:
        """How many candidates the unit holds (inline plus those only in the full list)."""
        return len(self.candidates) + self.extra_candidates

    @property
    def has_candidates(self) -> bool:
        """True if the unit holds a number that did not fall below itself (never verified)."""
        return self.candidate_count > 0

    @property
    def seconds(self) -> float:
        """Compute time in seconds (stored as whole milliseconds)."""
        return self.compute_ms / 1000

    @staticmethod
    def from_unit_result(
        result: UnitResult,
        params: Params,
        unit: int,
        node: bytes,
        account: bytes,
        created: int,
        evidence_cid: str | None = None,
        *,
        candidates_cid: str | None = None,
        nonce: bytes = bytes(HASH_BYTES),
        seen_commits: tuple[str, ...] = (),
    ) -> WorkRecord:
        """The work record for `result`, which must be exactly unit `unit` of `params`.

        Args:
            candidates_cid: the CID of `candidate_list_bytes(result.candidates)`; needed
                (and only allowed) when the unit holds more than MAX_CANDIDATES candidates.
            nonce: the commit-reveal nonce (network.trust.commitment).
            seen_commits: other accounts' commit CIDs on this unit known at reveal time.

        Raises:
            ValueError: if the result does not match the unit or the params, or a long
                candidate list has no candidates_cid.
        """
        lo, hi = params.unit_range(unit)
        if (result.start, result.end) != (lo, hi):
            raise ValueError(f"result covers [{result.start}, {result.end}), unit is [{lo}, {hi})")
        if (result.params_version, result.block_bits, result.sieve_k) != (
            params.version,
            params.block_bits,
            params.sieve_k,
        ):
            raise ValueError("result was computed with other parameters")
        all_candidates = tuple(sorted(set(result.candidates)))
        return WorkRecord(
            params=params,
            unit=unit,
            root=result.root,
            tested=result.tested,
            odd_steps=result.odd_steps,
            max_value=result.max_value,
            max_n=result.max_n,
            overflows=result.overflows,
            candidates=all_candidates[:MAX_CANDIDATES],
            extra_candidates=max(0, len(all_candidates) - MAX_CANDIDATES),
            candidates_cid=candidates_cid if len(all_candidates) > MAX_CANDIDATES else None,
            backend=result.backend[:MAX_BACKEND_CHARS],
            compute_ms=max(0, round(result.seconds * 1000)),
            node=node,
            account=account,
            created=created,
            evidence_cid=evidence_cid,
            nonce=nonce,
            seen_commits=tuple(sorted(set(seen_commits))),
        )


def candidate_list_bytes(candidates: tuple[int, ...]) -> bytes:
    """The content-addressed object listing every candidate of a unit.

    Deterministic CBOR of the sorted list of distinct integers (bignums as tag 2),
    so its CID is reproducible; `WorkRecord.candidates_cid` names it.
    """
    return cbor2.dumps(sorted(set(candidates)), canonical=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitRecord:
    """A commitment to a unit's root before it is revealed (commit-reveal).

    `commitment` = network.trust.commitment(unit, root, node, nonce). The reveal is
    the work record with that root and nonce; it counts only once this commit is in
    the record set and its pairing rules hold (docs/PROTOCOL.md, "Trust").
    Signed by the node key.
    """

    KIND: ClassVar[str] = "commit"

    unit: int
    commitment: bytes
    node: bytes
    account: bytes
    created: int

    def __post_init__(self) -> None:
        _check_uint("unit", self.unit, MAX_COUNT)
        _check_bytes("commitment", self.commitment, HASH_BYTES)
        _check_bytes("node", self.node, KEY_BYTES)
        _check_bytes("account", self.account, KEY_BYTES)
        _check_created(self.created)

    @property
    def signer(self) -> bytes:
        return self.node


# A re-check iterates a candidate exactly with at least this many times the unit's
# exact_step_bound ("a far larger bound", PROTOCOL §2).
RECHECK_FACTOR = 16
MAX_BEACON_LISTED = 48  # commits and reveals one beacon round attests to (keeps it under 4 KiB)


@dataclass(frozen=True, slots=True, kw_only=True)
class BeaconRecord:
    """One round of the draw beacon: a random value and the commits and reveals it saw first.

    Published by a node of a configured beacon account (a root of trust,
    network.trust.TrustPolicy.beacons). Listing a commit proves the commit existed
    before `value` was public, so a draw seeded by `value` was unpredictable to
    whoever made the commit; the round that lists a reveal dates it, so a commit
    first listed after a reveal of the same root is a possible copy (docs/PROTOCOL.md
    §11). Signed by the node key.
    """

    KIND: ClassVar[str] = "beacon"

    round: int
    value: bytes
    listed: tuple[str, ...] = ()
    node: bytes
    account: bytes
    created: int

    def __post_init__(self) -> None:
        _check_uint("round", self.round, MAX_COUNT)
        _check_bytes("value", self.value, HASH_BYTES)
        _check_increasing(
            "listed",
            self.listed,
            lambda c: _check_text("listed CID", c, MAX_CID_CHARS, printable_ascii=True),
            MAX_BEACON_LISTED,
        )
        _check_bytes("node", self.node, KEY_BYTES)
        _check_bytes("account", self.account, KEY_BYTES)
        _check_created(self.created)

    @property
    def signer(self) -> bytes:
        return self.node


@dataclass(frozen=True, slots=True, kw_only=True)
class RecheckRecord:
    """A node iterated a reported candidate exactly with a far larger bound.

    `fell` with `steps`: the candidate fell below itself after exactly `steps` odd
    steps (validation repeats that, so the claim is proven). Not `fell`: it still
    stood after `bound` odd steps (`steps` is 0); a signed observation, raised to the
    user. Signed by the node key.
    """

    KIND: ClassVar[str] = "recheck"

    work_cid: str
    candidate: int
    bound: int
    fell: bool
    steps: int
    node: bytes
    account: bytes
    created: int

    def __post_init__(self) -> None:
        _check_text("work_cid", self.work_cid, MAX_CID_CHARS, printable_ascii=True)
        _check_uint("candidate", self.candidate, MAX_BIG_UINT)
        _check_uint("bound", self.bound, MAX_COUNT)
        _check_bool("fell", self.fell)
        _check_uint("steps", self.steps, MAX_COUNT)
        if self.fell != (self.steps > 0) or self.steps > self.bound:
            raise ValueError("steps is 1..bound when the candidate fell, else 0")
        _check_bytes("node", self.node, KEY_BYTES)
        _check_bytes("account", self.account, KEY_BYTES)
        _check_created(self.created)

    @property
    def signer(self) -> bytes:
        return self.node


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRecord:
    """A spot-check: a node recomputed one block of a work record.

    Signed by the checking node. `leaf` is the recomputed leaf, `match` says
    whether it equals the leaf the work record's evidence committed to.
    `unavailable` says the checker could not fetch the evidence within its deadline
    (then `match` is false): withheld evidence is a fault, not a silent retry.
    """

    KIND: ClassVar[str] = "check"

    work_cid: str
    block: int
    leaf: bytes
    match: bool
    node: bytes
    account: bytes
    created: int
    unavailable: bool = False

    def __post_init__(self) -> None:
        _check_text("work_cid", self.work_cid, MAX_CID_CHARS, printable_ascii=True)
        _check_uint("block", self.block, MAX_COUNT)
        _check_bytes("leaf", self.leaf, HASH_BYTES)
        _check_bool("match", self.match)
        _check_bytes("node", self.node, KEY_BYTES)
        _check_bytes("account", self.account, KEY_BYTES)
        _check_created(self.created)
        _check_bool("unavailable", self.unavailable)
        if self.unavailable and self.match:
            raise ValueError("an unavailable-evidence check cannot match")

    @property
    def signer(self) -> bytes:
        return self.node


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotCheckRecord:
    """A spot-check of several blocks of one work record, all of which matched.

    Signed by the checking node. `blocks` (strictly increasing) are the blocks it
    recomputed; each gave the leaf the work's evidence commits to. A matching leaf is
    the work's own, which anyone holding the evidence could copy, so the record carries
    none: it states which blocks were checked, no more. A block that does not match
    is published as a DisputeRecord instead, and never listed here. One record per
    checked work, where one CheckRecord per block made check records 79 % of a swarm's
    records (bench/swarm.py, 32 nodes).
    """

    KIND: ClassVar[str] = "spotcheck"

    work_cid: str
    blocks: tuple[int, ...]
    node: bytes
    account: bytes
    created: int

    def __post_init__(self) -> None:
        _check_text("work_cid", self.work_cid, MAX_CID_CHARS, printable_ascii=True)
        _check_increasing(
            "blocks",
            self.blocks,
            lambda b: _check_uint("block", b, MAX_COUNT),
            MAX_SPOT_BLOCKS,
            min_len=1,
        )
        _check_bytes("node", self.node, KEY_BYTES)
        _check_bytes("account", self.account, KEY_BYTES)
        _check_created(self.created)

    @property
    def signer(self) -> bytes:
        return self.node


@dataclass(frozen=True, slots=True, kw_only=True)
class DisputeRecord:
    """A node reports that one block of a work record does not recompute.

    Signed by the reporting node. `recomputed_leaf` is the reporter's leaf;
    `claimed_leaf` and `proof` (the Merkle audit path, bottom-up) are the
    worker's published leaf and its path to the work record's root, when the
    reporter has them; with a claimed leaf the two leaves must differ.
    """

    KIND: ClassVar[str] = "dispute"

    work_cid: str
    block: int
    recomputed_leaf: bytes
    claimed_leaf: bytes | None = None
    proof: tuple[bytes, ...] = ()
    node: bytes
    account: bytes
    created: int

    def __post_init__(self) -> None:
        _check_text("work_cid", self.work_cid, MAX_CID_CHARS, printable_ascii=True)
        _check_uint("block", self.block, MAX_COUNT)
        _check_bytes("recomputed_leaf", self.recomputed_leaf, HASH_BYTES)
        if self.claimed_leaf is not None:
            _check_bytes("claimed_leaf", self.claimed_leaf, HASH_BYTES)
            if self.claimed_leaf == self.recomputed_leaf:
                raise ValueError("a dispute needs a claimed leaf that differs from the recomputed")
        if type(self.proof) is not tuple or len(self.proof) > MAX_PROOF_HASHES:
            raise ValueError(f"proof must be a tuple of at most {MAX_PROOF_HASHES} hashes")
        for h in self.proof:
            _check_bytes("proof hash", h, HASH_BYTES)
        if self.proof and self.claimed_leaf is None:
            raise ValueError("a proof needs the claimed leaf it proves")
        _check_bytes("node", self.node, KEY_BYTES)
        _check_bytes("account", self.account, KEY_BYTES)
        _check_created(self.created)

    @property
    def signer(self) -> bytes:
        return self.node


Record = (
    AccountRecord
    | DelegationRecord
    | WorkRecord
    | CommitRecord
    | BeaconRecord
    | RecheckRecord
    | CheckRecord
    | SpotCheckRecord
    | DisputeRecord
)
RECORD_TYPES: dict[str, type] = {
    t.KIND: t
    for t in (
        AccountRecord,
        DelegationRecord,
        WorkRecord,
        CommitRecord,
        BeaconRecord,
        RecheckRecord,
        CheckRecord,
        SpotCheckRecord,
        DisputeRecord,
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRecord:
    """A record with its signer's public key and Ed25519 signature.

    Build one with network.codec.sign(); network.codec.parse() returns one
    only if the signature verifies.
    """

    record: Record
    signer: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if type(self.record) not in RECORD_TYPES.values():
            raise ValueError("record must be one of the record kinds")
        _check_bytes("signer", self.signer, KEY_BYTES)
        _check_bytes("signature", self.signature, SIGNATURE_BYTES)

    @property
    def kind(self) -> str:
        return self.record.KIND
