"""The systemd units: rendered once, verified by systemd itself, installed by the CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from network.systemd import UnitOptions, render_unit, this_command
from tests.netutil import ROOT

needs_systemd = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="systemd exists only on Linux (scripts/test.sh installs it there)",
)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args],
                          capture_output=True, text=True, timeout=120)


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def verify(path: Path, *, user: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: apt-get install systemd"
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    return subprocess.run(
        ["systemd-analyze", *(["--user"] if user else []), "verify", str(path)],
        capture_output=True, text=True, timeout=120, env=env,
    )


@needs_systemd
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_systemd_analyze_verifies_the_units_without_a_warning(tmp_path, user) -> None:
    path = tmp_path / "hailstone.service"
    path.write_text(render_unit(UnitOptions(command=this_command(), user=user, backend="gpu")))
    out = verify(path, user=user, tmp_path=tmp_path)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


@needs_systemd
def test_systemd_analyze_catches_a_broken_unit(tmp_path) -> None:
    # The check above means something: verify fails on a program that is not there.
    path = tmp_path / "hailstone.service"
    path.write_text(render_unit(UnitOptions(command=("/nonexistent/hailstone",))))
    out = verify(path, user=False, tmp_path=tmp_path)
    assert out.returncode != 0 and "/nonexistent/hailstone" in out.stderr


@needs_systemd
def test_the_system_unit_is_hardened(tmp_path) -> None:
    path = tmp_path / "hailstone.service"
    path.write_text(render_unit(UnitOptions(command=this_command())))
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(path)],
                         capture_output=True, text=True, timeout=120)
    level = re.search(r"Overall exposure level for hailstone.service: ([\d.]+) (\w+)", out.stdout)
    assert level, out.stdout + out.stderr
    # systemd's scale: 0 is locked down, 10 is wide open; below 4 it says "OK".
    assert float(level.group(1)) < 4.0, out.stdout


def test_the_units_say_what_the_issue_asks_for() -> None:
    system = settings(render_unit(UnitOptions(command=("/opt/hailstone/hailstone",))))
    for key, value in {
        "User": "hailstone", "StateDirectory": "hailstone", "ProtectSystem": "strict",
        "NoNewPrivileges": "yes", "Restart": "on-failure", "KillSignal": "SIGTERM",
        "TimeoutStopSec": "30", "PrivateDevices": "yes", "WantedBy": "multi-user.target",
    }.items():
        assert system[key] == [value], key
    assert system["ExecStart"] == [
        "/opt/hailstone/hailstone node --data-dir %S/hailstone --status-file "
        "%t/hailstone/status.json --backend cpu --log-level info --metrics 127.0.0.1:9464"
    ]
    gpu = settings(render_unit(UnitOptions(command=("/x",), backend="gpu")))
    assert gpu["PrivateDevices"] == ["no"]  # CUDA needs /dev/nvidia*
    user = settings(render_unit(UnitOptions(command=("/x",), user=True, data_dir="/p q/%n",
                                            metrics=None, extra=("--cores", "2"))))
    assert "User" not in user and user["WantedBy"] == ["default.target"]
    assert user["ExecStart"] == [
        "/x node --data-dir '/p q/%%n' --status-file %t/hailstone/status.json --backend cpu "
        "--log-level info --cores 2"
    ]


def test_the_packaged_units_are_what_the_code_renders() -> None:
    folder = ROOT / "packaging" / "systemd"
    system = render_unit(UnitOptions(command=("/opt/hailstone/hailstone",)))
    user = render_unit(UnitOptions(command=("/opt/hailstone/hailstone",), user=True,
                                   data_dir="%h/.local/share/hailstone"))
    hint = "regenerate with: main.py service print [--user] --command /opt/hailstone/hailstone"
    assert (folder / "hailstone.service").read_text() == system, hint
    assert (folder / "hailstone-user.service").read_text() == user, hint


@pytest.mark.network
def test_the_units_command_line_runs_a_node_that_stops_on_the_units_kill_signal(tmp_path) -> None:
    """ExecStart= as systemd would run it (specifiers expanded), then KillSignal=."""
    import shlex
    import signal

    from tests.netutil import assert_nothing_lost, make_profile, wait_until

    make_profile(tmp_path / "state" / "hailstone", "unit")
    text = render_unit(UnitOptions(
        command=this_command(), metrics=None,
        extra=("--params", "dev", "--no-bootstrap", "--listen", "/ip4/127.0.0.1/tcp/0",
               "--cores", "1"),
    ))
    unit = settings(text)
    expanded = (unit["ExecStart"][0].replace("%S", str(tmp_path / "state"))
                .replace("%t", str(tmp_path / "run")))
    (tmp_path / "run" / "hailstone").mkdir(parents=True)  # RuntimeDirectory=
    argv = shlex.split(expanded)
    assert argv[: len(this_command())] == list(this_command())
    log = open(tmp_path / "unit.log", "wb")  # noqa: SIM115 - the child's
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    status = tmp_path / "run" / "hailstone" / "status.json"
    try:
        def computing() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "unit.log").read_text())
            return status.exists() and '"blocks_done": 0' not in status.read_text()

        wait_until(computing, 120, "the unit's node computing")
        proc.send_signal(getattr(signal, unit["KillSignal"][0]))
        # TimeoutStopSec= is the bound systemd gives before SIGKILL
        assert proc.wait(timeout=int(unit["TimeoutStopSec"][0])) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_nothing_lost(tmp_path / "state" / "hailstone")
    assert (tmp_path / "state" / "hailstone" / "logs" / "node.log").exists()


def test_service_install_writes_the_unit_under_a_root(tmp_path) -> None:
    out = cli("service", "install", "--root", str(tmp_path), "--backend", "gpu", "--no-metrics")
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "etc" / "systemd" / "system" / "hailstone.service"
    text = unit.read_text()
    assert "--backend gpu" in text and "--metrics" not in text
    assert f"ExecStart={' '.join(this_command())} node" in text
    out = cli("service", "install", "--user", "--root", str(tmp_path), "--data-dir", "/srv/p")
    assert out.returncode == 0, out.stderr
    user_unit = tmp_path / ".config" / "systemd" / "user" / "hailstone.service"
    assert "--data-dir /srv/p" in user_unit.read_text()
    out = cli("service", "uninstall", "--root", str(tmp_path))
    assert out.returncode == 0 and not unit.exists() and user_unit.exists()
    out = cli("service", "install", "--data-dir", "/srv/p", "--root", str(tmp_path))
    assert out.returncode == 2 and "--data-dir is for --user" in out.stderr
