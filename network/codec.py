"""The one place that turns records into bytes and back.

Wire form (docs/PROTOCOL.md, "Records"): the deterministic CBOR encoding
(RFC 8949 §4.2.1 core deterministic rules, produced by ``cbor2.dumps(...,
canonical=True)``) of the array

    [kind: text, version: uint, body: map, signer: bytes(32), signature: bytes(64)]

where body maps each field name (text, all shorter than 24 bytes, so
cbor2's length-first key order equals RFC 8949's bytewise order) to its value.
Integers of any size are CBOR integers: major type 0 below 2**64, otherwise
tag 2 (unsigned bignum) with the minimal big-endian byte string. No floats, no
other tags, no indefinite lengths. The signature is Ed25519 over

    domain(kind) || version as 2-byte big-endian || deterministic CBOR of body

with domain(kind) = b"hailstone/<kind>/v1\\x00". A record's identity is the
CIDv1 (raw, sha2-256) of its wire bytes.

`parse` accepts exactly the bytes `encode` produces: it decodes, re-encodes
and compares, so every record has one byte string and one CID.
"""

from __future__ import annotations

from typing import Any

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from engine.params import PROTOCOL_VERSION, Params
from network import rejection as R
from network.ipfs.cid import cid_for_bytes
from network.records import (
    RECORD_TYPES,
    AccountRecord,
    BeaconRecord,
    CheckRecord,
    CommitRecord,
    DelegationRecord,
    DisputeRecord,
    RecheckRecord,
    Record,
    SignedRecord,
    SpotCheckRecord,
    WorkRecord,
)
from network.rejection import Rejection

DOMAINS: dict[str, bytes] = {kind: f"hailstone/{kind}/v1\x00".encode() for kind in RECORD_TYPES}

# Size caps in bytes of the whole wire form, per kind.
SIZE_CAPS: dict[str, int] = {
    AccountRecord.KIND: 1024,
    DelegationRecord.KIND: 512,
    WorkRecord.KIND: 4096,
    CommitRecord.KIND: 512,
    BeaconRecord.KIND: 4096,
    RecheckRecord.KIND: 1024,
    CheckRecord.KIND: 1024,
    SpotCheckRecord.KIND: 1024,
    DisputeRecord.KIND: 4096,
}
MAX_RECORD_BYTES = max(SIZE_CAPS.values())

# Field value types on the wire.
_UINT, _B32, _TEXT, _BOOL, _OPT_TEXT, _OPT_B32, _LIST_UINT, _LIST_B32, _PARAMS, _LIST_TEXT = range(
    10
)

SCHEMAS: dict[str, dict[str, int]] = {
    AccountRecord.KIND: {"account": _B32, "username": _TEXT, "created": _UINT},
    DelegationRecord.KIND: {
        "account": _B32,
        "node": _B32,
        "created": _UINT,
        "expires": _UINT,
        "revoked": _BOOL,
    },
    WorkRecord.KIND: {
        "params": _PARAMS,
        "unit": _UINT,
        "root": _B32,
        "tested": _UINT,
        "odd_steps": _UINT,
        "max_value": _UINT,
        "max_n": _UINT,
        "overflows": _UINT,
        "candidates": _LIST_UINT,
        "extra_candidates": _UINT,
        "candidates_cid": _OPT_TEXT,
        "backend": _TEXT,
        "compute_ms": _UINT,
        "node": _B32,
        "account": _B32,
        "created": _UINT,
        "evidence_cid": _OPT_TEXT,
        "nonce": _B32,
        "seen_commits": _LIST_TEXT,
    },
    CommitRecord.KIND: {
        "unit": _UINT,
        "commitment": _B32,
        "node": _B32,
        "account": _B32,
        "created": _UINT,
    },
    BeaconRecord.KIND: {
        "round": _UINT,
        "value": _B32,
        "listed": _LIST_TEXT,
        "node": _B32,
        "account": _B32,
        "created": _UINT,
    },
    RecheckRecord.KIND: {
        "work_cid": _TEXT,
        "candidate": _UINT,
        "bound": _UINT,
        "fell": _BOOL,
        "steps": _UINT,
        "node": _B32,
        "account": _B32,
        "created": _UINT,
    },
    CheckRecord.KIND: {
        "work_cid": _TEXT,
        "block": _UINT,
        "leaf": _B32,
        "match": _BOOL,
        "node": _B32,
        "account": _B32,
        "created": _UINT,
        "unavailable": _BOOL,
    },
    SpotCheckRecord.KIND: {
        "work_cid": _TEXT,
        "blocks": _LIST_UINT,
        "node": _B32,
        "account": _B32,
        "created": _UINT,
    },
    DisputeRecord.KIND: {
        "work_cid": _TEXT,
        "block": _UINT,
        "recomputed_leaf": _B32,
        "claimed_leaf": _OPT_B32,
        "proof": _LIST_B32,
        "node": _B32,
        "account": _B32,
        "created": _UINT,
    },
}
PARAMS_FIELDS = (
    "name",
    "version",
    "start",
    "unit_bits",
    "block_bits",
    "sieve_k",
    "step_bound",
    "exact_step_bound",
)
_MAX_DEPTH = 4  # envelope > body > params map / list > leaf value


def _cbor(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def body_of(record: Record) -> dict[str, Any]:
    """The body map of `record`: field name -> plain CBOR-ready value."""
    out: dict[str, Any] = {}
    for name, kind in SCHEMAS[record.KIND].items():
        value = getattr(record, name)
        if kind == _PARAMS:
            value = {f: getattr(value, f) for f in PARAMS_FIELDS}
        elif kind in (_LIST_UINT, _LIST_B32, _LIST_TEXT):
            value = list(value)
        out[name] = value
    return out


def signed_bytes(record: Record, version: int = PROTOCOL_VERSION) -> bytes:
    """What the signer signs: domain prefix, 2-byte version, canonical body."""
    return DOMAINS[record.KIND] + version.to_bytes(2, "big") + _cbor(body_of(record))


def sign(record: Record, key: SigningKey) -> SignedRecord:
    """Sign `record` with `key`, which must be the record's designated signer.

    Raises:
        ValueError: if `key` is not the key the record names as its signer.
    """
    signer = bytes(key.verify_key)
    if signer != record.signer:
        raise ValueError(f"a {record.KIND} record must be signed by its own {record.KIND} signer")
    signature = key.sign(signed_bytes(record)).signature
    return SignedRecord(record=record, signer=signer, signature=signature)


def verify_signature(signed: SignedRecord, version: int = PROTOCOL_VERSION) -> bool:
    """True if the signature is the signer's over the record's signed bytes."""
    try:
        VerifyKey(signed.signer).verify(signed_bytes(signed.record, version), signed.signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def encode(signed: SignedRecord) -> bytes:
    """The wire bytes of a signed record.

    Raises:
        ValueError: if the encoding exceeds the kind's size cap.
    """
    data = _cbor(
        [signed.kind, PROTOCOL_VERSION, body_of(signed.record), signed.signer, signed.signature]
    )
    if len(data) > SIZE_CAPS[signed.kind]:
        raise ValueError(f"{signed.kind} record is {len(data)} bytes, cap {SIZE_CAPS[signed.kind]}")
    return data


def record_cid(item: bytes | SignedRecord) -> str:
    """The CID of a record's wire bytes (or of a signed record, encoded first)."""
    data = encode(item) if isinstance(item, SignedRecord) else bytes(item)
    return cid_for_bytes(data)


def _plain(obj: Any, depth: int) -> bool:
    """True if obj uses only the CBOR types the protocol allows."""
    if depth > _MAX_DEPTH:
        return False
    t = type(obj)
    if t in (int, bytes, str, bool) or obj is None:
        return True
    if t is list:
        return all(_plain(x, depth + 1) for x in obj)
    if t is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in obj.items())
    return False


def _field(kind: int, value: Any) -> Any:
    """Wire value -> record field value; raises ValueError on a wrong type."""
    if kind == _UINT:
        if type(value) is not int or value < 0:
            raise ValueError("expected an unsigned integer")
    elif kind == _B32:
        if type(value) is not bytes:
            raise ValueError("expected a byte string")
    elif kind == _TEXT:
        if type(value) is not str:
            raise ValueError("expected text")
    elif kind == _BOOL:
        if type(value) is not bool:
            raise ValueError("expected a boolean")
    elif kind == _OPT_TEXT:
        if value is not None and type(value) is not str:
            raise ValueError("expected text or null")
    elif kind == _OPT_B32:
        if value is not None and type(value) is not bytes:
            raise ValueError("expected a byte string or null")
    elif kind == _LIST_UINT:
        if type(value) is not list or any(type(x) is not int or x < 0 for x in value):
            raise ValueError("expected a list of unsigned integers")
        value = tuple(value)
    elif kind == _LIST_B32:
        if type(value) is not list or any(type(x) is not bytes for x in value):
            raise ValueError("expected a list of byte strings")
        value = tuple(value)
    elif kind == _LIST_TEXT:
        if type(value) is not list or any(type(x) is not str for x in value):
            raise ValueError("expected a list of text strings")
        value = tuple(value)
    elif kind == _PARAMS:
        if type(value) is not dict or set(value) != set(PARAMS_FIELDS):
            raise ValueError(f"expected a map with exactly {', '.join(PARAMS_FIELDS)}")
        if type(value["name"]) is not str:
            raise ValueError("params.name must be text")
        for f in PARAMS_FIELDS[1:]:
            if type(value[f]) is not int or value[f] < 0:
                raise ValueError(f"params.{f} must be an unsigned integer")
        value = Params(**value)
    return value


def record_from_body(kind: str, body: dict[str, Any]) -> Record:
    """Build the typed record of `kind` from a decoded body map.

    Raises:
        ValueError: on a missing, extra, mistyped or out-of-range field.
    """
    schema = SCHEMAS[kind]
    if set(body) != set(schema):
        missing = sorted(set(schema) - set(body))
        extra = sorted(set(body) - set(schema))
        raise ValueError(f"{kind} fields: missing {missing}, unexpected {extra}")
    values = {}
    for name, ftype in schema.items():
        try:
            values[name] = _field(ftype, body[name])
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return RECORD_TYPES[kind](**values)


def parse(data: bytes) -> SignedRecord | Rejection:
    """Decode and check wire bytes: a signed record whose signature verifies, or why not.

    Never raises: anything unexpected becomes Rejection("malformed", ...).
    """
    try:
        return _parse(data)
    except Exception as exc:  # the parser's contract is total
        return Rejection(R.MALFORMED, f"unreadable record ({type(exc).__name__})")


def _parse(data: bytes) -> SignedRecord | Rejection:
    if not isinstance(data, bytes | bytearray | memoryview):
        return Rejection(R.MALFORMED, "a record is a byte string")
    data = bytes(data)
    if len(data) > MAX_RECORD_BYTES:
        return Rejection(
            R.OVERSIZED, f"{len(data)} bytes, no record kind allows more than {MAX_RECORD_BYTES}"
        )
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types on bad input
        return Rejection(R.MALFORMED, f"not CBOR ({type(exc).__name__})")
    if not _plain(obj, 0):
        return Rejection(R.MALFORMED, "uses CBOR types outside the protocol")
    if not (
        type(obj) is list
        and len(obj) == 5
        and type(obj[0]) is str
        and type(obj[1]) is int
        and type(obj[2]) is dict
        and type(obj[3]) is bytes
        and type(obj[4]) is bytes
    ):
        return Rejection(
            R.MALFORMED, "not a record envelope [kind, version, body, signer, signature]"
        )
    kind, version, body, signer, signature = obj
    if _cbor(obj) != data:
        return Rejection(R.NONCANONICAL, "not in deterministic CBOR encoding")
    if kind not in SCHEMAS:
        return Rejection(R.UNKNOWN_KIND, f"unknown record kind {kind[:32]!r}")
    if len(data) > SIZE_CAPS[kind]:
        return Rejection(R.OVERSIZED, f"{kind} record is {len(data)} bytes, cap {SIZE_CAPS[kind]}")
    if version != PROTOCOL_VERSION:
        return Rejection(
            R.WRONG_VERSION, f"protocol version {version}, this node speaks {PROTOCOL_VERSION}"
        )
    try:
        record = record_from_body(kind, body)
        signed = SignedRecord(record=record, signer=signer, signature=signature)
    except (ValueError, TypeError) as exc:
        return Rejection(R.BAD_FIELD, f"{kind} record: {exc}")
    if signed.signer != record.signer:
        return Rejection(R.WRONG_SIGNER, f"{kind} record signed by a key other than its signer")
    if not verify_signature(signed):
        return Rejection(R.BAD_SIGNATURE, f"{kind} record signature does not verify")
    return signed
