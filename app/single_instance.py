"""One app per profile: a lock file, and a QLocalServer a second launch asks to show the first.

The lock (QLockFile in the profile folder) decides who owns the profile; the
local server only carries "raise your window". A stale lock from a crashed run
is taken over by QLockFile (its process is gone); a socket name is removed only
when nothing answers on it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from PySide6.QtCore import QDeadlineTimer, QLockFile, QObject, QThread, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

RAISE = b"raise\n"
LOCK_FILE = "hailstone.lock"


def server_name(data_dir: Path) -> str:
    """A per-user, per-profile socket name (short enough for every platform)."""
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return f"hailstone-{digest}"


def ask_running_instance(data_dir: Path, timeout_ms: int = 1000) -> bool:
    """True when another instance holds the profile (it was asked to raise its window)."""
    sock = QLocalSocket()
    sock.connectToServer(server_name(data_dir))
    if not sock.waitForConnected(timeout_ms):
        return False
    sock.write(RAISE)
    sock.waitForBytesWritten(timeout_ms)
    sock.disconnectFromServer()
    if sock.state() != QLocalSocket.LocalSocketState.UnconnectedState:
        sock.waitForDisconnected(timeout_ms)
    sock.close()
    return True


def _answers(name: str, timeout_ms: int) -> bool:
    """Whether a live server accepts connections on `name`."""
    sock = QLocalSocket()
    sock.connectToServer(name)
    ok = sock.waitForConnected(timeout_ms)
    sock.abort()
    return ok


class SingleInstance(QObject):
    """Owns one profile: its lock file, and a server for later launches.

    Signals:
        raise_requested(): another launch wants this window shown.
    """

    raise_requested = Signal()

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.name = server_name(data_dir)
        self.lock = QLockFile(str(Path(data_dir) / LOCK_FILE))
        self.server = QLocalServer(self)
        self.server.newConnection.connect(self._on_connection)
        self._sockets: list[QLocalSocket] = []

    def acquire(self) -> bool:
        """Take the profile's lock; False while another live process holds it."""
        return self.lock.tryLock(0)

    def listen(self) -> bool:
        """Start listening. A name left by a crashed run is removed, a live one never."""
        if self.server.listen(self.name):
            return True
        if _answers(self.name, 500):
            # Someone answers: never take a live instance's socket away.
            log.warning("another process answers on %s; not listening", self.name)
            return False
        QLocalServer.removeServer(self.name)  # refused or missing: a stale socket file
        return self.server.listen(self.name)

    def _on_connection(self) -> None:
        while self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            self._sockets.append(sock)
            sock.readyRead.connect(self._on_data)
            if sock.bytesAvailable():
                self._on_data()

    def _on_data(self) -> None:
        for sock in list(self._sockets):
            if sock.bytesAvailable() and bytes(sock.readAll()).startswith(b"raise"):
                self.raise_requested.emit()
            if sock.state() == QLocalSocket.LocalSocketState.UnconnectedState:
                self._sockets.remove(sock)

    def close(self) -> None:
        for sock in self._sockets:
            sock.abort()
        self._sockets.clear()
        self.server.close()
        if self.lock.isLocked():
            self.lock.unlock()


def claim_profile(data_dir: Path, wait_ms: int = 5000) -> SingleInstance | None:
    """Own `data_dir` for this process, or hand over to the copy that owns it.

    Returns the listening SingleInstance, or None when another copy holds the
    profile; that copy was asked to raise its window (if it answered within
    `wait_ms`: it may still be starting up).
    """
    single = SingleInstance(data_dir)
    if single.acquire():
        if not single.listen():
            log.warning("single-instance server did not start: %s", single.server.errorString())
        return single
    deadline = QDeadlineTimer(wait_ms)
    while not ask_running_instance(data_dir, timeout_ms=200):
        if deadline.hasExpired():
            log.warning("the copy holding %s does not answer", data_dir)
            break
        QThread.msleep(100)  # bounded by the deadline; nothing else runs yet
    return None
