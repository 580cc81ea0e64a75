"""Gossip messages: record announcements, unit claims, ledger heads.

One pubsub topic per network (the network is named by its parameter set, so dev
and production nodes never mix) carries all three kinds:

    /hailstone/<network>/gossip/2

    an announcement ("t": "rec"): the record inline, or its CID
    a batch ("t": "recs"): 2 to MAX_BATCH_RECORDS records inline (re-announcements)
    a claim ("t": "claim"): a node's signed claim on a unit: expiry, blocks done
    a head ("t": "head"): a node's signed head: the CID of its sorted record list,
        and the sender's frontier (a hint for nodes still catching up)

Every message is deterministic CBOR (as in network/codec.py) of a map with a
version field "v" and a kind field "t", so a message says what it is; the kind is
never taken from the topic. (Topic version 1 had one topic per kind, `records/1`,
`claims/1`, `heads/1`, with the same messages; version 2 joined them because each
subscription costs an idle node CPU inside the IPFS library, issue #12.)
Claims and heads are signed by the node key over a domain prefix, like records.
`decode_message` returns a typed message or a Rejection and never raises.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from network import rejection as R
from network.ipfs.cid import is_valid_cid
from network.rejection import Rejection

WIRE_VERSION = 1
# Records up to this size travel inside the announcement; larger ones by CID.
INLINE_LIMIT = 4096
# No gossip message of ours is larger than this; bigger ones are dropped unread.
MAX_WIRE_BYTES = 16 * 1024
# A batch announces at most this many inline records (PROTOCOL §8, "Batches"); each
# costs its sender one message of its rate, as if it came alone.
MAX_BATCH_RECORDS = 32
# CBOR's framing of a batch: the map, its keys and values but the list's items, and
# the list header (18 bytes at most), and each item's byte-string header (3 bytes at
# most for INLINE_LIMIT or less).
_BATCH_FRAME_BYTES = 18
_BATCH_ITEM_FRAME_BYTES = 3
# Longest claim a node may make (seconds); longer expiries are cut to this. A claim
# that shows no progress lapses at its expiry, so this bounds how long a stalled (or
# squatting) claim keeps a unit closed: four default TTLs (900 s), renewed every third.
MAX_CLAIM_TTL = 3600
# `done` (blocks of the unit finished) fits any parameter set: unit_bits - block_bits
# is at most 44 (engine/params.py); the node checks it against its own set.
MAX_CLAIM_DONE = 1 << 44
# A head is an index of HEAD_PAGES page CIDs; page i lists the held record CIDs
# whose page_of() is i, so a new record changes one page, and a node can list
# about HEAD_PAGES * 17,000 records before a page reaches MAX_HEAD_BYTES.
HEAD_PAGES = 64
MAX_HEAD_BYTES = 1024 * 1024
# A bundle (the records one head page lists, PROTOCOL §8 "Bundles") holds at most this
# many bytes of records: 500-800 typical records, so a backlog arrives a page at a
# time, while re-adding a changed page's bundle stays cheap.
BUNDLE_MAX_BYTES = 256 * 1024
# No record is smaller than this (an account record, the smallest, is 180 bytes), so
# a bundle never needs more of a page's records than BUNDLE_MAX_BYTES / this.
MIN_BUNDLED_RECORD_BYTES = 128
# A head's frontier (a unit count) is at most this: 2^44 units is 2^84 integers at the
# production unit size and 2^64 at the dev size, far beyond any network's reach.
MAX_HEAD_FRONTIER = 1 << 44
# A head acknowledges the records its sender added since its previous head (its "a",
# PROTOCOL §8 "Acknowledgements"), each by ACK_ID_BYTES bytes, at most MAX_HEAD_ACKS
# of them (4 KiB: the message stays well within MAX_WIRE_BYTES).
ACK_ID_BYTES = 8
MAX_HEAD_ACKS = 512

CLAIM_DOMAIN = b"hailstone/claim/v1\x00"
HEAD_DOMAIN = b"hailstone/head/v1\x00"


# The gossip topic's version: 2 since records, claims and heads share one topic.
TOPIC_VERSION = 2
KINDS = ("records", "claims", "heads")


def gossip_topic(network: str) -> str:
    """The one gossip topic of a network (records, claims and heads)."""
    return f"/hailstone/{network}/gossip/{TOPIC_VERSION}"


def topics(network: str) -> dict[str, str]:
    """Each message kind's topic (records, claims, heads): all the one gossip topic."""
    topic = gossip_topic(network)
    return dict.fromkeys(KINDS, topic)


@dataclass(frozen=True, slots=True)
class Announcement:
    """A record announced on the records topic: inline bytes or a CID."""

    record: bytes | None = None
    cid: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Records announced together, inline (2 to MAX_BATCH_RECORDS of them)."""

    records: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Claim:
    """A node's claim on a unit until `expires` (unix seconds), `done` blocks finished.

    `done` is 0 in a first claim and grows in renewals; only a renewal that shows
    progress extends the claim (network.ledger.Ledger.put_claim).
    """

    unit: int
    node: bytes
    account: bytes
    expires: int
    signature: bytes = b""
    done: int = 0


@dataclass(frozen=True, slots=True)
class Head:
    """A node's ledger summary: `head` is the CID of its sorted list of record CIDs.

    `frontier` is the sender's frontier (its lowest unit not verified) when it sent
    the head: a node still catching up takes no new unit below the highest one its
    peers report (PROTOCOL §8, "Catching up"). 0 in a head of the first wire format.
    """

    node: bytes
    head: str
    count: int
    signature: bytes = b""
    frontier: int = 0
    # The CID of the sender's bundle index ("" when it sends none): HEAD_PAGES bundle
    # CIDs, bundle i holding the records that page i lists (PROTOCOL §8, "Bundles").
    bundles: str = ""
    # The ack ids (`ack_id`) of records the sender added since its previous head,
    # sorted, concatenated (b"" for none): whose author sees one of its waiting records
    # here stops announcing it (PROTOCOL §8, "Acknowledgements").
    acks: bytes = b""


Message = Announcement | Batch | Claim | Head


def _dumps(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


_CLAIM_KEYS = ("v", "t", "unit", "node", "account", "expires")


def _claim_body(c: Claim) -> dict:
    body = {
        "v": WIRE_VERSION,
        "t": "claim",
        "unit": c.unit,
        "node": c.node,
        "account": c.account,
        "expires": c.expires,
    }
    # done = 0 is left out: such a claim is byte-for-byte a claim of the first wire
    # format, which nodes from before the field accept (they refuse any other key).
    if c.done:
        body["done"] = c.done
    return body


_HEAD_KEYS = ("v", "t", "node", "head", "count")


def _head_body(h: Head) -> dict:
    body = {"v": WIRE_VERSION, "t": "head", "node": h.node, "head": h.head, "count": h.count}
    # frontier = 0 is left out (as a claim's done = 0): such a head is byte-for-byte a
    # head of the first wire format, so each head has exactly one encoding.
    if h.frontier:
        body["f"] = h.frontier
    # No bundles, no key: one encoding per head, and a head without bundles is a
    # head of the wire format before them.
    if h.bundles:
        body["b"] = h.bundles
    # Likewise no acknowledgements, no key.
    if h.acks:
        body["a"] = h.acks
    return body


def ack_id(cid: str) -> bytes:
    """The short name a head's acknowledgements give record `cid`: the first
    ACK_ID_BYTES of SHA-256 of the CID's text (as `page_of`, no CID parsing)."""
    return hashlib.sha256(cid.encode()).digest()[:ACK_ID_BYTES]


def encode_acks(cids: Iterable[str]) -> bytes:
    """The "a" of a head acknowledging `cids`: their ack ids sorted, without repeats,
    concatenated; past MAX_HEAD_ACKS, the lowest ids (one encoding for a set)."""
    ids = sorted({ack_id(cid) for cid in cids})[:MAX_HEAD_ACKS]
    return b"".join(ids)


def ack_ids(acks: bytes) -> set[bytes]:
    """The ack ids a well-formed "a" (decode_message checked it) lists."""
    return {acks[i : i + ACK_ID_BYTES] for i in range(0, len(acks), ACK_ID_BYTES)}


def _acks_well_formed(acks: object) -> bool:
    """1..MAX_HEAD_ACKS ids, strictly ascending: exactly encode_acks' output."""
    if not isinstance(acks, bytes) or not acks or len(acks) % ACK_ID_BYTES:
        return False
    n = len(acks) // ACK_ID_BYTES
    if n > MAX_HEAD_ACKS:
        return False
    ids = [acks[i * ACK_ID_BYTES : (i + 1) * ACK_ID_BYTES] for i in range(n)]
    return all(a < b for a, b in itertools.pairwise(ids))


def encode_announcement(record_bytes: bytes, cid: str) -> bytes:
    if len(record_bytes) <= INLINE_LIMIT:
        return _dumps({"v": WIRE_VERSION, "t": "rec", "rec": record_bytes})
    return _dumps({"v": WIRE_VERSION, "t": "rec", "cid": cid})


def encode_announcements(records: list[tuple[str, bytes]]) -> list[tuple[bytes, list[str]]]:
    """Announce (cid, record bytes) pairs in as few messages as the limits allow, in
    order: each message with the CIDs it announces. Records that fit inline go in
    batches of at most MAX_BATCH_RECORDS and MAX_WIRE_BYTES; a batch of one is the
    plain announcement, and a record too large to inline goes alone, by CID."""
    out: list[tuple[bytes, list[str]]] = []
    batch: list[tuple[str, bytes]] = []
    size = _BATCH_FRAME_BYTES

    def flush() -> None:
        nonlocal size
        if len(batch) == 1:
            out.append((encode_announcement(batch[0][1], batch[0][0]), [batch[0][0]]))
        elif batch:
            msg = _dumps({"v": WIRE_VERSION, "t": "recs", "recs": [r for _c, r in batch]})
            out.append((msg, [c for c, _r in batch]))
        batch.clear()
        size = _BATCH_FRAME_BYTES

    for cid, data in records:
        if len(data) > INLINE_LIMIT:
            flush()  # (what came before it goes first)
            out.append((encode_announcement(data, cid), [cid]))
            continue
        item = len(data) + _BATCH_ITEM_FRAME_BYTES
        if len(batch) == MAX_BATCH_RECORDS or size + item > MAX_WIRE_BYTES:
            flush()
        batch.append((cid, data))
        size += item
    flush()
    return out


def sign_claim(claim: Claim, key: SigningKey) -> bytes:
    if not 0 <= claim.done <= MAX_CLAIM_DONE:
        raise ValueError(f"claim done {claim.done} out of range")
    body = _claim_body(claim)
    sig = key.sign(CLAIM_DOMAIN + _dumps(body)).signature
    return _dumps({**body, "sig": sig})


def sign_head(head: Head, key: SigningKey) -> bytes:
    if not 0 <= head.frontier <= MAX_HEAD_FRONTIER:
        raise ValueError(f"head frontier {head.frontier} out of range")
    if head.acks and not _acks_well_formed(head.acks):
        raise ValueError("head acknowledgements not as encode_acks makes them")
    body = _head_body(head)
    sig = key.sign(HEAD_DOMAIN + _dumps(body)).signature
    return _dumps({**body, "sig": sig})


def claim_beyond_unit(claim: Claim, blocks_per_unit: int) -> Rejection | None:
    """A claim whose `done` exceeds the unit's blocks (of the receiver's parameter set)
    is refused: it would buy extensions with progress nobody can make."""
    if claim.done > blocks_per_unit:
        return Rejection(R.MALFORMED, f"claim done {claim.done} > {blocks_per_unit} blocks")
    return None


def page_of(cid: str) -> int:
    """Which head page lists `cid`."""
    return hashlib.sha256(cid.encode("ascii")).digest()[0] % HEAD_PAGES


def head_page_lists(cids: list[str]) -> list[list[str]]:
    """The CIDs each of the HEAD_PAGES pages lists, sorted."""
    pages: list[list[str]] = [[] for _ in range(HEAD_PAGES)]
    for cid in cids:
        pages[page_of(cid)].append(cid)
    return [sorted(p) for p in pages]


def head_pages(cids: list[str]) -> list[bytes]:
    """The HEAD_PAGES page objects for a set of record CIDs (each a sorted CBOR list)."""
    return [encode_cid_list(p) for p in head_page_lists(cids)]


def encode_cid_list(cids: list[str]) -> bytes:
    """A head page, or the head index itself: a sorted CBOR list of CIDs."""
    return _dumps(sorted(cids))


def decode_cid_list(data: bytes) -> list[str] | Rejection:
    """A head page or index; every entry must be a well-formed CID."""
    try:
        obj = cbor2.loads(data)
    except Exception:  # noqa: BLE001 - any decoder failure is a malformed object
        return Rejection(R.MALFORMED, "head object is not CBOR")
    if not isinstance(obj, list) or not all(isinstance(c, str) and is_valid_cid(c) for c in obj):
        return Rejection(R.MALFORMED, "head object is not a list of CIDs")
    return obj


def encode_bundle(records: list[bytes]) -> bytes:
    """A bundle: the records a head page lists (in the page's order), as a CBOR list
    of their bytes, as many as fit in BUNDLE_MAX_BYTES (the rest are fetched one by
    one). Only a shortcut: each record is still checked against the page's CIDs and
    validated as any other."""
    kept: list[bytes] = []
    size = 9  # (a CBOR array header, at most)
    for rec in records:
        size += len(rec) + 9
        if size > BUNDLE_MAX_BYTES:
            break
        kept.append(rec)
    return _dumps(kept)


def decode_bundle(data: bytes) -> list[bytes] | Rejection:
    try:
        obj = cbor2.loads(data)
    except Exception:  # noqa: BLE001 - any decoder failure is a malformed object
        return Rejection(R.MALFORMED, "bundle is not CBOR")
    if not isinstance(obj, list) or not all(isinstance(r, bytes) for r in obj):
        return Rejection(R.MALFORMED, "bundle is not a list of records")
    return obj


def encode_head_index(page_cids: list[str]) -> bytes:
    """The head object: the page CIDs in page order (not sorted)."""
    if len(page_cids) != HEAD_PAGES:
        raise ValueError(f"a head index lists exactly {HEAD_PAGES} pages")
    return _dumps(list(page_cids))


def decode_head_index(data: bytes) -> list[str] | Rejection:
    try:
        obj = cbor2.loads(data)
    except Exception:  # noqa: BLE001 - any decoder failure is a malformed object
        return Rejection(R.MALFORMED, "head index is not CBOR")
    if (
        not isinstance(obj, list)
        or len(obj) != HEAD_PAGES
        or not all(isinstance(c, str) and is_valid_cid(c) for c in obj)
    ):
        return Rejection(R.MALFORMED, f"head index is not a list of {HEAD_PAGES} CIDs")
    return obj


def _verify(domain: bytes, body: dict, node: bytes, sig: Any) -> bool:
    if not isinstance(sig, bytes) or len(sig) != 64:
        return False
    try:
        VerifyKey(node).verify(domain + _dumps(body), sig)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def _is_key(v: Any) -> bool:
    return isinstance(v, bytes) and len(v) == 32


def decode_message(data: bytes) -> Message | Rejection:
    """Parse one gossip payload. Signatures of claims and heads are checked here."""
    if len(data) > MAX_WIRE_BYTES:
        return Rejection(R.OVERSIZED, f"gossip message of {len(data)} bytes")
    try:
        obj = cbor2.loads(data)
    except Exception:  # noqa: BLE001 - any decoder failure is malformed input
        return Rejection(R.MALFORMED, "gossip message is not CBOR")
    if not isinstance(obj, dict) or obj.get("v") != WIRE_VERSION:
        return Rejection(R.WRONG_VERSION, "unknown gossip message version")
    kind = obj.get("t")
    if kind == "rec":
        rec, cid = obj.get("rec"), obj.get("cid")
        if set(obj) == {"v", "t", "rec"} and isinstance(rec, bytes):
            return Announcement(record=rec)
        if set(obj) == {"v", "t", "cid"} and isinstance(cid, str) and is_valid_cid(cid):
            return Announcement(cid=cid)
        return Rejection(R.MALFORMED, "bad announcement")
    if kind == "recs":
        # A batch holds what single announcements would (records of INLINE_LIMIT or
        # less), at least two (one goes as "rec": one encoding per announcement).
        recs = obj.get("recs")
        if (
            set(obj) == {"v", "t", "recs"}
            and isinstance(recs, list)
            and 2 <= len(recs) <= MAX_BATCH_RECORDS
            and all(isinstance(r, bytes) and len(r) <= INLINE_LIMIT for r in recs)
        ):
            return Batch(tuple(recs))
        return Rejection(R.MALFORMED, "bad batch")
    if kind == "claim":
        # "done" is optional (a claim without it has done = 0); when present it is
        # 1..MAX_CLAIM_DONE, so each claim has exactly one encoding.
        keys = (*_CLAIM_KEYS, "done") if "done" in obj else _CLAIM_KEYS
        body = {k: obj.get(k) for k in keys}
        done = body.get("done", 0)
        ok = (
            set(obj) == set(body) | {"sig"}
            and isinstance(body["unit"], int)
            and 0 <= body["unit"] < 2**63
            and _is_key(body["node"])
            and _is_key(body["account"])
            and isinstance(body["expires"], int)
            and 0 <= body["expires"] < 2**63
            and isinstance(done, int)
            and not isinstance(done, bool)
            and (0 < done <= MAX_CLAIM_DONE if "done" in body else True)
        )
        if not ok:
            return Rejection(R.MALFORMED, "bad claim")
        if not _verify(CLAIM_DOMAIN, body, body["node"], obj["sig"]):
            return Rejection(R.BAD_SIGNATURE, "claim signature does not verify")
        return Claim(body["unit"], body["node"], body["account"], body["expires"], obj["sig"], done)
    if kind == "head":
        # "f" (the sender's frontier) is optional, as a claim's "done": absent means
        # 0, and when present it is 1..MAX_HEAD_FRONTIER, so one encoding per head.
        # "b" (the bundle index's CID) is optional too; when present, a valid CID;
        # and "a" (acknowledgements): when present, what encode_acks makes.
        keys = _HEAD_KEYS + tuple(k for k in ("f", "b", "a") if k in obj)
        body = {k: obj.get(k) for k in keys}
        frontier = body.get("f", 0)
        bundles = body.get("b", "")
        acks = body.get("a", b"")
        ok = (
            set(obj) == set(body) | {"sig"}
            and _is_key(body["node"])
            and isinstance(body["head"], str)
            and is_valid_cid(body["head"])
            and isinstance(body["count"], int)
            and 0 <= body["count"] < 2**40
            and isinstance(frontier, int)
            and not isinstance(frontier, bool)
            and (0 < frontier <= MAX_HEAD_FRONTIER if "f" in body else True)
            and (isinstance(bundles, str) and is_valid_cid(bundles) if "b" in body else True)
            and (_acks_well_formed(acks) if "a" in body else True)
        )
        if not ok:
            return Rejection(R.MALFORMED, "bad head")
        if not _verify(HEAD_DOMAIN, body, body["node"], obj["sig"]):
            return Rejection(R.BAD_SIGNATURE, "head signature does not verify")
        return Head(
            body["node"], body["head"], body["count"], obj["sig"], frontier, bundles, acks
        )
    return Rejection(R.MALFORMED, "unknown gossip message type")
