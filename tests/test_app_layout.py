"""Issue #14 item 6: the window fits a 1366×768 screen at 100 % and 150 % scaling,
and long texts (a GPU warning, an error, the network line) never widen it.

Each scale runs in its own process: Qt reads QT_SCALE_FACTOR and the offscreen
screen's geometry (a config file) only when the application starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, tempfile, time
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.controller import AppController
from app.mainwindow import MainWindow
from app.network_bridge import BridgeStatus
from engine import Params
from engine.policy import Situation

tiny = Params.custom(name="tiny", unit_bits=22, block_bits=16, sieve_k=16)
calm = lambda _p=False: Situation(now=time.time(), idle_seconds=1e6, on_battery=False,
                                  programs=frozenset())
ctl = AppController(tempfile.mkdtemp(), params=tiny, try_network=False, probe=calm)
ctl.settings.set("cpu_cores", 1)
win = MainWindow(ctl, tray_available=lambda: False)
win.show()
app.processEvents()
out = {"screen": list(win.screen().availableGeometry().getRect()),
       "opened": [win.width(), win.height()]}
ctl.start_engine()
deadline = time.monotonic() + 60
while ctl.state[0] != "computing" and time.monotonic() < deadline:
    app.processEvents()
long = ("No usable GPU was found (CUDA driver version is insufficient for CUDA runtime "
        "version; libcuda.so.1 cannot be loaded from any of the searched folders); "
        "Hailstone computes on the CPU instead. Install the NVIDIA driver and CuPy.")
ctl.show("no_gpu", long)
ctl.network_status.emit(BridgeStatus(
    connected=False,
    text="Network: not connected (solo mode) because the network node did not start",
    state="solo", advice=long))
ctl.state_changed.emit("error", "engine_failed: " + long)
sizes = {}
for title in win.pages:
    win.show_page(title)
    for _ in range(5):
        app.processEvents()
    sizes[title] = [win.width(), win.height()]
hint = win.minimumSizeHint()
msg, net = win.message_label.geometry(), win.network_label.geometry()
out.update(
    after=[win.width(), win.height()],
    pages=sizes,
    min_hint=[hint.width(), hint.height()],
    frame=[win.frameGeometry().width(), win.frameGeometry().height()],
    message_right=msg.x() + msg.width(), network_left=net.x(),
    plot_min=win.pages["Dashboard"].plot.minimumHeight(),
)
ctl.shutdown()
print("RESULT " + json.dumps(out), flush=True)
"""


@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_window_fits_1366x768_and_long_texts_do_not_widen_it(tmp_path, scale):
    screen = tmp_path / "screen.json"
    screen.write_text(
        json.dumps(
            {
                "screens": [
                    {
                        "name": "laptop",
                        "x": 0,
                        "y": 0,
                        "width": 1366,
                        "height": 768,
                        "logicalDpi": 96,
                        "logicalBaseDpi": 96,
                        "dpr": 1,
                    }
                ]
            }
        )
    )
    env = dict(
        os.environ,
        QT_QPA_PLATFORM=f"offscreen:configfile={screen}",
        QT_SCALE_FACTOR=str(scale),
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=180
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stdout + proc.stderr
    r = json.loads(line.removeprefix("RESULT "))
    free_w, free_h = r["screen"][2], r["screen"][3]
    # The screen in logical pixels is 1366×768 divided by the scale.
    assert abs(free_w - 1366 / scale) <= 1 and abs(free_h - 768 / scale) <= 1
    # It opens inside the screen, with room for a panel and the title bar...
    assert r["opened"][0] <= free_w and r["opened"][1] <= free_h - 30
    # ...it could be made smaller still...
    assert r["min_hint"][0] <= free_w and r["min_hint"][1] <= free_h - 30
    # ...and long texts on every page did not make it grow.
    assert r["after"] == r["opened"]
    assert all(size == r["opened"] for size in r["pages"].values()), r["pages"]
    # The status message ends before the network line starts (no overlap).
    assert r["message_right"] <= r["network_left"]
