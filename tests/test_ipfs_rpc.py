"""The kubo RPC backend: pure encoders always, a live daemon when one is named.

Set HAILSTONE_KUBO_API (e.g. /ip4/127.0.0.1/tcp/5001) to run the live tests against
a kubo daemon started with pubsub enabled.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.ipfs import (
    IpfsError,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsUnavailable,
    cid_for_bytes,
    open_node,
)
from network.ipfs.rpc import (
    KuboRpcNode,
    RpcSubscription,
    decode_multibase,
    decode_topic,
    encode_topic,
    parse_pubsub_message,
    parse_version,
)

KUBO_API = os.environ.get("HAILSTONE_KUBO_API", "")


class _StreamingNode:
    """What an RpcSubscription needs of its node: a `pubsub/sub` stream of decoded
    JSON objects (here a burst, then nothing until closed)."""

    def __init__(self, burst: list[dict]) -> None:
        self.burst = burst
        self.opened = 0
        self.closed = threading.Event()

    def _open_stream(self, topic: str) -> Iterator[dict]:
        self.opened += 1
        if self.opened == 1:
            return iter(self.burst)
        return self._quiet()

    def _quiet(self) -> Iterator[dict]:
        self.closed.wait(5.0)
        return
        yield  # (a generator that yields nothing)

    def _forget_subscription(self, sub: object) -> None:
        self.closed.set()


def _wire(sender: str, data: bytes) -> dict:
    return {"from": sender, "data": "m" + base64.b64encode(data).decode("ascii")}


def test_the_subscription_serves_senders_in_turn_and_counts_what_it_drops(monkeypatch) -> None:
    """The RPC backend's inbox is the embedded one's (network/ipfs/inbox.py): a peer's
    message does not wait behind a flooder's backlog, and the flooder's excess is
    dropped and counted, not held."""
    monkeypatch.setattr("network.ipfs.rpc.SUB_QUEUE_MAX", 20)
    burst = [_wire("flooder", i.to_bytes(2, "big")) for i in range(100)]
    burst.append(_wire("honest", b"hello"))
    node = _StreamingNode(burst)
    sub = RpcSubscription(node, "t")  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 10.0
        dropped: dict[str, int] = {}
        while sum(dropped.values()) < 81:
            assert time.monotonic() < deadline, "the burst was never read"
            for peer, n in sub.take_dropped().items():
                dropped[peer] = dropped.get(peer, 0) + n
            time.sleep(0.01)
        first = [sub.next_message(1.0), sub.next_message(1.0)]
        assert b"hello" in [m.data for m in first if m is not None]
        rest = []
        while (m := sub.next_message(0.0)) is not None:
            rest.append(m)
        assert len(rest) == 18 and dropped == {"flooder": 81}
        # the flooder's newest made it, in order
        assert [m.data for m in first + rest if m.from_peer == "flooder"] == [
            i.to_bytes(2, "big") for i in range(81, 100)
        ]
    finally:
        sub.close()
    with pytest.raises(IpfsUnavailable):
        sub.next_message(0.1)


# ----------------------------------------------------------------- encoders


def test_encode_topic_golden() -> None:
    # Same strings kubo's CLI sends (`ipfs pubsub pub test` -> arg=udGVzdA).
    assert encode_topic("test") == "udGVzdA"
    assert encode_topic("hailstone/v1/announce") == "uaGFpbHN0b25lL3YxL2Fubm91bmNl"
    # base64url alphabet ('-', '_'), never '+', '/' or padding.
    assert encode_topic("ü/€") == "uw7wv4oKs"
    assert encode_topic("\xfb\xff") == "uw7vDvw"


@given(st.text(min_size=1, max_size=200))
def test_topic_round_trip(topic: str) -> None:
    encoded = encode_topic(topic)
    assert encoded.startswith("u")
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    assert decode_topic(encoded) == topic


@given(st.binary(max_size=300))
def test_decode_multibase_all_kubo_bases(data: bytes) -> None:
    url = base64.urlsafe_b64encode(data).decode()
    std = base64.b64encode(data).decode()
    b32 = base64.b32encode(data).decode()
    assert decode_multibase("u" + url.rstrip("=")) == data
    assert decode_multibase("U" + url) == data
    assert decode_multibase("m" + std.rstrip("=")) == data
    assert decode_multibase("M" + std) == data
    assert decode_multibase("b" + b32.rstrip("=").lower()) == data
    assert decode_multibase("B" + b32) == data
    assert decode_multibase("f" + data.hex()) == data


@pytest.mark.parametrize("bad", ["", "x123", "u!!", "m***", "fzz", "u a"])
def test_decode_multibase_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_multibase(bad)


def test_parse_kubo_message() -> None:
    # Shape of a `pubsub/sub` line from kubo >= 0.11.
    line = {
        "from": "12D3KooWLDm4aqt8DLgzmGvXXJJZfbPyHzHdfQUW9yE2rrcLd6yj",
        "data": "uaGVsbG8",
        "seqno": "uF-4ZKrtnK2I",
        "topicIDs": ["udGVzdA"],
    }
    msg = parse_pubsub_message(line, "fallback")
    assert msg is not None
    assert msg.from_peer == line["from"]
    assert msg.data == b"hello"
    assert msg.topic == "test"


def test_parse_message_without_topic_uses_the_subscribed_topic() -> None:
    msg = parse_pubsub_message({"from": "Qm1", "data": "u"}, "mine")
    assert msg is not None and msg.data == b"" and msg.topic == "mine"


@pytest.mark.parametrize(
    "line",
    [
        None,
        [],
        {"data": "uaGVsbG8"},
        {"from": "", "data": "uaGVsbG8"},
        {"from": 5, "data": "uaGVsbG8"},
        {"from": "Qm1", "data": "?bad"},
        {"from": "Qm1", "data": "uaGVsbG8", "topicIDs": ["u_w"]},  # topic not UTF-8
    ],
)
def test_parse_message_rejects_malformed(line: object) -> None:
    assert parse_pubsub_message(line, "t") is None


def test_parse_version() -> None:
    assert parse_version("0.22.0") == (0, 22, 0)
    assert parse_version("0.29.0-rc1") == (0, 29, 0)
    assert parse_version("0.8") == (0, 8, 0)
    with pytest.raises(ValueError):
        parse_version("kubo")


# ------------------------------------------------- errors without a daemon


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_daemon_is_unavailable_with_advice() -> None:
    port = _closed_port()
    with pytest.raises(IpfsUnavailable, match="ipfs daemon"):
        KuboRpcNode(f"/ip4/127.0.0.1/tcp/{port}", call_timeout=3.0)


def test_bad_api_address_is_an_ipfs_error() -> None:
    with pytest.raises(IpfsError):
        KuboRpcNode("not a multiaddr")


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(IpfsError, match="embedded, rpc"):
        open_node("carrier-pigeon")


# ------------------------------------------------------------- live daemon

live = pytest.mark.skipif(
    not KUBO_API, reason="set HAILSTONE_KUBO_API=/ip4/127.0.0.1/tcp/5001 to test a kubo daemon"
)


@pytest.fixture
def rpc_node() -> Iterator[KuboRpcNode]:
    node = open_node("rpc", api_addr=KUBO_API)
    assert isinstance(node, KuboRpcNode)
    try:
        yield node
    finally:
        node.close()


@live
@pytest.mark.network
def test_live_add_get_round_trip(rpc_node: KuboRpcNode) -> None:
    data = b"hailstone rpc " + os.urandom(32)
    cid = rpc_node.add(data)
    assert cid == cid_for_bytes(data)
    assert rpc_node.get(cid, timeout=10.0, max_bytes=len(data)) == data
    with pytest.raises(IpfsTooLarge):
        rpc_node.get(cid, timeout=10.0, max_bytes=len(data) - 1)
    assert cid_for_bytes(b"hello") == rpc_node.add(b"hello")


@live
@pytest.mark.network
def test_live_remove_unpins_and_drops_the_block(rpc_node: KuboRpcNode) -> None:
    data = b"hailstone rpc remove " + os.urandom(32)
    cid = rpc_node.add(data)  # (pinned)
    assert rpc_node.remove(cid) is True
    assert rpc_node.remove(cid) is False
    with pytest.raises(IpfsTimeout):  # (nobody else holds it)
        rpc_node.get(cid, timeout=1.0, max_bytes=len(data))
    with pytest.raises(IpfsError):
        rpc_node.remove("QmNotARawCid")


@live
@pytest.mark.network
def test_live_unknown_cid_times_out(rpc_node: KuboRpcNode) -> None:
    with pytest.raises(IpfsTimeout):
        rpc_node.get(cid_for_bytes(os.urandom(32)), timeout=1.0, max_bytes=100)


@live
@pytest.mark.network
def test_live_identity(rpc_node: KuboRpcNode) -> None:
    peer = rpc_node.peer_id()
    assert peer
    assert all(a.endswith("/p2p/" + peer) for a in rpc_node.addresses())
    assert isinstance(rpc_node.peers(), list)


@live
@pytest.mark.network
def test_live_pubsub_own_message(rpc_node: KuboRpcNode) -> None:
    topic = "hailstone-test/" + os.urandom(4).hex()
    payload = b"\x00\xff" + os.urandom(8)
    with rpc_node.subscribe(topic) as sub:
        deadline = time.monotonic() + 20.0
        msg = None
        while msg is None:
            assert time.monotonic() < deadline, "own pubsub message never arrived"
            rpc_node.publish(topic, payload)
            msg = sub.next_message(timeout=0.5)
        assert msg.data == payload
        assert msg.topic == topic
        assert msg.from_peer == rpc_node.peer_id()
    with pytest.raises(IpfsUnavailable):
        sub.next_message(timeout=0.1)


@live
@pytest.mark.network
def test_live_daemon_serves_an_embedded_node(rpc_node: KuboRpcNode, tmp_path: object) -> None:
    embedded = pytest.importorskip("network.ipfs.embedded")
    data = b"cross-backend " + os.urandom(16)
    cid = rpc_node.add(data)
    with embedded.EmbeddedIpfsNode(os.path.join(str(tmp_path), "e")) as node:
        loopback = [a for a in rpc_node.addresses() if a.startswith("/ip4/127.0.0.1/tcp/")]
        if not loopback:
            pytest.skip("the daemon has no loopback TCP address")
        node.connect(loopback[0])
        assert node.get(cid, timeout=20.0, max_bytes=1024) == data
