"""Gossip messages: encoding, signatures, limits, head pages."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from network import rejection as R
from network import wire
from network.ipfs.cid import cid_for_bytes
from network.rejection import Rejection

KEY = SigningKey(bytes(range(32)))
NODE = bytes(KEY.verify_key)
ACCOUNT = bytes(32)
CID = cid_for_bytes(b"a record")


def test_announcements_inline_small_records_and_name_large_ones() -> None:
    small = wire.decode_message(wire.encode_announcement(b"x" * 100, CID))
    assert small == wire.Announcement(record=b"x" * 100)
    big = wire.decode_message(wire.encode_announcement(b"x" * (wire.INLINE_LIMIT + 1), CID))
    assert big == wire.Announcement(cid=CID)


def test_records_announced_together_go_in_batches_within_the_limits() -> None:
    def records(n: int, size: int) -> list[tuple[str, bytes]]:
        out = []
        for i in range(n):
            data = i.to_bytes(4, "big") * (size // 4)
            out.append((cid_for_bytes(data), data))
        return out

    small = records(70, 300)
    messages = wire.encode_announcements(small)
    assert [len(cids) for _m, cids in messages] == [32, 32, 6]  # MAX_BATCH_RECORDS each
    assert [c for _m, cids in messages for c in cids] == [c for c, _d in small]  # in order
    got = [wire.decode_message(m) for m, _c in messages]
    assert [r for b in got for r in b.records] == [d for _c, d in small]
    # Records of the inline limit: as many as fit in a message, never more.
    full = records(10, wire.INLINE_LIMIT)
    messages = wire.encode_announcements(full)
    assert [len(cids) for _m, cids in messages] == [3, 3, 3, 1]
    assert all(len(m) <= wire.MAX_WIRE_BYTES for m, _c in messages)
    assert wire.decode_message(messages[-1][0]) == wire.Announcement(record=full[-1][1])
    # One record is the plain announcement; one too large to inline goes alone by CID.
    big = (CID, b"x" * (wire.INLINE_LIMIT + 1))
    messages = wire.encode_announcements([small[0], big, small[1], small[2]])
    assert messages[0] == (wire.encode_announcement(small[0][1], small[0][0]), [small[0][0]])
    assert wire.decode_message(messages[1][0]) == wire.Announcement(cid=CID)
    assert wire.decode_message(messages[2][0]) == wire.Batch((small[1][1], small[2][1]))
    assert wire.encode_announcements([]) == []


@pytest.mark.parametrize(
    "recs",
    [
        [b"one record"],  # one goes as "rec": one encoding per announcement
        [b"r"] * (wire.MAX_BATCH_RECORDS + 1),
        [b"r", "not bytes"],
        [b"r", b"x" * (wire.INLINE_LIMIT + 1)],
        "not a list",
    ],
)
def test_a_batch_out_of_its_limits_is_refused(recs) -> None:
    data = cbor2.dumps({"v": 1, "t": "recs", "recs": recs}, canonical=True)
    assert wire.decode_message(data) == Rejection(R.MALFORMED, "bad batch")
    extra = cbor2.dumps({"v": 1, "t": "recs", "recs": [b"a", b"b"], "x": 1}, canonical=True)
    assert wire.decode_message(extra) == Rejection(R.MALFORMED, "bad batch")


@pytest.mark.parametrize("bad_cid", ["head:x", "head:peer:bafy", "Qm" + "a" * 44, "", "b" * 300])
def test_an_announced_cid_must_be_a_real_cid(bad_cid: str) -> None:
    # A crafted CID once made a fetcher thread take it for a head job and die.
    data = cbor2.dumps({"v": 1, "t": "rec", "cid": bad_cid}, canonical=True)
    verdict = wire.decode_message(data)
    assert isinstance(verdict, Rejection) and verdict.reason_code == R.MALFORMED


def test_claims_round_trip_and_forgeries_fail() -> None:
    claim = wire.Claim(7, NODE, ACCOUNT, 1_800_000_000)
    data = wire.sign_claim(claim, KEY)
    got = wire.decode_message(data)
    assert isinstance(got, wire.Claim) and (got.unit, got.node, got.expires) == (7, NODE, 1_800_000_000)
    other = SigningKey(bytes(32))
    forged = wire.sign_claim(claim, other)  # signed by a key other than the named node
    assert wire.decode_message(forged).reason_code == R.BAD_SIGNATURE
    obj = cbor2.loads(data)
    obj["unit"] = 8  # tampered after signing
    assert wire.decode_message(cbor2.dumps(obj, canonical=True)).reason_code == R.BAD_SIGNATURE


def signed_body(body: dict, domain: bytes = wire.CLAIM_DOMAIN, key: SigningKey = KEY) -> bytes:
    """A claim (or with `domain`, a head) signed over any body: what a hand-made or
    older node would send."""
    sig = key.sign(domain + cbor2.dumps(body, canonical=True)).signature
    return cbor2.dumps({**body, "sig": sig}, canonical=True)


def _body(**extra) -> dict:
    return {"v": 1, "t": "claim", "unit": 7, "node": NODE, "account": ACCOUNT,
            "expires": 1_800_000_000, **extra}


def test_claims_carry_blocks_done_and_round_trip() -> None:
    for done in (1, 255, 4096, wire.MAX_CLAIM_DONE):
        got = wire.decode_message(wire.sign_claim(wire.Claim(7, NODE, ACCOUNT, 99, done=done), KEY))
        assert isinstance(got, wire.Claim) and (got.unit, got.expires, got.done) == (7, 99, done)
    # Progress is signed: raising it after signing breaks the signature.
    obj = cbor2.loads(wire.sign_claim(wire.Claim(7, NODE, ACCOUNT, 99, done=3), KEY))
    obj["done"] = 4000
    assert wire.decode_message(cbor2.dumps(obj, canonical=True)).reason_code == R.BAD_SIGNATURE


def test_a_claim_without_done_is_the_old_format_and_reads_as_done_zero() -> None:
    # A claim from a node of the first wire format (no "done" key) still decodes.
    old = signed_body(_body())
    got = wire.decode_message(old)
    assert isinstance(got, wire.Claim) and got.done == 0 and got.unit == 7
    # And ours with done = 0 is exactly that message, so old nodes accept it.
    assert wire.sign_claim(wire.Claim(7, NODE, ACCOUNT, 1_800_000_000), KEY) == old


@pytest.mark.parametrize(
    "done", [0, -1, wire.MAX_CLAIM_DONE + 1, 2**64, True, 1.5, "3", b"\x01", None, [1]]
)
def test_a_claims_done_is_bound_checked(done) -> None:
    # done = 0 must be left out (one encoding per claim); the rest are out of range or
    # not integers. Signed correctly, so only the bounds refuse them.
    verdict = wire.decode_message(signed_body(_body(done=done)))
    assert isinstance(verdict, Rejection) and verdict.reason_code == R.MALFORMED
    with pytest.raises(ValueError):
        wire.sign_claim(wire.Claim(7, NODE, ACCOUNT, 99, done=-1), KEY)


def test_a_claims_done_beyond_the_units_blocks_is_refused() -> None:
    claim = wire.Claim(7, NODE, ACCOUNT, 99, done=4097)
    assert wire.claim_beyond_unit(claim, 4096).reason_code == R.MALFORMED
    assert wire.claim_beyond_unit(wire.Claim(7, NODE, ACCOUNT, 99, done=4096), 4096) is None


def test_heads_round_trip_and_need_a_real_cid() -> None:
    head = wire.Head(NODE, CID, 12)
    got = wire.decode_message(wire.sign_head(head, KEY))
    assert isinstance(got, wire.Head) and (got.head, got.count) == (CID, 12)
    bad = wire.sign_head(wire.Head(NODE, "head:x:y", 1), KEY)
    assert wire.decode_message(bad).reason_code == R.MALFORMED


def _head_body(**extra) -> dict:
    return {"v": 1, "t": "head", "node": NODE, "head": CID, "count": 12, **extra}


def test_heads_carry_the_senders_frontier_and_round_trip() -> None:
    for frontier in (1, 16, 10**6, wire.MAX_HEAD_FRONTIER):
        head = wire.Head(NODE, CID, 12, frontier=frontier)
        got = wire.decode_message(wire.sign_head(head, KEY))
        assert isinstance(got, wire.Head)
        assert (got.head, got.count, got.frontier) == (CID, 12, frontier)
    assert cbor2.loads(wire.sign_head(wire.Head(NODE, CID, 12, frontier=5), KEY))["f"] == 5
    # The frontier is signed: raising it after signing breaks the signature.
    obj = cbor2.loads(wire.sign_head(wire.Head(NODE, CID, 12, frontier=3), KEY))
    obj["f"] = 4000
    assert wire.decode_message(cbor2.dumps(obj, canonical=True)).reason_code == R.BAD_SIGNATURE


def test_a_head_without_a_frontier_is_the_old_format_and_reads_as_frontier_zero() -> None:
    old = signed_body(_head_body(), wire.HEAD_DOMAIN)
    got = wire.decode_message(old)
    assert isinstance(got, wire.Head) and got.frontier == 0 and got.count == 12
    # Ours at frontier 0 is exactly that message, so nodes from before the field accept it.
    assert wire.sign_head(wire.Head(NODE, CID, 12), KEY) == old


@pytest.mark.parametrize(
    "frontier", [0, -1, wire.MAX_HEAD_FRONTIER + 1, 2**64, True, 1.5, "3", b"\x01", None, [1]]
)
def test_a_heads_frontier_is_bound_checked(frontier) -> None:
    # frontier = 0 must be left out (one encoding per head); the rest are out of range
    # or not integers. Signed correctly, so only the bounds refuse them.
    verdict = wire.decode_message(signed_body(_head_body(f=frontier), wire.HEAD_DOMAIN))
    assert isinstance(verdict, Rejection) and verdict.reason_code == R.MALFORMED


def test_sign_head_refuses_a_frontier_out_of_range() -> None:
    for frontier in (-1, wire.MAX_HEAD_FRONTIER + 1):
        with pytest.raises(ValueError):
            wire.sign_head(wire.Head(NODE, CID, 12, frontier=frontier), KEY)


def test_heads_name_their_bundles_signed_and_only_as_a_real_cid() -> None:
    bundles = cid_for_bytes(b"a bundle index")
    head = wire.Head(NODE, CID, 12, frontier=3, bundles=bundles)
    got = wire.decode_message(wire.sign_head(head, KEY))
    assert isinstance(got, wire.Head) and (got.bundles, got.frontier) == (bundles, 3)
    # Without bundles the key is left out: the head is that of the format before them.
    assert "b" not in cbor2.loads(wire.sign_head(wire.Head(NODE, CID, 12, frontier=3), KEY))
    obj = cbor2.loads(wire.sign_head(head, KEY))
    obj["b"] = cid_for_bytes(b"another")
    assert wire.decode_message(cbor2.dumps(obj, canonical=True)).reason_code == R.BAD_SIGNATURE
    for bad in ("", "not a cid", 5, b"\x01", None):
        verdict = wire.decode_message(signed_body(_head_body(b=bad), wire.HEAD_DOMAIN))
        assert isinstance(verdict, Rejection) and verdict.reason_code == R.MALFORMED


def test_heads_acknowledge_records_by_short_ids_signed_and_in_one_encoding() -> None:
    cids = [cid_for_bytes(b"record %d" % i) for i in range(5)]
    acks = wire.encode_acks([*cids, cids[0]])  # (a repeat counts once)
    assert len(acks) == 5 * wire.ACK_ID_BYTES
    got = wire.decode_message(wire.sign_head(wire.Head(NODE, CID, 12, acks=acks), KEY))
    assert isinstance(got, wire.Head) and got.acks == acks
    assert wire.ack_ids(got.acks) == {wire.ack_id(c) for c in cids}
    assert wire.ack_id(CID) not in wire.ack_ids(got.acks)
    # Without acknowledgements the key is left out: the head of the format before them.
    assert "a" not in cbor2.loads(wire.sign_head(wire.Head(NODE, CID, 12), KEY))
    assert wire.encode_acks([]) == b""
    # They are signed: an acknowledgement added after signing breaks the signature.
    obj = cbor2.loads(wire.sign_head(wire.Head(NODE, CID, 12, acks=acks), KEY))
    obj["a"] = wire.encode_acks([*cids, CID])
    assert wire.decode_message(cbor2.dumps(obj, canonical=True)).reason_code == R.BAD_SIGNATURE


def test_a_head_acknowledges_at_most_its_limit_keeping_the_lowest_ids() -> None:
    cids = [cid_for_bytes(b"record %d" % i) for i in range(wire.MAX_HEAD_ACKS + 40)]
    acks = wire.encode_acks(cids)
    assert len(acks) == wire.MAX_HEAD_ACKS * wire.ACK_ID_BYTES
    assert wire.ack_ids(acks) == set(sorted(wire.ack_id(c) for c in cids)[: wire.MAX_HEAD_ACKS])
    head = wire.sign_head(wire.Head(NODE, CID, 12, acks=acks), KEY)
    assert len(head) < wire.MAX_WIRE_BYTES and isinstance(wire.decode_message(head), wire.Head)


def _ids(*values: int) -> bytes:
    return b"".join(v.to_bytes(wire.ACK_ID_BYTES, "big") for v in values)


@pytest.mark.parametrize(
    "acks",
    [
        b"",  # none: the key is left out instead
        _ids(1)[:-1],  # not whole ids
        _ids(2, 1),  # not sorted
        _ids(1, 1),  # a repeat
        _ids(*range(1, wire.MAX_HEAD_ACKS + 2)),  # past the limit
        "0102030405060708",
        5,
        None,
        [_ids(1)],
    ],
)
def test_a_heads_acknowledgements_are_refused_unless_as_encode_acks_makes_them(acks) -> None:
    verdict = wire.decode_message(signed_body(_head_body(a=acks), wire.HEAD_DOMAIN))
    assert isinstance(verdict, Rejection) and verdict.reason_code == R.MALFORMED
    if isinstance(acks, bytes) and acks:
        with pytest.raises(ValueError):
            wire.sign_head(wire.Head(NODE, CID, 12, acks=acks), KEY)


def test_a_bundle_holds_what_fits_and_junk_is_refused() -> None:
    records = [i.to_bytes(2, "big") * 500 for i in range(400)]  # 400 KB: more than fits
    data = wire.encode_bundle(records)
    assert len(data) <= wire.BUNDLE_MAX_BYTES
    got = wire.decode_bundle(data)
    assert 200 < len(got) < 400 and got == records[: len(got)]
    for junk in (b"", b"\xff", cbor2.dumps({"a": 1}), cbor2.dumps([b"x", "y"])):
        assert wire.decode_bundle(junk).reason_code == R.MALFORMED


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({"v": 2, "t": "rec", "rec": b"x"}),
        cbor2.dumps({"v": 1, "t": "nope"}),
        cbor2.dumps({"v": 1, "t": "rec", "rec": b"x", "extra": 1}),
        b"\xa1" + b"\x00" * (wire.MAX_WIRE_BYTES + 1),
    ],
)
def test_malformed_messages_are_rejected(data: bytes) -> None:
    assert isinstance(wire.decode_message(data), Rejection)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decode_never_raises(data: bytes) -> None:
    verdict = wire.decode_message(data)
    assert isinstance(verdict, Rejection | wire.Announcement | wire.Claim | wire.Head)


def test_head_pages_partition_the_cids_and_change_one_page_per_record() -> None:
    cids = [cid_for_bytes(bytes([i, j])) for i in range(20) for j in range(20)]
    pages = wire.head_pages(cids)
    assert len(pages) == wire.HEAD_PAGES
    listed = [c for p in pages for c in wire.decode_cid_list(p)]
    assert sorted(listed) == sorted(cids)
    more = wire.head_pages([*cids, cid_for_bytes(b"new")])
    assert sum(a != b for a, b in zip(pages, more, strict=True)) == 1
    index = wire.encode_head_index([cid_for_bytes(p) for p in pages])
    assert wire.decode_head_index(index) == [cid_for_bytes(p) for p in pages]
    assert isinstance(wire.decode_head_index(cbor2.dumps([CID])), Rejection)
    assert isinstance(wire.decode_cid_list(cbor2.dumps(["head:x"])), Rejection)


def test_one_versioned_topic_carries_every_kind_and_messages_say_their_kind() -> None:
    # Topic version 2: records, claims and heads share one topic per network, so the
    # kind must come from the message itself ("t"), never from the topic.
    topics = wire.topics("dev")
    assert set(topics) == {"records", "claims", "heads"}
    assert set(topics.values()) == {wire.gossip_topic("dev")} == {"/hailstone/dev/gossip/2"}
    assert wire.gossip_topic("dev") != wire.gossip_topic("production")
    claim = wire.sign_claim(wire.Claim(7, NODE, ACCOUNT, 100), KEY)
    head = wire.sign_head(wire.Head(NODE, CID, 3), KEY)
    messages = (wire.encode_announcement(b"r", CID), claim, head)
    kinds = [type(wire.decode_message(m)) for m in messages]
    assert kinds == [wire.Announcement, wire.Claim, wire.Head]
    untyped = cbor2.dumps({"v": wire.WIRE_VERSION, "unit": 7}, canonical=True)
    assert wire.decode_message(untyped) == Rejection(R.MALFORMED, "unknown gossip message type")
