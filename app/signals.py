"""SIGTERM and SIGINT stop the app cleanly (logout, shutdown, Ctrl-C in a terminal).

Two things stand in the way, and this module handles both:

* Qt's event loop runs in C++, and Python runs its signal handlers only between
  bytecodes, so a handler could wait until the next Python slot ran (forever, on an
  idle window). `signal.set_wakeup_fd` makes the C-level handler write the signal
  number to a socket; a `QSocketNotifier` on the other end wakes the loop at once
  and reports the signal as a Qt signal.
* WORKAROUND: the embedded kubo library (Go) installs its own SIGTERM/SIGINT
  handlers when its first node starts (`RunNode`, measured: loading the library
  alone does not), and Go's handlers swallow both. `reinstall()` puts Python's
  handlers back; the app calls it when the network node has started.
"""

from __future__ import annotations

import logging
import signal
import socket
from typing import Any

from PySide6.QtCore import QObject, QSocketNotifier, Signal, Slot

log = logging.getLogger(__name__)

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


def _python_handler(_signum: int, _frame: Any) -> None:
    # The number already went to the wakeup socket; the notifier acts on it.
    pass


class StopSignals(QObject):
    """Turns SIGTERM/SIGINT into the `received` Qt signal on the GUI thread.

    Call from the main thread (Python installs handlers only there). `close()`
    restores the previous handlers and wakeup fd.

    Signals:
        received(int): a stop signal arrived (its number).
    """

    received = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._read, self._write = socket.socketpair()
        for s in (self._read, self._write):
            s.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        self._notifier = QSocketNotifier(self._read.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)
        self._closed = False
        self.reinstall()

    def reinstall(self) -> None:
        """(Re)install Python's handlers over whatever a native library put there."""
        if self._closed:
            return
        for s in STOP_SIGNALS:
            signal.signal(s, _python_handler)

    @Slot()
    def _drain(self, *_args: Any) -> None:
        try:
            data = self._read.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        for num in data:
            if num in (int(s) for s in STOP_SIGNALS):
                log.info("signal %s received: stopping", signal.Signals(num).name)
                self.received.emit(num)

    def close(self) -> None:
        """Restore the handlers and wakeup fd that were there before."""
        if self._closed:
            return
        self._closed = True
        self._notifier.setEnabled(False)
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(self._old_fd)
        self._read.close()
        self._write.close()
