"""Real embedded kubo nodes on loopback: add/get, pubsub, timeouts, limits, close."""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import os
import time
from collections.abc import Iterator

import base58
import pytest

from network.ipfs import (
    IpfsBusy,
    IpfsError,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsUnavailable,
    cid_for_bytes,
    open_node,
)
from network.ipfs.base import MAX_MESSAGE_BYTES, MAX_OBJECT_BYTES

embedded = pytest.importorskip("network.ipfs.embedded")
try:
    embedded.load_library()
except IpfsUnavailable as exc:  # pragma: no cover - macOS and other platforms
    pytest.skip(f"embedded kubo unavailable: {exc}", allow_module_level=True)

EmbeddedIpfsNode = embedded.EmbeddedIpfsNode

pytestmark = pytest.mark.network

MESH_DEADLINE_S = 30.0


def _wait_for_peer(node: EmbeddedIpfsNode, peer: str, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while peer not in node.peers():
        assert time.monotonic() < deadline, f"{peer} never showed up in {node.peers()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedIpfsNode, ...]]:
    """Three connected nodes A, B, C, each with its own repo, no bootstrap, no MDNS."""
    root = tmp_path_factory.mktemp("ipfs")
    nodes: list[EmbeddedIpfsNode] = []
    try:
        for name in "abc":
            nodes.append(EmbeddedIpfsNode(root / name, listen=["/ip4/127.0.0.1/tcp/0"]))
        a, b, c = nodes
        b.connect(a.addresses()[0])
        c.connect(a.addresses()[0])
        c.connect(b.addresses()[0])
        _wait_for_peer(a, b.peer_id())
        _wait_for_peer(a, c.peer_id())
        yield a, b, c
    finally:
        for node in nodes:
            node.close()


def test_identity_and_addresses(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    a, b, c = trio
    ids = {a.peer_id(), b.peer_id(), c.peer_id()}
    assert len(ids) == 3
    for node in trio:
        addrs = node.addresses()
        assert addrs
        for addr in addrs:
            assert addr.startswith("/ip4/127.0.0.1/tcp/")
            assert addr.endswith("/p2p/" + node.peer_id())
    assert set(a.peers()) == {b.peer_id(), c.peer_id()}


def test_a_new_repo_gets_an_ed25519_peer_key(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    """libp2p's Ed25519 peer ids start "12D3KooW" and embed the public key, which
    must be the one the config's private key holds (else kubo would not start)."""
    for node in trio:
        with open(os.path.join(node._repo, "config"), encoding="utf-8") as fh:
            identity = json.load(fh)["Identity"]
        assert node.peer_id() == identity["PeerID"]
        assert node.peer_id().startswith("12D3KooW")
        multihash = base58.b58decode(node.peer_id())
        private = base64.b64decode(identity["PrivKey"])
        assert private[:4] == b"\x08\x01\x12\x40"  # Ed25519, 64 bytes: seed, public
        assert multihash == b"\x00\x24\x08\x01\x12\x20" + private[-32:]


def test_an_existing_repo_keeps_its_peer_key(tmp_path: os.PathLike[str]) -> None:
    """A repo made before (the library's RSA key) keeps its id: other people's
    bootstrap lists may name it."""
    repo = os.path.join(tmp_path, "old")
    node = EmbeddedIpfsNode(repo)
    node.close()
    path = os.path.join(repo, "config")
    with open(path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    os.remove(path)
    assert embedded.load_library().lib.CreateRepo(repo.encode()) >= 0  # the library's own
    with open(path, encoding="utf-8") as fh:
        rsa_identity = json.load(fh)["Identity"]
    assert rsa_identity["PeerID"].startswith("Qm")
    again = EmbeddedIpfsNode(repo)
    try:
        assert again.peer_id() == rsa_identity["PeerID"] != cfg["Identity"]["PeerID"]
    finally:
        again.close()


def test_repo_config_keeps_tests_off_the_lan(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    with open(os.path.join(trio[0]._repo, "config"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    assert cfg["Bootstrap"] == []
    assert cfg["Discovery"]["MDNS"]["Enabled"] is False
    assert cfg["Swarm"]["DisableNatPortMap"] is True
    assert cfg["Addresses"]["Swarm"] == ["/ip4/127.0.0.1/tcp/0"]
    assert cfg["Pubsub"]["Router"] == "gossipsub"
    assert cfg["Swarm"]["ConnMgr"] == embedded.CONNMGR  # few connections, fewer costs
    assert cfg["Reprovider"]["Interval"] == "0"  # no DHT announcement at every recycle


def test_add_on_a_get_on_b(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    a, b, _ = trio
    data = b"hailstone record " + os.urandom(64)
    cid = a.add(data)
    assert cid == cid_for_bytes(data)
    assert cid.startswith("bafkrei")
    assert b.get(cid, timeout=20.0, max_bytes=4096) == data
    # Second get is served from B's own store now.
    assert b.get(cid, timeout=1.0, max_bytes=4096) == data
    # Adding the same bytes again is idempotent.
    assert a.add(data) == cid


def test_remove_drops_our_copy_and_a_later_get_fetches_it_again(
    trio: tuple[EmbeddedIpfsNode, ...],
) -> None:
    a, b, _ = trio
    data = b"a head page " + os.urandom(64)
    cid = a.add(data)
    assert b.get(cid, timeout=20.0, max_bytes=4096) == data
    stored = b._block_path(hashlib.sha256(data).digest())
    assert os.path.exists(stored)  # a fetch keeps what it fetched in B's store
    assert b.remove(cid) is True
    assert not os.path.exists(stored)
    assert b.remove(cid) is False  # (nothing held: no error)
    # kubo may still believe B holds it; its store finds nothing and asks A.
    assert b.get(cid, timeout=20.0, max_bytes=4096) == data
    assert a.remove(cid) is True and b.remove(cid) is True
    with pytest.raises(IpfsTimeout):
        b.get(cid, timeout=1.0, max_bytes=4096)
    with pytest.raises(IpfsError):
        b.remove("QmNotARawCid")


def test_a_block_left_short_or_damaged_by_a_power_loss_is_made_good(
    trio: tuple[EmbeddedIpfsNode, ...],
) -> None:
    # add() does not flush a block to disk (it can be made again): a power loss may
    # leave one empty or short under its name, or (rarer) wrong in place.
    a, b, _ = trio
    data = b"hailstone record " + os.urandom(200)
    cid = a.add(data)
    path = a._block_path(hashlib.sha256(data).digest())
    with open(path, "wb"):
        pass  # left empty
    assert a.add(data) == cid
    with open(path, "rb") as fh:
        assert fh.read() == data  # the next add() wrote it again
    assert b.get(cid, timeout=20.0, max_bytes=4096) == data
    with open(path, "r+b") as fh:
        fh.write(b"X")  # damaged in place, same size
    # The local read finds the damage, removes the block and takes B's good copy.
    assert a.get(cid, timeout=20.0, max_bytes=4096) == data
    with open(path, "rb") as fh:
        assert fh.read() == data


def test_known_vector_is_served_under_the_computed_cid(
    trio: tuple[EmbeddedIpfsNode, ...],
) -> None:
    a, _, c = trio
    cid = a.add(b"hello")
    assert cid == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert c.get(cid, timeout=20.0, max_bytes=5) == b"hello"


def test_large_object_round_trip(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    a, b, _ = trio
    data = os.urandom(MAX_OBJECT_BYTES)
    cid = a.add(data)
    assert b.get(cid, timeout=30.0, max_bytes=MAX_OBJECT_BYTES) == data


def test_add_over_the_cap_is_refused(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    with pytest.raises(IpfsTooLarge, match="limit"):
        trio[0].add(b"\0" * (MAX_OBJECT_BYTES + 1))


def test_max_bytes_enforced_for_remote_and_local(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    a, _, c = trio
    data = os.urandom(2000)
    cid = a.add(data)
    with pytest.raises(IpfsTooLarge):
        c.get(cid, timeout=20.0, max_bytes=1999)
    with pytest.raises(IpfsTooLarge):
        a.get(cid, timeout=1.0, max_bytes=100)
    assert c.get(cid, timeout=20.0, max_bytes=2000) == data


def test_unknown_cid_times_out_within_the_timeout(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    _, b, _ = trio
    missing = cid_for_bytes(b"nobody has this " + os.urandom(16))
    started = time.monotonic()
    with pytest.raises(IpfsTimeout):
        b.get(missing, timeout=1.0, max_bytes=1024)
    # Generous bound: the point is that get() returns, not how fast.
    assert time.monotonic() - started < 6.0
    # A second caller joins the same pending fetch and also times out.
    with pytest.raises(IpfsTimeout):
        b.get(missing, timeout=0.2, max_bytes=1024)


@pytest.mark.parametrize(
    "bad",
    [
        "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX",  # CIDv0 dag-pb
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb v1
        "not a cid",
        "",
    ],
)
def test_get_rejects_foreign_cids(trio: tuple[EmbeddedIpfsNode, ...], bad: str) -> None:
    with pytest.raises(IpfsError) as info:
        trio[1].get(bad, timeout=1.0, max_bytes=10)
    assert not isinstance(info.value, IpfsTimeout)


def test_pubsub_a_to_b_and_c(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    a, b, c = trio
    topic = "hailstone-test-" + os.urandom(4).hex()
    payload = b"\x00\xffannounce " + os.urandom(8)
    with a.subscribe(topic) as sa, b.subscribe(topic) as sb, c.subscribe(topic) as sc:
        received: dict[str, object] = {}
        deadline = time.monotonic() + MESH_DEADLINE_S
        # gossipsub needs a moment to form the mesh: re-publish until both hear it.
        while len(received) < 2:
            assert time.monotonic() < deadline, f"pubsub delivered only to {set(received)}"
            a.publish(topic, payload)
            for name, sub in (("b", sb), ("c", sc)):
                if name in received:
                    continue
                msg = sub.next_message(timeout=0.3)
                if msg is not None:
                    received[name] = msg
        for msg in received.values():
            assert msg.data == payload
            assert msg.from_peer == a.peer_id()
            assert msg.topic == topic
        own = sa.next_message(timeout=5.0)
        assert own is not None and own.from_peer == a.peer_id() and own.data == payload
    with pytest.raises(IpfsUnavailable):
        sb.next_message(timeout=0.1)


def test_publish_limits(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    a = trio[0]
    with pytest.raises(IpfsTooLarge):
        a.publish("t", b"x" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(IpfsError):
        a.publish("", b"x")


def test_connect_rejects_addresses_without_peer_id(trio: tuple[EmbeddedIpfsNode, ...]) -> None:
    with pytest.raises(IpfsError, match="p2p"):
        trio[0].connect("/ip4/127.0.0.1/tcp/1")


def test_close_is_idempotent_and_the_repo_reopens(tmp_path: os.PathLike[str]) -> None:
    repo = os.path.join(tmp_path, "repo")
    node = open_node("embedded", repo_dir=repo, listen=["/ip4/127.0.0.1/tcp/0"])
    first_id = node.peer_id()
    cid = node.add(b"persisted")
    with pytest.raises(IpfsUnavailable, match="already open"):
        EmbeddedIpfsNode(repo)
    gc.collect()  # the failed second object must not stop the running node
    assert node.add(b"still running") == cid_for_bytes(b"still running")
    assert node.peers() == []
    node.close()
    node.close()
    with pytest.raises(IpfsUnavailable):
        node.peers()
    with pytest.raises(IpfsUnavailable):
        node.add(b"late")
    again = EmbeddedIpfsNode(repo)
    try:
        assert again.peer_id() == first_id
        assert again.get(cid, timeout=2.0, max_bytes=100) == b"persisted"
    finally:
        again.close()


def test_close_releases_a_pending_fetch(tmp_path: os.PathLike[str]) -> None:
    node = EmbeddedIpfsNode(os.path.join(tmp_path, "r"))
    missing = cid_for_bytes(os.urandom(32))
    with pytest.raises(IpfsTimeout):
        node.get(missing, timeout=0.3, max_bytes=10)
    assert node._threads, "the fetch should still be pending in the background"
    node.close()
    assert not any(t.is_alive() for t in node._threads)


def test_downloads_left_by_a_killed_node_are_cleared_at_the_next_start(
    tmp_path: os.PathLike[str],
) -> None:
    repo = os.path.join(tmp_path, "r")
    EmbeddedIpfsNode(repo).close()
    # What a node killed mid-fetch leaves behind: a partial Download in the repo.
    downloads = os.path.join(repo, embedded.DOWNLOAD_DIR_NAME)
    os.makedirs(downloads, exist_ok=True)
    with open(os.path.join(downloads, "get-partial"), "wb") as fh:
        fh.write(b"half a block")
    node = EmbeddedIpfsNode(repo)
    try:
        assert os.listdir(downloads) == []
        with pytest.raises(IpfsTimeout):
            node.get(cid_for_bytes(os.urandom(32)), timeout=0.3, max_bytes=10)
    finally:
        node.close()
    assert not os.path.exists(downloads)


_KUBO_LOG_SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from network.ipfs.embedded import EmbeddedIpfsNode
node = EmbeddedIpfsNode(os.path.join(os.getcwd(), "repo"))
node.close()
print(os.getcwd())
"""


def test_kubo_log_lands_in_the_repo_not_the_working_directory(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library opens kubo.log once per process (when it loads), so a fresh process shows where
    # the first node's log goes.
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", _KUBO_LOG_SCRIPT, root],
        cwd=fresh,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == str(fresh)  # the working directory is restored
    assert not (fresh / "kubo.log").exists()
    assert (fresh / "repo" / "kubo.log").is_file()
    # In this process too: starting and stopping a node leaves the cwd clean.
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    node = EmbeddedIpfsNode(here / "repo")
    node.close()
    assert os.getcwd() == str(here)
    assert not (here / "kubo.log").exists()


def test_the_repo_config_with_the_private_key_is_owner_only(tmp_path):
    import stat

    from network.ipfs import open_node

    node = open_node("embedded", repo_dir=tmp_path / "repo")
    try:
        mode = stat.S_IMODE((tmp_path / "repo" / "config").stat().st_mode)
        assert mode & 0o077 == 0, oct(mode)
    finally:
        node.close()


def _until_heard(sender: EmbeddedIpfsNode, topic: str, sub, payload: bytes) -> None:
    """Publish `payload` until `sub` receives it (gossipsub's mesh takes a moment)."""
    deadline = time.monotonic() + MESH_DEADLINE_S
    while True:
        assert time.monotonic() < deadline, "the message never arrived"
        sender.publish(topic, payload)
        msg = sub.next_message(timeout=0.3)
        while msg is not None and msg.data != payload:
            msg = sub.next_message(timeout=0.05)
        if msg is not None:
            return


@pytest.fixture()
def pair(tmp_path) -> Iterator[tuple[EmbeddedIpfsNode, EmbeddedIpfsNode]]:
    """A serves, B fetches and is recycled (only when a test asks: its idle time is long)."""
    a = EmbeddedIpfsNode(tmp_path / "a", listen=["/ip4/127.0.0.1/tcp/0"])
    b = EmbeddedIpfsNode(
        tmp_path / "b",
        listen=["/ip4/127.0.0.1/tcp/0"],
        recycle_after_fetches=2,
        recycle_idle_s=3600.0,
    )
    try:
        b.connect(a.addresses()[0])
        _wait_for_peer(a, b.peer_id())
        yield a, b
    finally:
        b.close()
        a.close()


def _fetch_twice(a: EmbeddedIpfsNode, b: EmbeddedIpfsNode, label: bytes) -> None:
    """B fetches two of A's objects: enough Downloads for the pair's recycle."""
    for i in range(2):
        data = label + b" %d " % i + os.urandom(8)
        assert b.get(a.add(data), timeout=10.0, max_bytes=100) == data


def _works_again(a, b, topic: str, sa, sb, label: bytes) -> None:
    """After a recycle B has its peer again, hears and is heard on `topic`, fetches."""
    _wait_for_peer(b, a.peer_id(), deadline_s=MESH_DEADLINE_S)
    _until_heard(a, topic, sb, label + b" a " + os.urandom(8))
    _until_heard(b, topic, sa, label + b" b " + os.urandom(8))
    data = label + b" fetched " + os.urandom(8)
    assert b.get(a.add(data), timeout=10.0, max_bytes=100) == data


def _queued(node, sub) -> list[bytes]:
    """The payloads `sub`'s inbox holds (read under the poller's lock)."""
    with node._poller.cond:
        return [m.data for q in sub._inbox._queues.values() for m in q]


def test_a_recycled_node_keeps_its_identity_subscriptions_peers_and_readers(pair) -> None:
    a, b = pair
    topic = "hailstone-test-" + os.urandom(4).hex()
    with a.subscribe(topic) as sa, b.subscribe(topic) as sb:
        _until_heard(a, topic, sb, b"mesh")
        _fetch_twice(a, b, b"fetched")
        # A message read from the library but not yet by its reader stays queued.
        while sb.next_message(timeout=0.0) is not None:
            pass  # (copies of the mesh message)
        unread = b"unread " + os.urandom(8)
        a.publish(topic, unread)
        deadline = time.monotonic() + MESH_DEADLINE_S
        while unread not in _queued(b, sb):
            assert time.monotonic() < deadline, "the poller never read the message"
            time.sleep(0.05)
        peer_id = b.peer_id()
        assert not b.recycle_due()  # fetched enough, but not idle long enough
        b._recycle_idle_s = 0.0
        assert b.recycle_due()
        assert b.recycle_if_due()
        assert b.recycles == 1 and not b.recycle_due()  # at most once per interval
        assert b.peer_id() == peer_id
        got = []
        while (msg := sb.next_message(timeout=0.0)) is not None:
            got.append(msg.data)
        assert unread in got
        # The peer is dialled again; the same subscription objects hear and are heard.
        _works_again(a, b, topic, sa, sb, b"after recycle")
    with pytest.raises(IpfsUnavailable):
        sb.next_message(timeout=0.1)


class _SlowToStop:
    """The real library, whose CleanupNode takes `delay` seconds longer (a loaded
    machine: at 50 nodes on two cores stopping took over 10 s)."""

    def __init__(self, lib, delay: float) -> None:
        self._lib = lib
        self._delay = delay

    def CleanupNode(self, repo):  # noqa: N802 - the library's name
        time.sleep(self._delay)
        return self._lib.CleanupNode(repo)

    def __getattr__(self, name: str):
        return getattr(self._lib, name)


def test_a_recycle_waits_for_a_slow_stop_and_starts_the_node_again(pair, monkeypatch) -> None:
    a, b = pair
    topic = "hailstone-test-" + os.urandom(4).hex()
    with a.subscribe(topic) as sa, b.subscribe(topic) as sb:
        _until_heard(a, topic, sb, b"mesh")
        _fetch_twice(a, b, b"slow")
        real = b._lib
        # Stopping takes longer than the close timeout (2 x CLOSE_JOIN_S): a recycle
        # that gave up then left the node stopped for good.
        monkeypatch.setattr(embedded, "CLOSE_JOIN_S", 0.2)
        b._lib = embedded._Library(real.ffi, _SlowToStop(real.lib, 1.0), real.free)
        b._recycle_idle_s = 0.0
        try:
            assert b.recycle_if_due()
        finally:
            b._lib = real
        assert b.recycles == 1
        # Started again: it publishes, subscribes, hears and fetches.
        _works_again(a, b, topic, sa, sb, b"after a slow stop")


def test_the_poller_recycles_an_idle_node_that_fetched_enough(pair) -> None:
    a, b = pair
    _fetch_twice(a, b, b"poller")
    with b.subscribe("hailstone-test-" + os.urandom(4).hex()):
        b._recycle_idle_s = 0.0
        deadline = time.monotonic() + MESH_DEADLINE_S
        while b.recycles == 0:
            assert time.monotonic() < deadline, "the poller never recycled the node"
            time.sleep(0.1)
    _wait_for_peer(b, a.peer_id(), deadline_s=MESH_DEADLINE_S)


def test_no_recycle_while_a_fetch_is_pending(pair) -> None:
    _a, b = pair
    b._recycle_after = 1
    b._recycle_idle_s = 0.0
    missing = cid_for_bytes(os.urandom(32))
    with pytest.raises(IpfsTimeout):
        b.get(missing, timeout=0.3, max_bytes=10)
    assert b._fetches  # still pending inside the library
    assert not b.recycle_due() and not b.recycle_if_due()
    assert b.recycles == 0


def test_jammed_fetch_slots_are_ended_by_a_recycle(pair, monkeypatch) -> None:
    """Every slot held by fetches nobody serves (junk CIDs): no fetch can start. Once
    the youngest is JAMMED_AFTER_S old the poller recycles the node, which ends them;
    it fetches, hears and is heard again, and does not recycle again at once."""
    a, b = pair
    monkeypatch.setattr(embedded, "MAX_PENDING_FETCHES", 4)
    monkeypatch.setattr(embedded, "JAMMED_AFTER_S", 1.0)
    topic = "hailstone-test-" + os.urandom(4).hex()
    with a.subscribe(topic) as sa, b.subscribe(topic) as sb:
        _until_heard(a, topic, sb, b"mesh")
        for _ in range(4):
            with pytest.raises(IpfsTimeout):
                b.get(cid_for_bytes(os.urandom(32)), timeout=0.1, max_bytes=10)
        with pytest.raises(IpfsBusy):
            b.get(a.add(b"a real object " + os.urandom(8)), timeout=1.0, max_bytes=100)
        assert b.pending_fetches() == 4 and b.recycles == 0
        deadline = time.monotonic() + MESH_DEADLINE_S
        while b.jam_recycles == 0:
            assert time.monotonic() < deadline, "the jammed node was never recycled"
            time.sleep(0.1)
        assert b.pending_fetches() == 0 and b.recycles == 1
        _works_again(a, b, topic, sa, sb, b"after a jam")
        # Jammed again at once: not recycled again within JAMMED_MIN_INTERVAL_S.
        for _ in range(4):
            with pytest.raises(IpfsTimeout):
                b.get(cid_for_bytes(os.urandom(32)), timeout=0.1, max_bytes=10)
        time.sleep(1.5)
        assert not b.recycle_due() and b.recycles == 1


def test_a_node_that_never_idles_is_recycled_past_the_force_limit(pair, monkeypatch) -> None:
    """Leaked sessions pile up in a node that never idles (a flood, a busy swarm): past
    RECYCLE_FORCE_AFTER_FETCHES the poller recycles it anyway, its pending fetch and
    all; it works again, and is not forced again within the interval."""
    a, b = pair
    monkeypatch.setattr(embedded, "RECYCLE_FORCE_AFTER_FETCHES", 3)
    b._recycle_idle_s = 3600.0  # (never idle long enough for the ordinary recycle)
    topic = "hailstone-test-" + os.urandom(4).hex()
    with a.subscribe(topic) as sa, b.subscribe(topic) as sb:
        _until_heard(a, topic, sb, b"mesh")
        _fetch_twice(a, b, b"forced")
        assert not b.recycle_due(busy=True) and b.forced_recycles == 0
        with pytest.raises(IpfsTimeout):  # the third, left pending in the library
            b.get(cid_for_bytes(os.urandom(32)), timeout=0.3, max_bytes=10)
        deadline = time.monotonic() + MESH_DEADLINE_S
        while b.forced_recycles == 0:
            assert time.monotonic() < deadline, "the busy node was never recycled"
            time.sleep(0.1)
        assert b.recycles == 1 and b.jam_recycles == 0 and b.pending_fetches() == 0
        _works_again(a, b, topic, sa, sb, b"after a forced recycle")
        _fetch_twice(a, b, b"forced again")
        with pytest.raises(IpfsTimeout):
            b.get(cid_for_bytes(os.urandom(32)), timeout=0.3, max_bytes=10)
        assert not b.recycle_due(busy=True)  # (within RECYCLE_FORCE_MIN_INTERVAL_S)


def test_a_full_pool_of_young_fetches_is_not_recycled(pair, monkeypatch) -> None:
    _a, b = pair
    monkeypatch.setattr(embedded, "MAX_PENDING_FETCHES", 2)
    for _ in range(2):
        with pytest.raises(IpfsTimeout):
            b.get(cid_for_bytes(os.urandom(32)), timeout=0.1, max_bytes=10)
    assert b.pending_fetches() == 2
    assert not b.recycle_due() and not b.recycle_if_due()  # (younger than JAMMED_AFTER_S)
    assert b.recycles == 0


def test_a_full_pending_pool_is_busy_not_a_timeout(pair, monkeypatch) -> None:
    # A get that finds every library fetch slot taken raises IpfsBusy: the fetcher
    # then blames no peer (a timeout would put the peer that listed it on hold).
    _a, b = pair
    monkeypatch.setattr(embedded, "MAX_PENDING_FETCHES", 1)
    with pytest.raises(IpfsTimeout):
        b.get(cid_for_bytes(os.urandom(32)), timeout=0.3, max_bytes=10)
    assert b.pending_fetches() == 1
    with pytest.raises(IpfsBusy) as caught:
        b.get(cid_for_bytes(os.urandom(32)), timeout=0.3, max_bytes=10)
    assert not isinstance(caught.value, IpfsTimeout)


def test_a_subscription_left_detached_is_opened_again_by_the_poller(pair) -> None:
    a, b = pair
    topic = "hailstone-test-" + os.urandom(4).hex()
    with b.subscribe(topic) as sb:
        sb._detach()  # as a recycle whose subscribe failed leaves it
        deadline = time.monotonic() + MESH_DEADLINE_S
        while sb._sub_id < 0:
            assert time.monotonic() < deadline, "the subscription was never opened again"
            time.sleep(0.1)
        _until_heard(a, topic, sb, b"heard again " + os.urandom(8))


def test_a_message_over_the_receive_limit_comes_cut_with_its_sender(tmp_path) -> None:
    """A node that accepts at most 100-byte payloads gets a 300 KiB message cut to 101
    bytes (the head of the payload, its sender named), so its own size check refuses
    it; the rest is never copied out of the library. Messages up to the limit come
    whole."""
    a = EmbeddedIpfsNode(tmp_path / "a", listen=["/ip4/127.0.0.1/tcp/0"])
    b = EmbeddedIpfsNode(tmp_path / "b", listen=["/ip4/127.0.0.1/tcp/0"], max_received_bytes=100)
    try:
        b.connect(a.addresses()[0])
        topic = "hailstone-test-" + os.urandom(4).hex()
        with a.subscribe(topic), b.subscribe(topic) as sb:
            _until_heard(a, topic, sb, b"mesh " + os.urandom(8))
            exact = os.urandom(100)
            _until_heard(a, topic, sb, exact)
            big = os.urandom(300 * 1024)
            a.publish(topic, big)
            deadline = time.monotonic() + MESH_DEADLINE_S
            while True:
                assert time.monotonic() < deadline, "the large message never arrived"
                msg = sb.next_message(timeout=0.5)
                if msg is not None and msg.data[:20] == big[:20]:
                    break
            assert msg.data == big[:101] and msg.from_peer == a.peer_id()
    finally:
        b.close()
        a.close()
