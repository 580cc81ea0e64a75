"""Content identifiers for Hailstone objects, computed without IPFS.

Every object Hailstone stores in IPFS is a single raw block, so its CID is a pure
function of its bytes: CIDv1, codec raw (0x55), multihash sha2-256, written in
multibase base32 lower-case ('b' prefix), e.g. ``bafkrei...``.
"""

from __future__ import annotations

import base64
import functools
import hashlib

CID_VERSION = 1
CODEC_RAW = 0x55
MULTIHASH_SHA2_256 = 0x12
SHA2_256_LENGTH = 32

# varint(1) varint(0x55) varint(0x12) varint(32); every value is < 0x80, so each
# varint is the single byte itself.
_RAW_SHA256_PREFIX = bytes([CID_VERSION, CODEC_RAW, MULTIHASH_SHA2_256, SHA2_256_LENGTH])
_BINARY_LENGTH = len(_RAW_SHA256_PREFIX) + SHA2_256_LENGTH
# Conversions remembered (each way; about 200 bytes an entry). The standard library's
# base32 is written in Python: with every head page's CIDs checked on each read, it was
# a tenth of a busy swarm node's Python time (bench/swarm.py with py-spy --gil), while
# a node meets the same few thousand CIDs again and again.
CID_CACHE_SIZE = 16384


class CidError(ValueError):
    """A string is not a CIDv1 raw sha2-256 base32 CID."""


def cid_for_bytes(data: bytes) -> str:
    """Return the CIDv1 (raw, sha2-256, base32) of ``data``.

    Args:
        data: The exact bytes of the object.

    Returns:
        The CID string, ``"b"`` + lower-case unpadded base32 of the binary CID.
    """
    return cid_from_digest(hashlib.sha256(data).digest())


def digest_from_cid(cid: str) -> bytes:
    """Return the sha2-256 digest inside a raw CIDv1 string.

    Args:
        cid: A CID as made by :func:`cid_for_bytes`.

    Returns:
        The 32-byte digest.

    Raises:
        CidError: ``cid`` is not a base32 CIDv1 with codec raw and sha2-256.
    """
    if not isinstance(cid, str) or not cid.startswith("b") or len(cid) > 100:
        raise CidError(f"not a base32 CIDv1 (expected 'bafkrei...'): {cid!r:.80}")
    return _digest_of(cid)


@functools.lru_cache(maxsize=CID_CACHE_SIZE)
def _digest_of(cid: str) -> bytes:
    """digest_from_cid past its type check (an error is raised each time, never kept)."""
    body = cid[1:]
    if body != body.lower():
        raise CidError(f"CID must be lower-case base32: {cid!r:.80}")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (ValueError, TypeError) as exc:
        raise CidError(f"CID is not valid base32: {cid!r:.80}") from exc
    if len(raw) != _BINARY_LENGTH or raw[: len(_RAW_SHA256_PREFIX)] != _RAW_SHA256_PREFIX:
        raise CidError(f"only CIDv1 raw sha2-256 CIDs are used by Hailstone: {cid!r:.80}")
    digest = raw[len(_RAW_SHA256_PREFIX) :]
    # Reject non-canonical spellings (trailing bits set) so one object has one CID.
    if cid_from_digest(digest) != cid:
        raise CidError(f"CID is not in canonical form: {cid!r:.80}")
    return digest


def cid_from_digest(digest: bytes) -> str:
    """Return the raw CIDv1 string for a sha2-256 ``digest``."""
    if len(digest) != SHA2_256_LENGTH:
        raise CidError("a sha2-256 digest has 32 bytes")
    return _cid_of(bytes(digest))


@functools.lru_cache(maxsize=CID_CACHE_SIZE)
def _cid_of(digest: bytes) -> str:
    return "b" + base64.b32encode(_RAW_SHA256_PREFIX + digest).decode("ascii").rstrip("=").lower()


def is_valid_cid(cid: str) -> bool:
    """Return True when ``cid`` is a canonical raw sha2-256 CIDv1 string."""
    try:
        digest_from_cid(cid)
    except CidError:
        return False
    return True


def verify_bytes(cid: str, data: bytes) -> bool:
    """Return True when ``data`` hashes to ``cid``."""
    try:
        return hashlib.sha256(data).digest() == digest_from_cid(cid)
    except CidError:
        return False
