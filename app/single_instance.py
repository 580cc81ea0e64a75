"""One app per profile: a QLocalServer; a second launch asks the first to show itself."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

RAISE = b"raise\n"


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


class SingleInstance(QObject):
    """Listens for later launches of the same profile.

    Signals:
        raise_requested(): another launch wants this window shown.
    """

    raise_requested = Signal()

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.name = server_name(data_dir)
        self.server = QLocalServer(self)
        self.server.newConnection.connect(self._on_connection)
        self._sockets: list[QLocalSocket] = []

    def listen(self) -> bool:
        """Start listening; a stale socket from a crashed run is removed first."""
        if self.server.listen(self.name):
            return True
        QLocalServer.removeServer(self.name)
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
