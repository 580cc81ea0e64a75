"""App pieces that need no display: ring buffers, settings, policy, messages, solo ledger."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import time

import numpy as np
import pytest

from app import autostart
from app.messages import CODES, classify_exception, message
from app.network_bridge import SoloLedger, WorkBridge, passphrase_strength
from app.ringbuffer import RateTracker, RingBuffer
from engine import Params, Verifier, make_backend
from engine.policy import Situation, battery_state, decide, on_battery, running_programs
from engine.settings import ENGINE_SETTINGS, Setting, SettingsStore, effective_cores, parse_window
from network.settings import NETWORK_SETTINGS

ALL = ENGINE_SETTINGS + NETWORK_SETTINGS


def test_ring_buffer_keeps_last_samples_oldest_first():
    rb = RingBuffer(4)
    assert len(rb) == 0 and rb.last() is None
    for i in range(6):
        rb.append(float(i), 10.0 * i)
    t, v = rb.arrays()
    assert t.tolist() == [2.0, 3.0, 4.0, 5.0]
    assert v.tolist() == [20.0, 30.0, 40.0, 50.0]
    assert rb.last() == (5.0, 50.0)
    t[0] = 99  # arrays() returns copies
    assert rb.arrays()[0][0] == 2.0
    rb.clear()
    assert len(rb) == 0
    with pytest.raises(ValueError):
        RingBuffer(0)


def test_rate_tracker_holds_rates_then_drops_to_zero():
    rt = RateTracker(
        ("cpu", "gpu"), fine_s=1.0, fine_span_s=10, coarse_s=4.0, coarse_span_s=40, stale_s=2.0
    )
    rt.report("cpu", 100.0, now=0.0)
    rt.report("reference", 5.0, now=0.0)  # not a plotted series: ignored
    for t in range(9):
        rt.tick(float(t))
    _, cpu = rt.fine["cpu"].arrays()
    assert cpu.tolist() == [100.0, 100.0, 100.0, 0, 0, 0, 0, 0, 0]
    assert rt.fine["gpu"].arrays()[1].sum() == 0
    _, coarse = rt.coarse["cpu"].arrays()
    assert len(coarse) == 2 and coarse[0] == pytest.approx(60.0)  # mean of 5 samples at t=0..4
    assert rt.total(1.0) == 100.0 and rt.total(10.0) == 0.0


@pytest.mark.parametrize("setting", ALL, ids=lambda s: s.key)
def test_every_default_fits_its_type(setting: Setting):
    assert setting.validate(setting.default) == setting.default
    assert setting.title and setting.help


def test_store_saves_only_changes_and_types_values(tmp_path):
    path = tmp_path / "settings.json"
    st = SettingsStore(path, ALL)
    assert st["cpu_share"] == 100 and isinstance(st["gpu_enabled"], bool)
    assert not path.exists()
    seen = []
    st.subscribe(lambda k, v: seen.append((k, v)))
    st.set("cpu_share", 50.0)  # a whole float becomes the int the setting declares
    st.set("schedule", ["Mon-Fri 18:00-08:00"])
    st.set("idle_only", False)  # the default: not written, no event
    assert json.loads(path.read_text()) == {"cpu_share": 50, "schedule": ["Mon-Fri 18:00-08:00"]}
    assert seen == [("cpu_share", 50), ("schedule", ("Mon-Fri 18:00-08:00",))]
    with pytest.raises(ValueError, match="minimum"):
        st.set("cpu_share", 1)
    with pytest.raises(ValueError, match="time window"):
        st.set("schedule", ["weekends"])
    st.reset("cpu_share")
    assert json.loads(path.read_text()) == {"schedule": ["Mon-Fri 18:00-08:00"]}
    assert SettingsStore(path, ALL)["schedule"] == ("Mon-Fri 18:00-08:00",)


def test_store_drops_unknown_and_invalid_keys_and_migrates(tmp_path, caplog):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"cores": 3, "bogus": 1, "cpu_share": "lots", "listen_port": 4101}))
    st = SettingsStore(path, ALL)
    assert st["cpu_cores"] == 3  # renamed key carried over
    assert st["cpu_share"] == 100  # invalid value: default
    assert st["listen_port"] == 4101
    assert any("bogus" in w for w in st.warnings) and any("cpu_share" in w for w in st.warnings)
    assert "bogus" in caplog.text
    assert json.loads(path.read_text()) == {"cpu_cores": 3, "listen_port": 4101}  # cleaned up
    path.write_text("{not json")
    assert SettingsStore(path, ALL)["cpu_cores"] == 0


def test_effective_cores():
    assert effective_cores(0, 8) == 7
    assert effective_cores(0, 1) == 1
    assert effective_cores(16, 8) == 8
    assert effective_cores(2, 8) == 2


def _ts(weekday: int, hour: int, minute: int = 0) -> float:
    # 2024-01-01 was a Monday.
    return dt.datetime(2024, 1, 1 + weekday, hour, minute).timestamp()


def test_schedule_windows_including_overnight_and_wrapping_days():
    w = parse_window("Mon-Fri 18:00-08:00")
    assert w.contains(0, 19 * 60) and w.contains(1, 7 * 60)  # Mon evening, Tue morning
    assert not w.contains(0, 12 * 60)
    assert w.contains(5, 7 * 60)  # Saturday morning belongs to Friday night
    assert not w.contains(0, 7 * 60)  # Monday morning belongs to Sunday: not listed
    assert parse_window("Sat-Mon 00:00-24:00").days == frozenset({5, 6, 0})
    for bad in ("Mon 25:00-26:00", "Xyz 10:00-11:00", "Mon 10:00-10:00", "10-11"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_policy_rules():
    base = {k.key: k.default for k in ENGINE_SETTINGS}
    now = _ts(2, 12)
    assert decide(base, Situation(now)).run
    assert decide({**base, "snooze_until": now + 60}, Situation(now)).reason.startswith("snoozed")
    assert decide({**base, "snooze_until": now - 60}, Situation(now)).run
    assert decide(base, Situation(now, on_battery=True)).reason == "on battery"
    assert decide({**base, "pause_on_battery": False}, Situation(now, on_battery=True)).run
    evenings = {**base, "schedule": ("Mon-Fri 18:00-08:00",)}
    assert decide(evenings, Situation(now)).reason == "outside the schedule"
    assert decide(evenings, Situation(_ts(2, 20))).run
    games = {**base, "pause_programs": ("Game.exe",)}
    assert (
        decide(games, Situation(now, programs=frozenset({"game", "bash"}))).reason
        == "game is running"
    )
    assert decide(games, Situation(now, programs=frozenset({"bash"}))).run
    assert decide(games, Situation(now, programs=None)).run  # unknown: the rule cannot block
    idle = {**base, "idle_only": True, "idle_seconds": 300}
    assert not decide(idle, Situation(now, idle_seconds=10)).run
    assert decide(idle, Situation(now, idle_seconds=600)).run


def test_platform_probes_see_a_real_process_and_read_psutils_battery():
    import shutil
    import subprocess
    from types import SimpleNamespace

    import psutil

    sleep = shutil.which("sleep")
    if sleep is None:  # pragma: no cover - Windows
        pytest.skip("no sleep program to start")
    child = subprocess.Popen([sleep, "30"])
    try:
        progs = running_programs()
        assert progs is not None and "sleep" in progs
        assert any("python" in p or "pytest" in p for p in progs)  # this test itself
    finally:
        child.kill()
        child.wait(timeout=10)
    assert battery_state(SimpleNamespace(percent=40, secsleft=3600, power_plugged=False)) is True
    assert battery_state(SimpleNamespace(percent=90, secsleft=-2, power_plugged=True)) is False
    assert battery_state(SimpleNamespace(percent=90, secsleft=-2, power_plugged=None)) is None
    assert battery_state(None) is None  # no battery: the rule cannot block
    assert on_battery() is battery_state(psutil.sensors_battery())


def test_messages_have_a_next_step():
    for code in CODES:
        m = message(code, "x")
        assert m.text.endswith(".") and m.severity in ("info", "warning", "error")
    assert "CPU" in message("no_gpu", "no CUDA").text
    assert "4001" in message("port_busy", "4001").text
    assert classify_exception(OSError(errno.ENOSPC, "No space left", "/data")) == (
        "disk_full",
        "/data",
    )
    assert classify_exception(OSError(errno.EADDRINUSE, "busy"))[0] == "port_busy"
    assert classify_exception(RuntimeError("boom")) == ("engine_failed", "RuntimeError: boom")
    assert "Something went wrong" in message("nope", "x").text


def test_solo_ledger_computes_units_in_order_and_survives_restart(tmp_path):
    p = Params.custom(name="tiny", unit_bits=18, block_bits=16, sieve_k=16)
    bridge = WorkBridge(tmp_path, p, try_network=False)
    assert bridge.solo and bridge.status().text.endswith("(solo mode)")
    a = bridge.next_assignment()
    assert (a.unit, a.lo, a.hi) == (0, *p.unit_range(0))
    backend = make_backend("cpu", p)
    job = Verifier(p, a.lo, a.hi, backend, checkpoint=a.checkpoint)
    while not job.done:
        job.step()
    result = job.result()
    assert bridge.submit(a, result) == ""
    again = WorkBridge(tmp_path, p, try_network=False)
    assert again.next_assignment().unit == 1
    rows = again.my_units()
    assert rows[0].unit == 0 and rows[0].root_hex == result.root.hex()
    assert again.status().frontier == 1
    with pytest.raises(ValueError):
        SoloLedger(tmp_path, p).record(5, result)
    other = Params.custom(name="other", unit_bits=20, block_bits=16, sieve_k=16)
    assert WorkBridge(tmp_path, other, try_network=False).next_assignment().unit == 0
    assert list(tmp_path.glob("solo_units.json.*.other"))  # set aside, not overwritten
    assert isinstance(np.float64(1), np.floating)


def test_passphrase_strength_orders_sensibly():
    assert passphrase_strength("abc")[0] == 0
    assert (
        passphrase_strength("abcdefgh")[0] < passphrase_strength("correct horse battery staple")[0]
    )


def test_autostart_linux_entry(tmp_path):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the .desktop entry is Linux-only")
    path = autostart.set_enabled(True, config_home=tmp_path)
    text = path.read_text()
    assert "Exec=" in text and "--minimized" in text
    assert autostart.is_enabled(config_home=tmp_path)
    autostart.set_enabled(False, config_home=tmp_path)
    assert not path.exists()


def test_core_modules_do_not_import_qt():
    import subprocess
    import sys

    code = (
        "import engine.settings, engine.policy, network.settings, network.profile_dir, "
        "app.stats, app.credit, app.formatting, app.app_settings, app.network_bridge, app.syslibs, "
        "sys; "
        "print('PySide6' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_failed_settings_write_leaves_memory_and_file_alone(tmp_path, monkeypatch):
    import engine.settings

    path = tmp_path / "settings.json"
    st = SettingsStore(path, ALL)
    st.set("cpu_share", 80)
    heard = []
    st.subscribe(lambda k, v: heard.append(k))

    def full(p, _data, mode=0o644):
        raise OSError(errno.ENOSPC, "No space left on device", str(p))

    monkeypatch.setattr(engine.settings, "write_atomic", full)
    with pytest.raises(OSError):
        st.set("cpu_share", 50)
    assert st["cpu_share"] == 80 and heard == []
    assert json.loads(path.read_text()) == {"cpu_share": 80}


@pytest.mark.parametrize("frozen", [False, True])
def test_autostart_command_parses_and_keeps_the_profile(tmp_path, monkeypatch, frozen):
    import sys

    from main import build_parser

    if frozen:
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    cmd = autostart.command_line(tmp_path / "profile", "dev")
    # The frozen executable is main.py's parser; the script form runs main.py.
    argv = cmd[1:] if frozen else cmd[2:]
    if not frozen:
        assert cmd[1].endswith("main.py")
    args = build_parser().parse_args(argv)
    assert args.command == "gui" and args.minimized
    assert args.data_dir == str((tmp_path / "profile").resolve()) and args.params == "dev"


def test_idle_time_parsers() -> None:
    from engine import policy

    assert policy.parse_gdbus_idle("(uint64 12345,)\n") == 12.345
    assert policy.parse_gdbus_idle("Error: GDBus.Error:org.freedesktop.DBus.Error.ServiceUnknown") is None
    ioreg = '    |   "HIDIdleTime" = 2500000000\n    |   "HIDSomething" = 3\n'
    assert policy.parse_ioreg_idle(ioreg) == 2.5
    assert policy.parse_ioreg_idle("no such key") is None


def test_x11_idle_time_from_a_real_x_server(tmp_path) -> None:
    import shutil
    import subprocess

    from engine import policy

    assert policy.x11_idle_seconds("") is None
    assert policy.x11_idle_seconds(":1234") is None  # no server there
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (scripts/test.sh installs it where it can)")
    display = f":{200 + os.getpid() % 500}"
    server = subprocess.Popen([xvfb, display, "-screen", "0", "320x240x24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        seconds = None
        while seconds is None and time.monotonic() < deadline and server.poll() is None:
            seconds = policy.x11_idle_seconds(display)
            time.sleep(0.1)
        assert seconds is not None and 0.0 <= seconds < 3600
    finally:
        server.terminate()
        server.wait(timeout=10)
