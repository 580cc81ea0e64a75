"""The app reaches network/ through one typed module, network.facade, and only from
app/network_bridge.py (the import-linter contract says the same; this test names the
offending line)."""

from __future__ import annotations

import ast
from pathlib import Path

from network import facade

APP = Path(__file__).resolve().parent.parent / "app"


def _network_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "network"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "network":
                out += [(node.lineno, f"network.{a.name}") for a in node.names]
            elif node.module.split(".")[0] == "network":
                out.append((node.lineno, node.module))
    return out


def test_only_the_bridge_imports_network_and_only_the_facade():
    found = {
        p.name: _network_imports(p) for p in sorted(APP.glob("*.py")) if _network_imports(p)
    }
    assert set(found) == {"network_bridge.py"}, found
    assert {name for _line, name in found["network_bridge.py"]} == {"network.facade"}


def test_the_facade_exports_what_it_lists():
    missing = [n for n in facade.__all__ if not hasattr(facade, n)]
    assert missing == []
    assert facade.network_unavailable() == ""  # the node's modules import here


def test_the_facade_builds_the_node_config_from_settings(tmp_path):
    from engine import DEV
    from network.node import NodeConfig

    config = facade.node_config(tmp_path, DEV, {"listen_port": 4101}, unit_limit=3)
    assert config == NodeConfig.from_settings(
        {"listen_port": 4101}, data_dir=tmp_path, params=DEV, unit_limit=3
    )
