"""The account and records commands, driven through argparse like main.py does."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from network import codec
from network.commands import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery\n")
    pw2 = tmp_path / "pw2"
    pw2.write_text("another staple battery\r\n")
    bad = tmp_path / "bad"
    bad.write_text("not the passphrase\n")
    return {"pw": str(pw), "pw2": str(pw2), "bad": str(bad), "dir": str(tmp_path / "profile")}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys, f):
    return run(capsys, "account", "create", "--data-dir", f["dir"], "--username", "Alice",
               "--passphrase-file", f["pw"], "--kdf-strength", "min")  # fmt: skip


def test_create_and_show(capsys, files):
    code, out, err = create(capsys, files)
    assert code == 0, err
    assert "username Alice" in out
    for name in ("account.key", "node.key", "node.secret"):
        assert stat.S_IMODE(os.stat(Path(files["dir"]) / name).st_mode) == 0o600
    code, out2, _ = run(capsys, "account", "show", "--data-dir", files["dir"])
    assert code == 0
    assert out.splitlines()[0] in out2  # same account key
    code, _, err = create(capsys, files)
    assert code == 1 and "already has an account" in err and len(err.splitlines()) == 1


def test_wrong_passphrase_exit_1_and_file_untouched(capsys, files):
    create(capsys, files)
    key = Path(files["dir"]) / "account.key"
    before = key.read_bytes()
    code, out, err = run(capsys, "account", "passphrase", "--data-dir", files["dir"],
                         "--passphrase-file", files["bad"], "--new-passphrase-file", files["pw2"])  # fmt: skip
    assert code == 1
    assert err == "hailstone: error: wrong passphrase; nothing was changed\n"
    assert key.read_bytes() == before
    code, out, err = run(capsys, "account", "passphrase", "--data-dir", files["dir"],
                         "--passphrase-file", files["pw"], "--new-passphrase-file", files["pw2"])  # fmt: skip
    assert code == 0, err
    assert key.read_bytes() != before


def test_export_import_revoke_and_records_show(capsys, files, tmp_path):
    create(capsys, files)
    out_file = tmp_path / "export.key"
    code, _, err = run(capsys, "account", "export", "--data-dir", files["dir"], "--out", out_file,
                       "--passphrase-file", files["pw"], "--new-passphrase-file", files["pw2"])  # fmt: skip
    assert code == 0, err
    laptop = str(tmp_path / "laptop")
    code, _, err = run(capsys, "account", "import", out_file, "--data-dir", laptop,
                       "--passphrase-file", files["pw"])  # fmt: skip
    assert code == 1 and "wrong passphrase" in err
    code, out, err = run(capsys, "account", "import", out_file, "--data-dir", laptop,
                         "--passphrase-file", files["pw2"])  # fmt: skip
    assert code == 0, err
    assert "username Alice" in out
    code, out, err = run(capsys, "account", "revoke-node", "--data-dir", laptop,
                         "--passphrase-file", files["pw2"])  # fmt: skip
    assert code == 0, err
    assert out.startswith("revoked ") and "new node" in out
    records = sorted((Path(laptop) / "records").iterdir())
    assert len(records) == 4  # account, first delegation, revocation, new delegation
    for path in records:
        code, out, err = run(capsys, "records", "show", path.name, "--data-dir", laptop)
        assert code == 0, out + err
        assert f"cid       {path.name}" in out and "verdict   accepted" in out
    # A file outside the store, and a damaged copy of it.
    data = records[0].read_bytes()
    copy = tmp_path / "rec.bin"
    copy.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    code, out, _ = run(capsys, "records", "show", copy, "--data-dir", laptop)
    assert code == 1 and "verdict   rejected (bad_signature)" in out
    code, _, err = run(capsys, "records", "show", codec.record_cid(b"x"), "--data-dir", laptop)
    assert code == 1 and "in this profile's ledger" in err


def test_usage_errors_exit_2(capsys, files):
    code, _, err = run(capsys, "account", "create", "--data-dir", files["dir"], "--username",
                       "a b", "--passphrase-file", files["pw"], "--kdf-strength", "min")  # fmt: skip
    assert code == 2 and err.startswith("hailstone: error: a username may use only")
    assert not (Path(files["dir"]) / "account.key").exists()
    code, _, err = run(capsys, "account", "revoke-node", "zz", "--data-dir", files["dir"],
                       "--passphrase-file", files["pw"])  # fmt: skip
    assert code == 2
    code, _, err = run(capsys, "account", "show", "--data-dir", files["dir"])
    assert code == 1 and "run 'account create'" in err
    code, _, err = run(capsys, "account", "passphrase", "--data-dir", files["dir"],
                       "--passphrase-file", str(Path(files["dir"]) / "missing"))  # fmt: skip
    assert code == 2 and "cannot read" in err
    with pytest.raises(SystemExit) as exc:
        main(["account", "frobnicate"])
    assert exc.value.code == 2


def test_subprocess_no_prompt_without_terminal(tmp_path, files):
    # No --username and no terminal: a clear error, not a hang or a traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "network.commands", "account", "create", "--data-dir",
         files["dir"], "--passphrase-file", files["pw"], "--kdf-strength", "min"],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == "hailstone: error: no terminal to ask on; use --username\n"
