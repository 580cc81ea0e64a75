"""CIDs computed without IPFS: golden vectors and canonical parsing."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.ipfs.cid import (
    CidError,
    cid_for_bytes,
    cid_from_digest,
    digest_from_cid,
    is_valid_cid,
    verify_bytes,
)

# Pinned from kubo: the embedded node serves b"hello" under this CID
# (tests/test_ipfs_embedded.py::test_known_vector_is_served_under_the_computed_cid),
# and `ipfs block put --cid-codec=raw` / `ipfs add --cid-version=1` print the same.
HELLO_CID = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
EMPTY_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_golden_vectors() -> None:
    assert cid_for_bytes(b"hello") == HELLO_CID
    assert cid_for_bytes(b"") == EMPTY_CID


def test_digest_round_trip_of_golden_vector() -> None:
    assert digest_from_cid(HELLO_CID) == hashlib.sha256(b"hello").digest()
    assert verify_bytes(HELLO_CID, b"hello")
    assert not verify_bytes(HELLO_CID, b"hello!")


@given(st.binary(max_size=512))
def test_cid_shape_and_round_trip(data: bytes) -> None:
    cid = cid_for_bytes(data)
    assert cid.startswith("bafkrei")
    assert len(cid) == 59
    assert cid == cid.lower()
    assert digest_from_cid(cid) == hashlib.sha256(data).digest()
    assert cid_from_digest(hashlib.sha256(data).digest()) == cid
    assert is_valid_cid(cid)
    assert verify_bytes(cid, data)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX",  # CIDv0
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb
        HELLO_CID.upper(),
        "B" + HELLO_CID[1:],
        HELLO_CID[:-1],  # truncated
        HELLO_CID + "a",  # too long
        HELLO_CID[:-1] + "r",  # same digest bits, non-canonical trailing bits
        "b!!!!",
        "z" + HELLO_CID[1:],
    ],
)
def test_rejects_other_cids(bad: str) -> None:
    assert not is_valid_cid(bad)
    with pytest.raises(CidError):
        digest_from_cid(bad)
    assert not verify_bytes(bad, b"hello")


def test_non_string_is_rejected() -> None:
    assert not is_valid_cid(b"bafkrei")  # type: ignore[arg-type]
