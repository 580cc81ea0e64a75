"""The history's root, time and backend come from the work records (no second store);
an older app's network_units.json is read until the records cover it, then set aside.

The node is an in-memory stand-in for the calls the bridge makes (the logic above
the node is what is tested; the real node's work records are tested in
tests/test_node_local.py and, through the app, in tests/test_app_network.py).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from app.network_bridge import NETWORK_UNITS_FILE, WorkBridge
from engine import DEV

ME = b"\x01" * 32


class _State:
    units: dict = {}

    def display_name(self, _account: bytes) -> str:
        return "me"


class _Node:
    account_pub = ME

    def __init__(self, works: dict) -> None:
        self.works = works

    def my_units(self):
        return [(w.unit, "reported_once", cid) for cid, w in self.works.items()]

    def state(self):
        return _State()

    def work_record(self, cid: str):
        return self.works.get(cid)


def _work(unit: int, root: bytes, backend: str = "cpu") -> SimpleNamespace:
    return SimpleNamespace(
        unit=unit, root=root, backend=backend, compute_ms=12_345, created=1_700_000_000 + unit
    )


def _bridge(tmp_path, node) -> WorkBridge:
    bridge = WorkBridge(tmp_path, DEV, try_network=False)
    bridge._node = node
    return bridge


def test_history_columns_come_from_the_work_records(tmp_path):
    node = _Node({"bafy-a": _work(3, b"\xaa" * 32, "gpu")})
    (row,) = _bridge(tmp_path, node).my_units()
    assert (row.unit, row.cid, row.root_hex) == (3, "bafy-a", "aa" * 32)
    assert (row.seconds, row.backend, row.finished_at) == (12.345, "gpu", 1_700_000_003.0)
    assert not (tmp_path / NETWORK_UNITS_FILE).exists()  # nothing else is written


def test_an_older_apps_file_is_read_until_covered_then_set_aside(tmp_path):
    legacy = {
        "dev": {
            "3": {"root": "aa" * 32, "seconds": 9.0, "backend": "cpu", "finished_at": 5.0,
                  "cid": "bafy-a"},
            "4": {"root": "bb" * 32, "seconds": 8.0, "backend": "gpu", "finished_at": 6.0,
                  "cid": "bafy-b"},
        }
    }
    path = tmp_path / NETWORK_UNITS_FILE
    path.write_text(json.dumps(legacy))
    # The node holds unit 3's record, and unit 4 only as a unit of mine without its
    # record (say, a ledger restored from an older backup): the file stays.
    node = _Node({"bafy-a": _work(3, b"\xaa" * 32)})
    node.my_units = lambda: [(3, "reported_once", "bafy-a"), (4, "reported_once", "bafy-b")]
    bridge = _bridge(tmp_path, node)
    rows = {r.unit: r for r in bridge.my_units()}
    assert path.exists()
    assert (rows[4].root_hex, rows[4].seconds, rows[4].backend) == ("bb" * 32, 8.0, "gpu")
    assert rows[3].seconds == 12.345  # the record wins where there is one
    # Once every entry's record is held, the file is set aside, not deleted.
    node.works["bafy-b"] = _work(4, b"\xbb" * 32, "gpu")
    node.my_units = _Node.my_units.__get__(node)
    rows = {r.unit: r for r in bridge.my_units()}
    assert not path.exists()
    assert json.loads((tmp_path / (NETWORK_UNITS_FILE + ".migrated")).read_text()) == legacy
    assert (rows[4].root_hex, rows[4].backend) == ("bb" * 32, "gpu")


def test_a_file_with_another_parameter_sets_units_is_kept(tmp_path):
    path = tmp_path / NETWORK_UNITS_FILE
    path.write_text(json.dumps({"production": {"1": {"cid": "bafy-p"}}, "dev": {}}))
    _bridge(tmp_path, _Node({"bafy-a": _work(3, b"\xaa" * 32)})).my_units()
    assert path.exists()
