"""One name for a unit's checkpoint, shared by the app's solo mode and the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import DEV, PRODUCTION, Assignment, Verifier, checkpoint_unit, unit_checkpoint_path
from engine.cpu import CpuBackend
from network.node import Node, NodeConfig
from tests.netutil import make_profile


@pytest.mark.parametrize("unit", [0, 1, 9, 10, 12345])
def test_a_unit_checkpoint_name_reads_back_as_its_unit(unit: int) -> None:
    path = unit_checkpoint_path(Path("/x"), DEV, unit)
    assert path.parent == Path("/x")
    assert checkpoint_unit(path, DEV) == unit
    # another parameter set's file is not this set's checkpoint
    assert checkpoint_unit(path, PRODUCTION) is None


@pytest.mark.parametrize(
    "name",
    ["dev-unit--3.ckpt", "dev-unit-+3.ckpt", "dev-unit- 3.ckpt", "dev-unit-03.ckpt", "dev-unit-.ckpt",
     "dev-unit-3.ckpt.tmp", "dev-unit-3a.ckpt", "dev-unit-٣.ckpt", "prod-unit-3.ckpt"],
)
def test_other_files_are_no_unit_checkpoint(name: str) -> None:
    assert checkpoint_unit(Path(name), DEV) is None


def test_the_older_network_name_still_reads() -> None:
    assert checkpoint_unit(Path("dev-unit7.ckpt"), DEV) == 7


def test_negative_units_have_no_checkpoint_name() -> None:
    with pytest.raises(ValueError):
        unit_checkpoint_path(Path("/x"), DEV, -1)


def _start_node(data_dir: Path, profile) -> Node:
    cfg = NodeConfig(data_dir=data_dir, params=DEV, listen=("/ip4/127.0.0.1/tcp/0",), bootstrap=())
    node = Node(cfg, profile, profile.node_key())
    node.start()
    return node


@pytest.mark.network
def test_the_node_resumes_a_unit_the_app_began_in_solo_mode(tmp_path) -> None:
    """Regression: the node read the app's `dev-unit-3.ckpt` as unit -3 and failed on every start."""
    profile = make_profile(tmp_path / "me", "solo")
    folder = tmp_path / "me" / "checkpoints"
    folder.mkdir(parents=True)
    solo = Assignment.of_unit(DEV, 3, folder)
    job = Verifier(DEV, solo.lo, solo.hi, CpuBackend(DEV), checkpoint=solo.checkpoint)
    for _ in range(4):
        job.step()
    job.close()  # interrupted in solo mode
    node = _start_node(tmp_path / "me", profile)
    try:
        a = node.next_assignment()
        assert a is not None
        assert (a.unit, a.lo, a.hi, a.checkpoint) == (3, solo.lo, solo.hi, solo.checkpoint)
        resumed = Verifier(DEV, a.lo, a.hi, CpuBackend(DEV), checkpoint=a.checkpoint)
        assert resumed.blocks_done == 4
        resumed.close()
    finally:
        node.stop()


@pytest.mark.network
def test_the_node_moves_an_older_checkpoint_name_and_resumes_it(tmp_path) -> None:
    profile = make_profile(tmp_path / "me", "solo")
    folder = tmp_path / "me" / "checkpoints"
    folder.mkdir(parents=True)
    lo, hi = DEV.unit_range(0)
    old = folder / "dev-unit0.ckpt"
    job = Verifier(DEV, lo, hi, CpuBackend(DEV), checkpoint=old)
    for _ in range(2):
        job.step()
    job.close()
    node = _start_node(tmp_path / "me", profile)
    try:
        a = node.next_assignment()
        assert a is not None and a.unit == 0 and a.checkpoint == folder / "dev-unit-0.ckpt"
        assert not old.exists()
        resumed = Verifier(DEV, a.lo, a.hi, CpuBackend(DEV), checkpoint=a.checkpoint)
        assert resumed.blocks_done == 2
        resumed.close()
    finally:
        node.stop()
