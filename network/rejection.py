"""Verdicts as values: what parsing and validation return instead of raising.

Reason codes are part of the protocol (docs/PROTOCOL.md, "Rejection reason
codes"): the ledger counts rejections by code and the app maps each code to a
sentence, so codes are stable lowercase identifiers and never change meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Parse-level codes (network/codec.py).
OVERSIZED = "oversized"
MALFORMED = "malformed"
NONCANONICAL = "noncanonical"
UNKNOWN_KIND = "unknown_kind"
WRONG_VERSION = "wrong_version"
BAD_FIELD = "bad_field"
WRONG_SIGNER = "wrong_signer"
BAD_SIGNATURE = "bad_signature"

# Validation codes (network/validate.py).
FROM_FUTURE = "from_future"
NO_DELEGATION = "no_delegation"
NODE_REVOKED = "node_revoked"
DELEGATION_EXPIRED = "delegation_expired"
UNKNOWN_PARAMS = "unknown_params"
TESTED_MISMATCH = "tested_mismatch"
ODD_STEPS_OUT_OF_BAND = "odd_steps_out_of_band"
BAD_TOTALS = "bad_totals"
BAD_CANDIDATE = "bad_candidate"
CANDIDATE_FALLS = "candidate_falls"
BAD_PROOF = "bad_proof"
UNKNOWN_WORK = "unknown_work"

# Gossip-level codes (network/node.py).
RATE_LIMITED = "rate_limited"
INBOX_FULL = "inbox_full"

REASON_CODES = (
    OVERSIZED,
    MALFORMED,
    NONCANONICAL,
    UNKNOWN_KIND,
    WRONG_VERSION,
    BAD_FIELD,
    WRONG_SIGNER,
    BAD_SIGNATURE,
    FROM_FUTURE,
    NO_DELEGATION,
    NODE_REVOKED,
    DELEGATION_EXPIRED,
    UNKNOWN_PARAMS,
    TESTED_MISMATCH,
    ODD_STEPS_OUT_OF_BAND,
    BAD_TOTALS,
    BAD_CANDIDATE,
    CANDIDATE_FALLS,
    BAD_PROOF,
    UNKNOWN_WORK,
    RATE_LIMITED,
    INBOX_FULL,
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused.

    Attributes:
        reason_code: one of REASON_CODES (stable, counted by the ledger).
        message: one human-readable line with the detail.
    """

    reason_code: str
    message: str

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"{self.reason_code}: {self.message}"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record that passed validation.

    Attributes:
        record: the validated signed record (network.records.SignedRecord).
        cid: its content identifier.
    """

    record: Any
    cid: str

    def __bool__(self) -> bool:
        return True
