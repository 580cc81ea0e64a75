"""One node, in process: resume after a restart, records from the ledger, status."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine import DEV, Verifier
from engine.cpu import CpuBackend
from network import codec
from network.node import Node, NodeConfig
from tests.netutil import ROOT, make_profile

pytestmark = pytest.mark.network


def make_node(tmp_path, profile, unit_limit: int | None = None) -> Node:
    """A started node; its parts take the config when built, so the limit is set here."""
    cfg = NodeConfig(
        data_dir=tmp_path / "me", params=DEV, listen=("/ip4/127.0.0.1/tcp/0",), bootstrap=(),
        unit_limit=unit_limit,
    )
    node = Node(cfg, profile, profile.node_key())
    node.start()
    return node


def test_a_restarted_node_resumes_its_unit_from_the_checkpoint(tmp_path) -> None:
    profile = make_profile(tmp_path / "me", "solo")
    node = make_node(tmp_path, profile)
    try:
        a = node.next_assignment()
        assert a is not None and a.unit == 0
        job = Verifier(DEV, a.lo, a.hi, CpuBackend(DEV), checkpoint=a.checkpoint)
        for _ in range(10):
            job.step()
        job.close()  # the machine loses power here: nothing submitted
    finally:
        node.stop()
    node = make_node(tmp_path, profile)
    try:
        again = node.next_assignment()
        assert again is not None and again.unit == 0 and again.checkpoint == a.checkpoint
        job = Verifier(DEV, again.lo, again.hi, CpuBackend(DEV), cores=2, checkpoint=again.checkpoint)
        assert job.blocks_done == 10
        for _ in job.run():
            pass
        cid = node.submit_unit(again, job.result())
        job.discard_checkpoint()
        assert node.my_units() == [(0, "reported_once", cid)]
        status = node.status()
        assert status.records == 3 and status.outbox == 3  # account, delegation, work
        # the next unit is a new one: a unit is never computed twice by one account
        assert node.next_assignment().unit == 1
        out = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "records", "show", cid, "--data-dir", str(tmp_path / "me")],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "kind      work" in out.stdout and "verdict   accepted" in out.stdout
    finally:
        node.stop()


def test_a_node_asked_for_a_gpu_it_lacks_computes_on_the_cpu(tmp_path) -> None:
    import threading

    from engine import gpu
    from network.runner import NodeRunner
    from tests.netutil import wait_until

    if gpu.probe().available:
        pytest.skip("this machine has a GPU")
    profile = make_profile(tmp_path / "me", "nogpu")
    node = make_node(tmp_path, profile, unit_limit=1)
    runner = NodeRunner(node, backend="gpu", cores=1)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_until(lambda: runner.units_done == 1, 120, "one unit on the CPU")
        (unit, status, _cid), = node.my_units()
        assert (unit, status) == (0, "reported_once")
    finally:
        runner.stop()
        thread.join(timeout=60)
        node.stop()
    assert not thread.is_alive()


class _GpuThatFails(CpuBackend):
    """A real backend standing in for a GPU whose driver resets after a few batches."""

    name = "gpu"

    def __init__(self, params, good_batches: int) -> None:
        super().__init__(params)
        self.good_batches = good_batches
        self.closed = False

    def run_blocks(self, ranges, cores):
        if self.good_batches == 0:
            raise RuntimeError("cudaErrorLaunchFailure: unspecified launch failure")
        self.good_batches -= 1
        return super().run_blocks(ranges, cores)

    def close(self) -> None:
        self.closed = True
        super().close()


def test_a_gpu_that_fails_mid_unit_hands_over_to_the_cpu(tmp_path, capfd) -> None:
    import threading

    from engine import verify_range
    from network.runner import NodeRunner
    from tests.netutil import wait_until

    profile = make_profile(tmp_path / "me", "flaky")
    node = make_node(tmp_path, profile, unit_limit=1)
    made: list[tuple[str, object]] = []

    def factory(name, params, **kwargs):
        backend = _GpuThatFails(params, good_batches=5) if name == "gpu" else CpuBackend(params)
        made.append((name, backend))
        return backend

    runner = NodeRunner(node, backend="gpu", cores=1, backend_factory=factory)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_until(lambda: runner.units_done == 1, 120, "the unit finished on the CPU")
        (unit, status, cid), = node.my_units()
        assert (unit, status) == (0, "reported_once")
        signed = codec.parse(node.ledger.get(cid))
        assert signed.record.root == verify_range(DEV, *DEV.unit_range(0), "cpu").root
    finally:
        runner.stop()
        thread.join(timeout=60)
        node.stop()
    assert not thread.is_alive()
    assert [name for name, _ in made] == ["gpu", "cpu"]
    assert made[0][1].closed
    assert "the GPU failed (cudaErrorLaunchFailure" in capfd.readouterr().err
