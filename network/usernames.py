"""Usernames: normalisation, and who owns a name when several accounts claim it.

Rules (docs/PROTOCOL.md, "Usernames"):

1. normalise: NFKC, then casefold, then NFKC again (casefolding can produce
   sequences that are not NFKC-stable), then strip leading/trailing whitespace;
2. the result must match ``[a-z0-9_.-]{3,32}``;
3. an account's current claim is its account record with the greatest
   ``created`` (ties: the smallest record CID);
4. among current claims of the same normalised name the owner is the claim
   with the smallest ``created``, ties broken by the smallest record CID
   (plain string comparison of the CID text);
5. everyone else is displayed as ``name#xxxx``, the first four hex digits of
   the account public key.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MIN_LENGTH = 3
MAX_LENGTH = 32
# Raw claims longer than this are refused before normalising (NFKC can expand).
MAX_RAW_CHARS = 64
SUFFIX_HEX_DIGITS = 4

_ALLOWED = re.compile(r"[a-z0-9_.\-]+")


class UsernameError(ValueError):
    """A username that cannot be normalised into the allowed form."""


def normalize(raw: str) -> str:
    """The normalised form of `raw`.

    Raises:
        UsernameError: when the result is too short, too long or has a
            character outside [a-z0-9_.-]; the message says which.
    """
    if not isinstance(raw, str):
        raise UsernameError("a username must be text")
    if len(raw) > MAX_RAW_CHARS:
        raise UsernameError(f"a username has at most {MAX_LENGTH} characters")
    name = unicodedata.normalize("NFKC", raw)
    name = unicodedata.normalize("NFKC", name.casefold()).strip()
    if len(name) < MIN_LENGTH:
        raise UsernameError(f"a username has at least {MIN_LENGTH} characters")
    if len(name) > MAX_LENGTH:
        raise UsernameError(f"a username has at most {MAX_LENGTH} characters")
    if not _ALLOWED.fullmatch(name):
        bad = sorted({c for c in name if not _ALLOWED.fullmatch(c)})
        raise UsernameError(
            f"a username may use only a-z, 0-9, '_', '.' and '-' (not {''.join(bad)!r})"
        )
    return name


def is_valid(raw: str) -> bool:
    """True if `raw` normalises to an allowed username."""
    try:
        normalize(raw)
    except UsernameError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Claim:
    """One account record's claim on a name.

    Attributes:
        account: the claiming account public key (32 bytes).
        username: the raw username in the record.
        created: the record's creation time (unix seconds).
        cid: the account record's CID.
    """

    account: bytes
    username: str
    created: int
    cid: str

    @property
    def normalized(self) -> str:
        return normalize(self.username)


def replaces(created: int, cid: str, current_created: int, current_cid: str) -> bool:
    """Rule 3: whether a claim (`created`, `cid`) replaces an account's current one."""
    return created > current_created or (created == current_created and cid < current_cid)


def owner_order(created: int, cid: str) -> tuple[int, str]:
    """Rule 4: current claims of one name in this order; the first owns it."""
    return (created, cid)


def current_claims(claims: Iterable[Claim]) -> dict[bytes, Claim]:
    """Each account's current claim: latest `created`, ties by smallest CID."""
    best: dict[bytes, Claim] = {}
    for c in claims:
        old = best.get(c.account)
        if old is None or replaces(c.created, c.cid, old.created, old.cid):
            best[c.account] = c
    return best


def owners(claims: Iterable[Claim]) -> dict[str, bytes]:
    """Normalised name -> owning account, by the rule in the module doc. (The node
    keeps the same rule one record at a time: network/directory.py.)"""
    winners: dict[str, Claim] = {}
    for c in current_claims(claims).values():
        name = c.normalized
        old = winners.get(name)
        if old is None or owner_order(c.created, c.cid) < owner_order(old.created, old.cid):
            winners[name] = c
    return {name: c.account for name, c in winners.items()}


def display_name(account: bytes, username: str, owner_map: Mapping[str, bytes]) -> str:
    """How to show `account` claiming `username`: bare if it owns the name, else suffixed."""
    name = normalize(username)
    if owner_map.get(name) == account:
        return name
    return f"{name}#{account.hex()[:SUFFIX_HEX_DIGITS]}"


def is_taken(username: str, account: bytes, owner_map: Mapping[str, bytes]) -> bool:
    """True if another account already owns `username` (the wizard refuses it)."""
    owner = owner_map.get(normalize(username))
    return owner is not None and owner != account
