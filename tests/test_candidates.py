"""Candidates are sacred: a unit with a candidate is never verified, and any number of
candidates can be reported in a bounded record.

Real engine results on parameter sets whose exact_step_bound is small enough that
units hold candidates; real signatures; real validation; derive_state on the result.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from engine.job import verify_range
from engine.params import Params
from network import codec
from network import rejection as R
from network.ipfs.cid import cid_for_bytes
from network.records import (
    MAX_CANDIDATES,
    RECHECK_FACTOR,
    DelegationRecord,
    RecheckRecord,
    WorkRecord,
    candidate_list_bytes,
)
from network.rejection import Accepted
from network.state import CANDIDATE, VERIFIED, derive_state
from network.validate import context, recheck, validate

T0 = 1_750_000_000
EVIDENCE = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
# exact_step_bound 64: unit 4 holds exactly one candidate, units 0..3 none.
FEW = Params.custom(
    name="cand-few", unit_bits=8, block_bits=4, sieve_k=4, step_bound=64, exact_step_bound=64
)
# exact_step_bound 4: unit 0 holds 57 candidates, more than a record lists inline.
MANY = Params.custom(
    name="cand-many", unit_bits=10, block_bits=4, sieve_k=4, step_bound=4, exact_step_bound=4
)


def _keys(i: int) -> tuple[SigningKey, SigningKey]:
    return SigningKey(bytes([i]) * 32), SigningKey(bytes([50 + i]) * 32)


PEOPLE = [_keys(i) for i in (1, 2, 3)]


def _delegations() -> list[Accepted]:
    out = []
    for acc, node in PEOPLE:
        rec = DelegationRecord(
            account=bytes(acc.verify_key), node=bytes(node.verify_key), created=T0
        )
        s = codec.sign(rec, acc)
        out.append(Accepted(record=s, cid=codec.record_cid(s)))
    return out


def _report(params: Params, unit: int, who: int, **kw) -> WorkRecord:
    acc, node = PEOPLE[who]
    result = verify_range(params, *params.unit_range(unit), backend="reference")
    return WorkRecord.from_unit_result(
        result,
        params,
        unit,
        bytes(node.verify_key),
        bytes(acc.verify_key),
        T0 + 100,
        evidence_cid=EVIDENCE,
        **kw,
    )


def _accept(params: Params, record: WorkRecord, who: int) -> Accepted:
    signed = codec.sign(record, PEOPLE[who][1])
    # Through the wire and validation, as a node receives it.
    parsed = codec.parse(codec.encode(signed))
    delegations = [d.record.record for d in _delegations()]
    verdict = validate(parsed, context(T0 + 200, delegations, (params,)))
    assert isinstance(verdict, Accepted), verdict
    return verdict


def test_two_accounts_reporting_a_candidate_do_not_verify_the_unit():
    records = _delegations()
    for unit in range(5):
        for who in (0, 1):
            records.append(_accept(FEW, _report(FEW, unit, who), who))
    state = derive_state(records, FEW)
    assert [state.status_of(u) for u in range(4)] == [VERIFIED] * 4
    unit4 = state.units[4]
    assert unit4.status == CANDIDATE
    assert unit4.verified_root is None
    assert unit4.candidate_count == 1 and len(unit4.candidates) == 1
    lo, hi = FEW.unit_range(4)
    assert lo <= unit4.candidates[0] < hi
    # The frontier stops before the unit, and nobody is credited for it.
    assert state.frontier == 4
    assert state.frontier_bound == FEW.start + 4 * FEW.unit_size
    assert state.units_verified == 4
    assert [u.unit for u in state.candidate_units] == [4]
    assert all(e.units_credited == 4 for e in state.leaderboard)


def test_one_report_of_a_candidate_is_enough_even_against_agreeing_others():
    records = _delegations()
    plain = _report(FEW, 4, 0)
    for who in (0, 1):  # two accounts agree on a root but drop the candidate
        forged = dataclasses.replace(
            plain,
            candidates=(),
            account=bytes(PEOPLE[who][0].verify_key),
            node=bytes(PEOPLE[who][1].verify_key),
        )
        signed = codec.sign(forged, PEOPLE[who][1])
        records.append(Accepted(record=signed, cid=codec.record_cid(signed)))
    assert derive_state(records, FEW).status_of(4) == VERIFIED
    records.append(_accept(FEW, _report(FEW, 4, 2), 2))
    assert derive_state(records, FEW).status_of(4) == CANDIDATE


def test_more_candidates_than_a_record_lists_are_reported_with_a_list_cid():
    result = verify_range(MANY, *MANY.unit_range(0), backend="reference")
    assert len(result.candidates) > MAX_CANDIDATES
    with pytest.raises(ValueError, match="candidates_cid"):
        _report(MANY, 0, 0)
    full = candidate_list_bytes(result.candidates)
    list_cid = cid_for_bytes(full)
    records = _delegations()
    for who in (0, 1):
        rec = _report(MANY, 0, who, candidates_cid=list_cid)
        assert rec.candidates == tuple(sorted(result.candidates))[:MAX_CANDIDATES]
        assert rec.candidate_count == len(result.candidates)
        assert len(codec.encode(codec.sign(rec, PEOPLE[who][1]))) <= codec.SIZE_CAPS["work"]
        records.append(_accept(MANY, rec, who))
    unit0 = derive_state(records, MANY).units[0]
    assert unit0.status == CANDIDATE
    assert unit0.candidate_count == len(result.candidates)
    assert derive_state(records, MANY).frontier == 0


def test_candidate_fields_must_agree():
    rec = _report(FEW, 4, 0)
    with pytest.raises(ValueError, match="candidates_cid"):
        dataclasses.replace(rec, candidates_cid=EVIDENCE)  # a list CID for one candidate
    with pytest.raises(ValueError, match="more than"):
        dataclasses.replace(rec, extra_candidates=3)  # extra without the full inline list
    # A count beyond the tested numbers is refused by validation.
    big = _report(MANY, 0, 0, candidates_cid=EVIDENCE)
    too_many = dataclasses.replace(big, extra_candidates=big.tested)
    signed = codec.sign(too_many, PEOPLE[0][1])
    delegations = [d.record.record for d in _delegations()]
    verdict = validate(signed, context(T0 + 200, delegations, (MANY,)))
    assert verdict.reason_code == R.BAD_TOTALS


def _verify(*args: str) -> subprocess.CompletedProcess:
    main = Path(__file__).resolve().parent.parent / "main.py"
    cmd = [sys.executable, str(main), "verify", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_verify_exits_non_zero_with_a_line_and_a_json_field_when_a_candidate_stands():
    # 27 needs 41 odd steps to fall below itself: with a bound of 4 it is a candidate.
    out = _verify("27", "--exact-step-bound", "4", "--backend", "reference", "--json")
    assert out.returncode == 3
    obj = json.loads(out.stdout)
    assert obj["candidates_found"] == 1 and obj["candidates"] == ["27"]
    assert "NOT VERIFIED" in out.stderr and "27" in out.stderr
    fine = _verify("27", "--exact-step-bound", "64", "--backend", "reference", "--json")
    assert fine.returncode == 0, fine.stderr
    assert json.loads(fine.stdout)["candidates_found"] == 0


def _recheck_record(work_cid: str, candidate: int, bound: int, fell: bool, steps: int, who=2):
    acc, node = PEOPLE[who]
    rec = RecheckRecord(
        work_cid=work_cid,
        candidate=candidate,
        bound=bound,
        fell=fell,
        steps=steps,
        node=bytes(node.verify_key),
        account=bytes(acc.verify_key),
        created=T0 + 300,
    )
    return codec.sign(rec, node)


def test_candidates_are_rechecked_with_a_far_larger_bound_and_the_outcome_is_proven():
    report = _report(FEW, 4, 0)
    signed = codec.sign(report, PEOPLE[0][1])
    work_cid = codec.record_cid(signed)
    candidate = report.candidates[0]
    bound = RECHECK_FACTOR * FEW.exact_step_bound
    fell, steps = recheck(candidate, bound)
    assert fell and FEW.exact_step_bound < steps <= bound  # it does fall, later
    delegations = [d.record.record for d in _delegations()]
    ctx = context(T0 + 400, delegations, (FEW,), works={work_cid: report})
    ok = validate(_recheck_record(work_cid, candidate, bound, fell, steps), ctx)
    assert isinstance(ok, Accepted)
    # A wrong step count, a small bound or a number that is no candidate are refused.
    wrong = validate(_recheck_record(work_cid, candidate, bound, True, steps - 1), ctx)
    assert wrong.reason_code == R.BAD_CANDIDATE
    small = validate(_recheck_record(work_cid, candidate, FEW.exact_step_bound, False, 0), ctx)
    assert small.reason_code == R.BAD_FIELD
    other = validate(_recheck_record(work_cid, candidate + 4, bound, False, 0), ctx)
    assert other.reason_code == R.BAD_CANDIDATE
    # The state shows the re-check on the unit, which stays a candidate unit.
    records = [*_delegations(), Accepted(record=signed, cid=work_cid), ok]
    unit4 = derive_state(records, FEW).units[4]
    assert unit4.status == CANDIDATE
    assert [(r.candidate, r.fell, r.steps) for r in unit4.rechecks] == [(candidate, True, steps)]
