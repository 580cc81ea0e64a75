"""An existing kubo daemon (IPFS Desktop, a server) reached over its HTTP RPC API.

Uses ``ipfshttpclient``'s HTTP layer only: ``ipfshttpclient.connect()`` refuses
daemons newer than 0.8 and its high-level pubsub methods predate the encodings of
today's kubo. Since kubo 0.11 pubsub topics travel multibase-encoded in the URL
(``u`` + unpadded base64url) and the ``data``, ``seqno`` and ``topicIDs`` fields of
received messages are multibase-encoded too; ``from`` is a plain peer id string.
Objects are stored with ``block/put --cid-codec=raw --mhtype=sha2-256 --pin``,
so their CID is exactly :func:`network.ipfs.cid.cid_for_bytes`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import logging
import threading
import time
from typing import Any

from network.ipfs.base import (
    DEFAULT_CALL_TIMEOUT_S,
    MAX_MESSAGE_BYTES,
    MAX_OBJECT_BYTES,
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
from network.ipfs.cid import cid_for_bytes
from network.ipfs.inbox import FairInbox

log = logging.getLogger(__name__)

DEFAULT_API_ADDR = "/ip4/127.0.0.1/tcp/5001"
# block put --cid-codec/--pin (0.15) and multibase pubsub (0.11) are required.
MIN_KUBO_VERSION = (0, 15, 0)
# Seconds to wait for the TCP connection to the daemon.
CONNECT_TIMEOUT_S = 5.0
# A pubsub stream idle this long is re-opened, which also bounds how long a
# closed subscription's reader thread can linger in a blocking read.
SUB_IDLE_READ_S = 10.0
# Most messages, and bytes, buffered per subscription (network/ipfs/inbox.py: past
# either, the heaviest sender's oldest is dropped and counted).
SUB_QUEUE_MAX = 10_000
SUB_QUEUE_MAX_BYTES = 4 * 2**20

_NOT_REACHABLE = (
    "cannot reach the kubo daemon at {addr} ({why}); start IPFS Desktop or "
    "`ipfs daemon`, or correct the API address in Preferences"
)
_PUBSUB_OFF = (
    "pubsub is disabled on the kubo daemon; run `ipfs config --json Pubsub.Enabled true` "
    "and restart it (or start it with `ipfs daemon --enable-pubsub-experiment`)"
)


# --------------------------------------------------------------- encodings


def encode_topic(topic: str) -> str:
    """Encode a pubsub topic for kubo's RPC URL: ``u`` + unpadded base64url of UTF-8."""
    return "u" + base64.urlsafe_b64encode(topic.encode("utf-8")).decode("ascii").rstrip("=")


def decode_multibase(text: str) -> bytes:
    """Decode a multibase string in the encodings kubo emits.

    Supports ``u``/``U`` (base64url), ``m``/``M`` (base64), ``b``/``B`` (base32)
    and ``f``/``F`` (hex).

    Raises:
        ValueError: Unknown prefix or malformed body.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("empty multibase string")
    prefix, body = text[0], text[1:]
    if any(c.isspace() or c == "=" for c in body.rstrip("=")):
        raise ValueError(f"malformed multibase {prefix!r} string")
    body = body.rstrip("=")
    try:
        if prefix in "uU":
            return base64.b64decode(_pad(body, 4), altchars=b"-_", validate=True)
        if prefix in "mM":
            return base64.b64decode(_pad(body, 4), validate=True)
        if prefix in "bB":
            return base64.b32decode(_pad(body.upper(), 8))
        if prefix in "fF":
            return bytes.fromhex(body)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"malformed multibase {prefix!r} string") from exc
    raise ValueError(f"unsupported multibase prefix {prefix!r}")


def _pad(body: str, block: int) -> str:
    return body + "=" * (-len(body) % block)


def decode_topic(text: str) -> str:
    """Decode a multibase topic id from a kubo pubsub message."""
    return decode_multibase(text).decode("utf-8")


def parse_pubsub_message(obj: Any, fallback_topic: str) -> PubsubMessage | None:
    """Turn one JSON object from ``pubsub/sub`` into a message (None if malformed).

    Args:
        obj: The decoded JSON object (``from``, ``data``, ``seqno``, ``topicIDs``).
        fallback_topic: The subscribed topic, used when ``topicIDs`` is absent.
    """
    if not isinstance(obj, dict):
        return None
    sender = obj.get("from")
    if not isinstance(sender, str) or not sender:
        return None
    try:
        data = decode_multibase(obj["data"]) if obj.get("data") else b""
        topics = obj.get("topicIDs") or []
        topic = decode_topic(topics[0]) if topics else fallback_topic
    except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError):
        return None
    return PubsubMessage(from_peer=sender, data=data, topic=topic)


def parse_version(text: str) -> tuple[int, int, int]:
    """Parse a kubo version such as ``0.22.0`` or ``0.29.0-rc1`` to a tuple."""
    core = str(text).split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError as exc:
        raise ValueError(f"unreadable kubo version {text!r}") from exc
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


# -------------------------------------------------------------------- node


@functools.cache
def _client_sync_class(base: type) -> type:
    """Return ipfshttpclient's ClientSync with urllib3-2-compatible connection pools.

    WORKAROUND: ipfshttpclient 0.7's requests adapter passes ``strict=True`` to
    urllib3's PoolManager, which urllib3 2 rejects with a FutureWarning on every
    request (and will refuse in urllib3 3). The subclass re-mounts an adapter that
    builds the same pool manager without that argument.
    """
    try:
        from ipfshttpclient import requests_wrapper
    except ImportError:  # the httpx backend has no such problem
        return base

    class _Adapter(requests_wrapper.HTTPAdapter):  # type: ignore[misc, name-defined]
        def init_poolmanager(
            self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
        ) -> None:
            self._pool_connections = connections
            self._pool_maxsize = maxsize
            self._pool_block = block
            self.poolmanager = requests_wrapper.PoolManager(
                num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
            )

    class _ClientSync(base):  # type: ignore[misc, valid-type]
        def _make_session(self) -> Any:
            session = super()._make_session()
            adapter = _Adapter()
            for prefix in list(session.adapters):
                session.mount(prefix, adapter)
            return session

    return _ClientSync


class KuboRpcNode(IpfsNode):
    """An :class:`IpfsNode` backed by a kubo daemon's RPC API.

    Args:
        api_addr: The daemon's API multiaddr, e.g. ``/ip4/127.0.0.1/tcp/5001``.
        call_timeout: Seconds allowed for ordinary calls.

    Raises:
        IpfsUnavailable: ipfshttpclient missing, daemon unreachable or too old.
    """

    def __init__(
        self, api_addr: str = DEFAULT_API_ADDR, *, call_timeout: float = DEFAULT_CALL_TIMEOUT_S
    ) -> None:
        try:
            import ipfshttpclient.exceptions as exceptions
            import ipfshttpclient.http as http
            import ipfshttpclient.multipart as multipart
        except ImportError as exc:
            raise IpfsUnavailable(
                "the 'ipfshttpclient' package is missing; install it with "
                "`pip install ipfshttpclient`"
            ) from exc
        self._exc = exceptions
        self._multipart = multipart
        self._addr = api_addr
        self._call_timeout = float(call_timeout)
        self._closed = False
        self._lock = threading.Lock()
        self._subscriptions: set[RpcSubscription] = set()
        try:
            # The constructor does not contact the daemon, so no version check runs;
            # ours below accepts any kubo new enough for the encodings used here.
            self._http = _client_sync_class(http.ClientSync)(
                api_addr, "api/v0", timeout=(CONNECT_TIMEOUT_S, self._call_timeout)
            )
        except Exception as exc:  # noqa: BLE001 - AddressError and friends
            raise IpfsError(f"not a usable kubo API address {api_addr!r}: {exc}") from exc
        version_text = str(self._single(self._request("/version")).get("Version", ""))
        try:
            version = parse_version(version_text)
        except ValueError as exc:
            raise IpfsUnavailable(f"the daemon at {api_addr} is not kubo: {exc}") from exc
        if version < MIN_KUBO_VERSION:
            wanted = ".".join(map(str, MIN_KUBO_VERSION))
            raise IpfsUnavailable(
                f"kubo {version_text} at {api_addr} is too old; update IPFS Desktop or "
                f"kubo to {wanted} or newer"
            )
        ident = self._single(self._request("/id"))
        self._id = str(ident.get("ID", ""))
        if not self._id:
            raise IpfsUnavailable(f"the kubo daemon at {api_addr} reports no peer id")

    # ----------------------------------------------------------------- helpers

    def _request(
        self,
        path: str,
        args: tuple[str, ...] = (),
        *,
        opts: dict[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
        decoder: str = "json",
        data: Any = None,
        headers: dict[str, str] | None = None,
        return_result: bool = True,
    ) -> Any:
        """Call the RPC API, translating every failure into an IpfsError."""
        exc_mod = self._exc
        read_timeout = self._call_timeout if timeout is None else timeout
        try:
            return self._http.request(
                path,
                list(args),
                opts=opts or {},
                decoder=decoder,
                stream=stream,
                data=data,
                headers=headers,
                return_result=return_result,
                timeout=(CONNECT_TIMEOUT_S, read_timeout),
            )
        except exc_mod.ConnectionError as exc:
            raise IpfsUnavailable(_NOT_REACHABLE.format(addr=self._addr, why="refused")) from exc
        except exc_mod.TimeoutError as exc:
            raise IpfsTimeout(f"kubo {path} did not answer within {read_timeout:g} s") from exc
        except exc_mod.ErrorResponse as exc:
            raise _translate_error(path, str(exc)) from exc
        except exc_mod.Error as exc:
            raise IpfsError(f"kubo {path} failed: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - e.g. raw requests/urllib3 errors
            raise IpfsError(f"kubo {path} failed: {exc}") from exc

    @staticmethod
    def _single(result: Any) -> dict[str, Any]:
        if isinstance(result, list):
            result = result[0] if result else {}
        return result if isinstance(result, dict) else {}

    def _check_open(self) -> None:
        if self._closed:
            raise IpfsUnavailable("the IPFS node is closed")

    # ------------------------------------------------------------------- API

    def peer_id(self) -> str:
        """Return the daemon's peer id."""
        self._check_open()
        return self._id

    def addresses(self) -> list[str]:
        """Return the daemon's multiaddrs, each ending in ``/p2p/<peer id>``."""
        self._check_open()
        addrs = self._single(self._request("/id")).get("Addresses") or []
        suffix = f"/p2p/{self._id}"
        return [a if a.endswith(suffix) else a + suffix for a in addrs if isinstance(a, str)]

    def peers(self) -> list[str]:
        """Return the peer ids the daemon is connected to."""
        self._check_open()
        entries = self._single(self._request("/swarm/peers")).get("Peers") or []
        return sorted({e["Peer"] for e in entries if isinstance(e, dict) and "Peer" in e})

    def connect(self, multiaddr: str) -> None:
        """Connect the daemon to ``multiaddr`` (must include ``/p2p/<id>``)."""
        check_multiaddr(multiaddr)
        self._check_open()
        seconds = f"{self._call_timeout:g}s"
        self._request("/swarm/connect", (multiaddr,), opts={"timeout": seconds})

    def add(self, data: bytes) -> str:
        """Store ``data`` as one pinned raw block; return its CID."""
        data = check_payload(data, MAX_OBJECT_BYTES, "object")
        self._check_open()
        expected = cid_for_bytes(data)
        body, headers = self._multipart.stream_bytes(data)
        reply = self._single(
            self._request(
                "/block/put",
                opts={"cid-codec": "raw", "mhtype": "sha2-256", "mhlen": "32", "pin": "true"},
                data=body,
                headers=headers,
            )
        )
        if reply.get("Key") != expected:
            raise IpfsError(f"kubo stored the object as {reply.get('Key')!r}, not {expected}")
        return expected

    def remove(self, cid: str) -> bool:
        """Unpin ``cid`` (``add`` pins) and remove the block from the daemon's store."""
        check_cid(cid)
        self._check_open()
        try:
            self._request("/pin/rm", (cid,))
        except IpfsError as exc:
            if "not pinned" not in str(exc).lower():
                raise
        try:
            reply = self._single(self._request("/block/rm", (cid,)))
        except IpfsError as exc:
            if "not found" in str(exc).lower():
                return False
            raise
        error = str(reply.get("Error") or "")
        if not error:
            return True
        if "not found" in error.lower():
            return False
        raise IpfsError(f"kubo /block/rm {cid}: {error}")

    def get(self, cid: str, timeout: float, max_bytes: int) -> bytes:
        """Fetch ``cid`` through the daemon; see :meth:`IpfsNode.get`."""
        digest = check_cid(cid)
        if not timeout > 0:
            raise IpfsError("get() needs a positive timeout")
        if max_bytes < 0:
            raise IpfsError("get() needs a non-negative max_bytes")
        self._check_open()
        deadline = time.monotonic() + timeout
        # kubo's global --timeout bounds the daemon's search; the HTTP read timeout
        # (a little longer) bounds us if the daemon itself stalls.
        chunks = self._request(
            "/block/get",
            (cid,),
            opts={"timeout": f"{timeout:g}s"},
            timeout=timeout + 2.0,
            stream=True,
            decoder="none",
        )
        received = bytearray()
        try:
            for chunk in chunks:
                received += chunk
                if len(received) > max_bytes:
                    raise IpfsTooLarge(f"{cid} is larger than the limit of {max_bytes} bytes")
                if time.monotonic() > deadline + 2.0:
                    raise IpfsTimeout(f"{cid} did not arrive within {timeout:g} s")
        except IpfsError:
            raise
        except self._exc.ErrorResponse as exc:
            raise _translate_error("/block/get", str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - errors while streaming the body
            raise IpfsError(f"fetching {cid} failed: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                chunks.close()
        data = bytes(received)
        if hashlib.sha256(data).digest() != digest:
            raise IpfsError(f"the bytes received for {cid} do not match the CID")
        return data

    def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on ``topic`` through the daemon."""
        check_topic(topic)
        data = check_payload(data, MAX_MESSAGE_BYTES, "pubsub message")
        self._check_open()
        body, headers = self._multipart.stream_bytes(data)
        self._request(
            "/pubsub/pub",
            (encode_topic(topic),),
            data=body,
            headers=headers,
            return_result=False,
        )

    def subscribe(self, topic: str) -> RpcSubscription:
        """Subscribe to ``topic``; returns once the daemon has subscribed."""
        check_topic(topic)
        self._check_open()
        sub = RpcSubscription(self, topic)
        with self._lock:
            closed = self._closed
            if not closed:
                self._subscriptions.add(sub)
        if closed:
            sub.close()
            raise IpfsUnavailable("the IPFS node is closed")
        return sub

    def _open_stream(self, topic: str) -> Any:
        return self._request(
            "/pubsub/sub",
            (encode_topic(topic),),
            timeout=SUB_IDLE_READ_S,
            stream=True,
            decoder="json",
        )

    def _forget_subscription(self, sub: RpcSubscription) -> None:
        with self._lock:
            self._subscriptions.discard(sub)

    def close(self) -> None:
        """Close all subscriptions; the daemon keeps running. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subs = list(self._subscriptions)
            self._subscriptions.clear()
        for sub in subs:
            sub.close()


def _translate_error(path: str, message: str) -> IpfsError:
    lowered = message.lower()
    if "pubsub" in lowered and ("not enabled" in lowered or "experimental" in lowered):
        return IpfsUnavailable(_PUBSUB_OFF)
    if "deadline exceeded" in lowered or "timeout" in lowered:
        return IpfsTimeout(f"kubo {path}: {message}")
    return IpfsError(f"kubo {path}: {message}")


class RpcSubscription(Subscription):
    """A pubsub subscription held open as a streaming ``pubsub/sub`` request.

    A reader thread feeds an inbox (a `FairInbox`: senders served in turn, bounded
    in bytes); the stream is re-opened when it goes idle for
    :data:`SUB_IDLE_READ_S` or drops, so a closed subscription's thread ends within
    that time even if closing the socket does not wake it.
    """

    def __init__(self, node: KuboRpcNode, topic: str) -> None:
        self._node = node
        self._topic = topic
        self._inbox = FairInbox(SUB_QUEUE_MAX_BYTES, SUB_QUEUE_MAX)  # (under `_arrived`)
        self._arrived = threading.Condition()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        # Opened here so the daemon has subscribed before subscribe() returns.
        self._stream: Any = node._open_stream(topic)
        self._thread = threading.Thread(target=self._read_loop, name="kubo-rpc-sub", daemon=True)
        self._thread.start()

    @property
    def topic(self) -> str:
        """The topic this subscription listens to."""
        return self._topic

    def _read_loop(self) -> None:
        stream = self._stream
        while not self._closed.is_set():
            if stream is None:
                try:
                    stream = self._node._open_stream(self._topic)
                except IpfsError as exc:
                    log.debug("re-opening the pubsub stream for %r failed: %s", self._topic, exc)
                    self._closed.wait(1.0)
                    continue
                with self._lock:
                    self._stream = stream
                if self._closed.is_set():
                    break
            opened = time.monotonic()
            try:
                for obj in stream:
                    message = parse_pubsub_message(obj, self._topic)
                    if message is None:
                        continue
                    with self._arrived:
                        self._inbox.put(message)
                        self._arrived.notify_all()
            except Exception as exc:  # noqa: BLE001 - idle read timeout or dropped stream
                log.debug("pubsub stream for %r ended: %s", self._topic, exc)
            with contextlib.suppress(Exception):
                stream.close()
            stream = None
            # Re-open at once after an idle timeout; back off if streams die young.
            if time.monotonic() - opened < 0.5:
                self._closed.wait(0.5)
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def next_message(self, timeout: float) -> PubsubMessage | None:
        """Wait up to ``timeout`` seconds for the next message (None if none)."""
        if self._closed.is_set():
            raise IpfsUnavailable("the subscription is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        with self._arrived:
            while True:
                message = self._inbox.take()
                if message is not None:
                    return message
                if self._closed.is_set():
                    raise IpfsUnavailable("the subscription is closed")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._arrived.wait(remaining)

    def take_dropped(self) -> dict[str, int]:
        with self._arrived:
            return self._inbox.take_dropped()

    def close(self) -> None:
        """Stop listening; idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._arrived:
            self._arrived.notify_all()
        self._node._forget_subscription(self)
        with self._lock:
            stream = self._stream
        with contextlib.suppress(Exception):
            stream.close()
        self._thread.join(0.5)
