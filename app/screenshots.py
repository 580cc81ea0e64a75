"""Screenshots of every page, wizard page and the tray menu, from a real demo run.

The demo profile lives in a temporary folder and runs in network mode on the
dev parameter set, on loopback: a second, headless node (`NodeRunner` on a
thread of this process, its own embedded IPFS node) computes the same units
first, so the app's results are verified by a second account and the Network,
Leaderboard and History pages show a real peer and real verified units. Both
really compute. Runs on the offscreen platform when there is no display (or
on Xvfb if DISPLAY is set).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

PASS = "correct horse battery staple"
# Units both nodes compute: enough to keep the app busy for the demo's graph.
DEMO_UNITS = 50
LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)


class _Peer:
    """The demo's second volunteer: a headless node computing on a thread."""

    def __init__(self, base: Path, params) -> None:
        import threading

        from app.network_bridge import peer_for_demo

        self.node, self.runner = peer_for_demo(base / "peer", params, PASS, DEMO_UNITS, LOOPBACK)
        self.thread = threading.Thread(target=self.runner.run, name="demo-peer", daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return self.node.status().listen[0]

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(timeout=60)
        self.node.stop()


def _wait(app, cond, timeout_s: float) -> bool:
    from PySide6.QtCore import QEventLoop

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if cond():
            return True
    return cond()


def main(out: str | Path, seconds: float = 20.0) -> int:
    """Save the PNGs into `out`; returns 0 on success."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.application import HailstoneApp
    from engine import DEV

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Hailstone")
    saved = []

    def save(widget, name: str) -> None:
        path = out / f"{name}.png"
        widget.grab().save(str(path))
        saved.append(path)

    with tempfile.TemporaryDirectory(prefix="hailstone-demo-") as tmp:
        from app.network_bridge import MIN_KDF_LIMITS as limits

        peer = _Peer(Path(tmp), DEV)
        overrides = {
            "listen": LOOPBACK,
            "bootstrap": (),
            "peers": (peer.address,),
            "unit_limit": DEMO_UNITS,
            "head_interval_s": 1.0,
            "reannounce_interval_s": 2.0,
        }
        hs = HailstoneApp(
            Path(tmp) / "app", params=DEV, kdf_limits=limits, node_overrides=overrides
        )
        hs.launch()
        wiz = hs.wizard
        assert wiz is not None
        _wait(app, lambda: wiz.isVisible(), 5)
        page = wiz.account
        if page.accounts is not None:
            page.username.setText("demo-volunteer")
            page.passphrase.setText(PASS)
            page.passphrase2.setText(PASS)
        save(wiz, "wizard-1-account")
        wiz.next()
        _wait(app, lambda: wiz.currentPage() is wiz.compute, 30)
        _wait(app, lambda: not wiz.compute.gpu_note.text().startswith("Looking"), 30)
        save(wiz, "wizard-2-compute")
        wiz.next()
        save(wiz, "wizard-3-network")
        wiz.network.rpc.setChecked(True)
        wiz.network.test()
        _wait(app, lambda: wiz.network._job is None, 10)
        save(wiz, "wizard-3b-network-kubo-test")
        wiz.network.embedded.setChecked(True)
        wiz.next()
        save(wiz, "wizard-4-finish")
        # The peer reports every unit first, so each unit the app finishes is verified.
        _wait(app, lambda: peer.runner.units_done >= DEMO_UNITS, 120)
        wiz.accept()
        _wait(app, lambda: False, seconds)  # let it really compute for a while
        ctl = hs.ctl
        _wait(app, lambda: bool(ctl.last_status and ctl.last_status.peers), 20)
        win = hs.window
        win.resize(1000, 680)  # the preferred size (the offscreen screen is smaller)
        for title in (
            "Dashboard",
            "History",
            "Network",
            "Leaderboard",
            "Account",
            "Preferences",
            "Event log",
            "About",
        ):
            win.show_page(title)
            _wait(app, lambda: False, 0.6)
            save(win, "page-" + title.lower().replace(" ", "-"))
        win.show_page("Dashboard")
        win.pages["Dashboard"].set_view(1)
        _wait(app, lambda: False, 0.6)
        save(win, "page-dashboard-24h")
        win.pages["Dashboard"].set_view(2)
        _wait(app, lambda: False, 0.6)
        save(win, "page-dashboard-days")
        win.pages["Dashboard"].set_view(0)
        # The per-unit details of the newest verified unit.
        hist = win.pages["History"]
        win.show_page("History")
        _wait(app, lambda: False, 0.3)
        rows = [i for i, r in enumerate(hist.rows) if r.status == "verified"] or [0]
        hist.table.selectRow(rows[0])
        box = hist.show_details(rows[0])
        if box is not None:
            _wait(app, lambda: False, 0.3)
            save(box, "unit-details")
            box.close()
        # The smallest the window can be: nothing may overlap there.
        win.show_page("Dashboard")
        size = win.size()
        win.resize(win.minimumSizeHint())
        _wait(app, lambda: False, 0.6)
        save(win, "window-minimum")
        win.resize(size)
        menu = win.tray.menu
        menu.popup(win.mapToGlobal(win.rect().center()))
        _wait(app, lambda: False, 0.3)
        save(menu, "tray-menu")
        menu.hide()
        hs.shutdown()
        peer.stop()
    for p in saved:
        print(p)
    return 0
