"""Hailstone's verification engine: Qt-free, usable headless.

The app and the network layer use only what this module exports.
"""

from engine.bench import BenchResult, run_bench
from engine.evidence import (
    BlockEvidence,
    UnitResult,
    merkle_proof,
    merkle_root,
    verify_proof,
)
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

__all__ = [
    "BACKENDS",
    "Assignment",
    "DEV",
    "PRODUCTION",
    "PROTOCOL_VERSION",
    "BackendUnavailable",
    "BenchResult",
    "BlockDone",
    "BlockEvidence",
    "DutyCycle",
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
