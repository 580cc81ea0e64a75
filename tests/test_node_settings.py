"""Settings declared once, read by both front ends: `main.py node` reads the profile's
settings.json (read-only) with its flags winning, and builds the same NodeConfig as
the app (`NodeConfig.from_settings`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import DEV
from engine.settings import ENGINE_SETTINGS, SETTINGS_FILE, SettingsStore, effective_cores
from main import build_parser
from network.ipfs.embedded import DEFAULT_BOOTSTRAP, PUBLIC_LISTEN
from network.node import NodeConfig
from network.node_commands import node_options, read_settings
from network.settings import NETWORK_SETTINGS, listen_addresses, network_setting

ROOT = Path(__file__).resolve().parent.parent
PEER = "/ip4/127.0.0.1/tcp/4101/p2p/12D3KooWJ3DnzVgpeQMHXiZSjkm4jRL9NtY2ELRUjEVtPzZoSvRF"


def _write(folder: Path, values: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SETTINGS_FILE
    path.write_text(json.dumps(values))
    return path


def _args(*argv: str):
    return build_parser().parse_args(["node", *argv])


def test_the_node_reads_the_apps_file_without_touching_it(tmp_path, caplog):
    # "theme" is the app's own setting; "cpu_share": "fast" is invalid.
    path = _write(tmp_path, {"theme": "dark", "cpu_cores": 2, "cpu_share": "fast"})
    before = path.read_bytes()
    store = read_settings(tmp_path)
    assert store["cpu_cores"] == 2 and store["cpu_share"] == 100
    assert path.read_bytes() == before  # never rewritten: the app owns it
    assert len(store.warnings) == 1 and "cpu_share" in store.warnings[0]  # not "theme"
    with pytest.raises(PermissionError):
        store.set("cpu_cores", 3)
    assert path.read_bytes() == before


def test_default_settings_give_the_default_node():
    defaults = {s.key: s.default for s in ENGINE_SETTINGS + NETWORK_SETTINGS}
    config = NodeConfig.from_settings(defaults, data_dir=Path("/p"), params=DEV)
    plain = NodeConfig(Path("/p"), DEV)
    assert config == plain
    assert listen_addresses(4001) == PUBLIC_LISTEN and config.bootstrap == DEFAULT_BOOTSTRAP


def test_node_options_come_from_the_settings(tmp_path):
    _write(tmp_path, {
        "params": "dev", "cpu_cores": 2, "cpu_share": 50, "gpu_enabled": False,
        "listen_port": 4101, "bootstrap": [PEER], "spot_check_share": 0.1,
        "ipfs_backend": "rpc", "kubo_api_addr": "/ip4/127.0.0.1/tcp/5002",
    })
    opts = node_options(_args(), read_settings(tmp_path).values(), tmp_path)
    assert (opts.params, opts.backend, opts.cores, opts.share) == (DEV, "cpu", 2, 0.5)
    c = opts.config
    assert c.listen == listen_addresses(4101) and c.bootstrap == (PEER,)
    assert c.spot_check_share == 0.1
    assert (c.ipfs_kind, c.api_addr) == ("rpc", "/ip4/127.0.0.1/tcp/5002")


def test_flags_win_over_the_settings(tmp_path):
    _write(tmp_path, {"params": "dev", "cpu_cores": 2, "gpu_enabled": False, "listen_port": 4101})
    opts = node_options(
        _args(
            "--params", "production", "--cores", "3", "--cpu-share", "25", "--backend", "gpu",
            "--gpu-devices", "1", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-bootstrap",
            "--spot-check-share", "0.3", "--ipfs", "embedded", "--unit-limit", "4",
        ),
        read_settings(tmp_path).values(),
        tmp_path,
    )
    assert (opts.params.name, opts.cores, opts.share) == ("production", 3, 0.25)
    assert (opts.backend, opts.gpu_devices) == ("gpu", (1,))
    c = opts.config
    assert c.listen == ("/ip4/127.0.0.1/tcp/0",) and c.bootstrap == ()
    assert (c.spot_check_share, c.ipfs_kind, c.unit_limit) == (0.3, "embedded", 4)


def test_with_no_settings_file_the_declared_defaults_apply(tmp_path):
    opts = node_options(_args(), read_settings(tmp_path).values(), tmp_path)
    assert opts.params.name == "production"
    assert opts.cores == effective_cores(0)  # the cpu_cores setting's "all but one"
    assert opts.backend == "gpu"  # gpu_enabled; the CPU takes over without a GPU
    assert opts.share == 1.0
    assert opts.config == NodeConfig(tmp_path, opts.params, claim_ttl_s=900)


@pytest.mark.parametrize("value", [-0.1, 0.6])
def test_spot_check_share_has_the_settings_bounds_on_the_command_line(tmp_path, value):
    maximum = network_setting("spot_check_share").maximum
    assert maximum == 0.5
    with pytest.raises(ValueError, match="--spot-check-share"):
        node_options(_args("--spot-check-share", str(value)), {
            s.key: s.default for s in ENGINE_SETTINGS + NETWORK_SETTINGS
        }, tmp_path)
    # The same value in the file is refused by the same declaration.
    _write(tmp_path, {"spot_check_share": value})
    store = read_settings(tmp_path)
    assert store["spot_check_share"] == 0.02 and len(store.warnings) == 1


def test_the_app_and_the_node_build_the_same_config(tmp_path):
    from app.network_bridge import WorkBridge

    _write(tmp_path, {"listen_port": 4101, "bootstrap": [PEER], "spot_check_share": 0.2})
    settings = read_settings(tmp_path).values()
    app_config = WorkBridge(tmp_path, DEV, settings, try_network=False).node_config()
    node_config = node_options(_args("--params", "dev"), settings, tmp_path).config
    assert app_config == node_config


def test_a_bad_flag_exits_2_with_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "node", "--data-dir", str(tmp_path),
         "--spot-check-share", "0.9"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "hailstone: --spot-check-share: 0.9 is above the maximum 0.5"
    ]
    assert not (tmp_path / SETTINGS_FILE).exists()  # nothing written


def test_store_rejects_nothing_it_declares(tmp_path):
    store = SettingsStore(None, ENGINE_SETTINGS + NETWORK_SETTINGS, read_only=True)
    assert set(store.values()) == {s.key for s in ENGINE_SETTINGS + NETWORK_SETTINGS}
