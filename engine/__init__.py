"""Hailstone's verification engine: Qt-free, usable headless.

The app and the network layer use only what this module exports. The exports
load on first use (PEP 562), so importing one small module of the engine
(engine.params, engine.sieve_file) does not import numpy and the backends:
`main.py verify` starts checking the sieve file before numpy has loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# exported name -> (module, attribute)
_EXPORTS = {
    "BACKENDS": ("engine.job", "BACKENDS"),
    "Assignment": ("engine.job", "Assignment"),
    "DEV": ("engine.params", "DEV"),
    "PRODUCTION": ("engine.params", "PRODUCTION"),
    "PROTOCOL_VERSION": ("engine.params", "PROTOCOL_VERSION"),
    "BackendUnavailable": ("engine.job", "BackendUnavailable"),
    "BenchResult": ("engine.bench", "BenchResult"),
    "BlockDone": ("engine.job", "BlockDone"),
    "BlockEvidence": ("engine.evidence", "BlockEvidence"),
    "DutyCycle": ("engine.throttle", "DutyCycle"),
    "Params": ("engine.params", "Params"),
    "Sieve": ("engine.sieve", "Sieve"),
    "UnitResult": ("engine.evidence", "UnitResult"),
    "Verifier": ("engine.job", "Verifier"),
    "block_ranges": ("engine.job", "block_ranges"),
    "by_name": ("engine.params", "by_name"),
    "checkpoint_unit": ("engine.job", "checkpoint_unit"),
    "load_sieve": ("engine.sieve", "load"),
    "make_backend": ("engine.job", "make_backend"),
    "merkle_proof": ("engine.evidence", "merkle_proof"),
    "merkle_root": ("engine.evidence", "merkle_root"),
    "parse_devices": ("engine.job", "parse_devices"),
    "run_bench": ("engine.bench", "run_bench"),
    "unit_checkpoint_path": ("engine.job", "unit_checkpoint_path"),
    "verify_proof": ("engine.evidence", "verify_proof"),
    "verify_range": ("engine.job", "verify_range"),
}

__all__ = [
    "Assignment",
    "BACKENDS",
    "BackendUnavailable",
    "BenchResult",
    "BlockDone",
    "BlockEvidence",
    "DEV",
    "DutyCycle",
    "PRODUCTION",
    "PROTOCOL_VERSION",
    "Params",
    "Sieve",
    "UnitResult",
    "Verifier",
    "block_ranges",
    "by_name",
    "checkpoint_unit",
    "load_sieve",
    "make_backend",
    "merkle_proof",
    "merkle_root",
    "parse_devices",
    "run_bench",
    "unit_checkpoint_path",
    "verify_proof",
    "verify_range",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and editors see
    from engine.bench import BenchResult, run_bench
    from engine.evidence import BlockEvidence, UnitResult, merkle_proof, merkle_root, verify_proof
    from engine.job import (
        BACKENDS,
        Assignment,
        BackendUnavailable,
        BlockDone,
        Verifier,
        block_ranges,
        checkpoint_unit,
        make_backend,
        parse_devices,
        unit_checkpoint_path,
        verify_range,
    )
    from engine.params import DEV, PRODUCTION, PROTOCOL_VERSION, Params, by_name
    from engine.sieve import Sieve
    from engine.sieve import load as load_sieve
    from engine.throttle import DutyCycle
