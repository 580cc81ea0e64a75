"""The CLI contract of `verify` and `bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.commands import UsageError, parse_integer

ROOT = Path(__file__).resolve().parent.parent
KEYS = {
    "start", "end", "backend", "tested", "odd_steps", "max_value", "max_n", "overflows",
    "candidates", "candidates_found", "root", "seconds", "numbers_per_second",
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, timeout=300
    )


def test_parse_integer() -> None:
    assert parse_integer("2**71+5") == 2**71 + 5
    assert parse_integer("2^71") == 2**71
    assert parse_integer("1<<40") == 2**40
    assert parse_integer(" 1_000 ") == 1000
    for bad in ("abc", "2.5", "2**99999", "__import__('os')", "1/0", ""):
        with pytest.raises(UsageError):
            parse_integer(bad)


def test_verify_json_contract() -> None:
    out = run("verify", "2**71", "--count", "2**20", "--json")
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert set(obj) == KEYS
    assert obj["start"] == 2**71 and obj["end"] == 2**71 + 2**20 and obj["backend"] == "cpu"
    assert isinstance(obj["max_value"], str) and len(obj["root"]) == 64
    ref = json.loads(run("verify", "2**71", "2**71+2**20", "--backend", "reference", "--json").stdout)
    for key in KEYS - {"seconds", "numbers_per_second", "backend"}:
        assert ref[key] == obj[key], key


def test_verify_singleton_27() -> None:
    obj = json.loads(run("verify", "27", "--json").stdout)
    assert obj["tested"] == 1 and obj["max_value"] == "9232" and obj["max_n"] == "27"


@pytest.mark.parametrize(
    "args",
    [
        ("verify", "10", "5"),
        ("verify", "0", "5"),
        ("verify", "abc"),
        ("verify", "5", "--count", "0"),
        ("verify", "5", "9", "--backend", "quantum"),
        ("verify", "5", "9", "--cores", "0"),
        ("bench", "--seconds", "-1"),
        ("bench", "--backend", "reference"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_gpu_absent_is_a_clean_error() -> None:
    out = run("verify", "5", "9", "--backend", "gpu")
    if out.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert out.returncode == 2 and out.stderr.startswith("hailstone: no GPU:")
    assert len(out.stderr.strip().splitlines()) == 1


def test_bench_json() -> None:
    out = run("bench", "--seconds", "0.5", "--cores", "1", "--json")
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert set(obj) == {"backend", "cores", "start", "seconds", "numbers_per_second", "batch_blocks"}
    assert obj["batch_blocks"] == 1  # the CPU runs a block per core
    assert obj["start"] == 2**71 and obj["numbers_per_second"] > 0 and obj["cores"] == 1


def test_gpu_command_explains_itself() -> None:
    out = run("gpu", "--json")
    obj = json.loads(out.stdout)
    assert set(obj) >= {"available", "reason", "devices", "kernel_compiles", "compiler"}
    assert out.returncode == (0 if obj["available"] else 1)
    if not obj["available"]:
        assert obj["reason"]  # never a bare "no"
    text = run("gpu")
    assert text.stdout.startswith("GPU usable: ")
    assert "kernel compiles: " in text.stdout


@pytest.mark.parametrize("command", [("verify", "5", "9"), ("bench", "--seconds", "1"), ("node",)])
def test_bad_gpu_device_list_is_one_line(command) -> None:
    out = run(*command, "--gpu-devices", "first")
    assert out.returncode == 2
    assert out.stderr.strip() == "hailstone: GPU devices must be indices such as 0 or 0,1 (got 'first')"
