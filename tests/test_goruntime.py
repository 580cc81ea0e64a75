"""The embedded Go runtime's settings reach it: the program runs itself again with them."""

from __future__ import annotations

import os
import subprocess
import sys

from network.ipfs import goruntime
from tests.netutil import ROOT

SCRIPT = (
    "import os, sys\n"
    "sys.path.insert(0, {root!r})\n"
    "print('start', os.getpid(), flush=True)\n"
    "from network.ipfs.goruntime import ensure_go_environment\n"
    "ensure_go_environment()\n"
    "print('go', os.getpid(), os.environ.get('GOGC'), os.environ.get('HAILSTONE_GO_ENV'))\n"
)


def _run(tmp_path, **env: str) -> list[list[str]]:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    base = {k: v for k, v in os.environ.items()
            if k not in ("GOGC", goruntime.MARKER, goruntime.OPT_OUT)}
    out = subprocess.run([sys.executable, str(script)], env={**base, **env},
                         capture_output=True, text=True, timeout=60, check=True)
    return [line.split() for line in out.stdout.splitlines()]


def test_missing_settings_are_added_in_the_same_process(tmp_path) -> None:
    lines = _run(tmp_path)
    # the program started twice (exec keeps the pid: a service manager sees one process)
    assert [line[0] for line in lines] == ["start", "start", "go"]
    assert lines[0][1] == lines[1][1] == lines[2][1]
    assert lines[2][2:] == [goruntime.GO_RUNTIME_ENV["GOGC"], "1"]


def test_a_value_the_user_set_wins_and_nothing_runs_twice(tmp_path) -> None:
    lines = _run(tmp_path, GOGC="80")
    assert [line[0] for line in lines] == ["start", "go"]
    assert lines[1][2:] == ["80", "None"]


def test_the_opt_out_keeps_go_defaults(tmp_path) -> None:
    lines = _run(tmp_path, HAILSTONE_NO_REEXEC="1")
    assert [line[0] for line in lines] == ["start", "go"]
    assert lines[1][2] == "None"


def test_the_command_line_run_again() -> None:
    assert goruntime.reexec_argv(["main.py", "node", "--x"], "/py", frozen=False)[-3:] == [
        "main.py", "node", "--x"]
    assert goruntime.reexec_argv(["/opt/hailstone/hailstone", "node"], "/opt/hailstone/hailstone",
                                 frozen=True) == ["/opt/hailstone/hailstone", "node"]
    assert goruntime.missing_settings({"GOGC": "50"}) == {}
    assert goruntime.missing_settings({}) == dict(goruntime.GO_RUNTIME_ENV)
