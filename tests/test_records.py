"""Records and the codec: round trips, golden bytes, tampering, fuzzing, validation."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from engine import reference, sieve
from engine.evidence import UnitResult, merkle_proof
from engine.params import DEV, PROTOCOL_VERSION, Params
from network import codec
from network import rejection as R
from network.ipfs.cid import cid_for_bytes
from network.records import (
    AccountRecord,
    BeaconRecord,
    CheckRecord,
    CommitRecord,
    DelegationRecord,
    DisputeRecord,
    RecheckRecord,
    SignedRecord,
    WorkRecord,
)
from network.rejection import Accepted, Rejection
from network.validate import context, min_odd_steps, odd_steps_band, validate

ACC = SigningKey(bytes(range(32)))
NODE = SigningKey(bytes(range(32, 64)))
OTHER = SigningKey(bytes(range(64, 96)))
A = bytes(ACC.verify_key)
N = bytes(NODE.verify_key)
T = 1_750_000_000
P = Params.custom(name="test", start=1 << 71, unit_bits=14, block_bits=10, sieve_k=10)
WORK_CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def golden_records() -> dict[str, tuple[object, SigningKey]]:
    return {
        "account": (AccountRecord(account=A, username="Alice", created=T), ACC),
        "delegation": (DelegationRecord(account=A, node=N, created=T), ACC),
        "work": (
            WorkRecord(
                params=P,
                unit=3,
                root=bytes(range(32)),
                tested=1234,
                odd_steps=56789,
                max_value=(1 << 80) + 1,
                max_n=(1 << 71) + 3 * 16384 + 7,
                overflows=0,
                candidates=(),
                backend="cpu",
                compute_ms=1500,
                node=N,
                account=A,
                created=T,
                evidence_cid=None,
            ),
            NODE,
        ),
        "commit": (
            CommitRecord(unit=3, commitment=bytes([11]) * 32, node=N, account=A, created=T),
            NODE,
        ),
        "beacon": (
            BeaconRecord(
                round=7, value=bytes([12]) * 32, listed=(WORK_CID,), node=N, account=A, created=T
            ),
            NODE,
        ),
        "recheck": (
            RecheckRecord(
                work_cid=WORK_CID,
                candidate=(1 << 71) + 27,
                bound=1 << 26,
                fell=True,
                steps=41,
                node=N,
                account=A,
                created=T,
            ),
            NODE,
        ),
        "check": (
            CheckRecord(
                work_cid=WORK_CID,
                block=2,
                leaf=bytes([7]) * 32,
                match=True,
                node=N,
                account=A,
                created=T,
            ),
            NODE,
        ),
        "dispute": (
            DisputeRecord(
                work_cid=WORK_CID,
                block=1,
                recomputed_leaf=bytes([8]) * 32,
                claimed_leaf=bytes([9]) * 32,
                proof=(bytes([10]) * 32,),
                node=N,
                account=A,
                created=T,
            ),
            NODE,
        ),
    }


GOLDEN = {
    "account": (
        (
            "85676163636f756e7402a3676163636f756e74582003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d"
            "5f1ddc8664125531b867637265617465641a684ee18068757365726e616d6565416c696365582003a107bff3"
            "ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b858403a804be0ae5902fdc8346454b1f52d"
            "3489e09a151d6fab8f4b148892dfc71c19cb73b1df18d73bce33913e91c2164869e71f688d29535b821f641c"
            "72b32d2a08"
        ),
        "3a804be0ae5902fdc8346454b1f52d3489e09a151d6fab8f4b148892dfc71c19"
        "cb73b1df18d73bce33913e91c2164869e71f688d29535b821f641c72b32d2a08",
        "bafkreidxcbp7cc2uluzh7dgle6zhgzh3povv326k7ijiseucdgo5cm5lzy",
    ),
    "delegation": (
        (
            "856a64656c65676174696f6e02a5646e6f6465582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12"
            "c89794bc9322966dd7676163636f756e74582003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1d"
            "dc8664125531b867637265617465641a684ee180676578706972657300677265766f6b6564f4582003a107bf"
            "f3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b858407d58830c877d216cd1b9d9b47536"
            "60b1ba67bde6d52b403aaf7e106905e0d418a8aa784c6634ffc3a542bf14ad59ef971b15f3ced9e5a814fb5e"
            "7275f642f50b"
        ),
        "7d58830c877d216cd1b9d9b4753660b1ba67bde6d52b403aaf7e106905e0d418"
        "a8aa784c6634ffc3a542bf14ad59ef971b15f3ced9e5a814fb5e7275f642f50b",
        "bafkreicdxiy45k2t5xrzjg5ind47tltapwryodoh4ohohumsha5s55cvqq",
    ),
    "work": (
        (
            "8564776f726b02b3646e6f6465582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322"
            "966dd764726f6f745820000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f6475"
            "6e697403656d61785f6ec24980000000000000c007656e6f6e63655820000000000000000000000000000000"
            "000000000000000000000000000000000066706172616d73a8646e616d656474657374657374617274c24980"
            "00000000000000006773696576655f6b0a6776657273696f6e0269756e69745f626974730e6a626c6f636b5f"
            "626974730a6a737465705f626f756e641910007065786163745f737465705f626f756e641a00100000667465"
            "737465641904d2676163636f756e74582003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc86"
            "64125531b8676261636b656e646363707567637265617465641a684ee180696d61785f76616c7565c24b0100"
            "000000000000000001696f64645f737465707319ddd5696f766572666c6f7773006a63616e64696461746573"
            "806a636f6d707574655f6d731905dc6c65766964656e63655f636964f66c7365656e5f636f6d6d697473806e"
            "63616e646964617465735f636964f67065787472615f63616e6469646174657300582029acbae141bccaf0b2"
            "2e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd758405dfafa9a05e2d3820112052686eae9d5627521"
            "6b251bc018a7184eb539d4c508b1907da3ff33ea13f316ab3731f7cbcd0045ade230cac54ebf518acbdff767"
            "0a"
        ),
        "5dfafa9a05e2d3820112052686eae9d56275216b251bc018a7184eb539d4c508"
        "b1907da3ff33ea13f316ab3731f7cbcd0045ade230cac54ebf518acbdff7670a",
        "bafkreib6gzukbcw7wkjcebqwnu2nobj7ff5gu3oedbmgt6wo4dfndf6gby",
    ),
    "commit": (
        (
            "8566636f6d6d697402a5646e6f6465582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc"
            "9322966dd764756e697403676163636f756e74582003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d"
            "5f1ddc8664125531b867637265617465641a684ee1806a636f6d6d69746d656e7458200b0b0b0b0b0b0b0b0b"
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b582029acbae141bccaf0b22e1a94d34d0bc7361e52"
            "6d0bfe12c89794bc9322966dd758401faa3f092aee937790331afdf48472e95999b680d77d8c384974cf8de7"
            "4fb6f292581a8630427521a9572b16cf1ac9d9cd18db9a469f73848fc77cc97a70920a"
        ),
        "1faa3f092aee937790331afdf48472e95999b680d77d8c384974cf8de74fb6f2"
        "92581a8630427521a9572b16cf1ac9d9cd18db9a469f73848fc77cc97a70920a",
        "bafkreieh3ktep7fkngovy456dpq4qqujbvcpfdoyi4oqmhg3m4mpe5kwxm",
    ),
    "beacon": (
        (
            "8566626561636f6e02a6646e6f6465582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc"
            "9322966dd765726f756e64076576616c756558200c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c"
            "0c0c0c0c0c0c0c0c666c697374656481783b6261666b726569676832616b69736361696c6463716162737967"
            "33646672366368753366677072656769796d73636b376537617161347335327a79676163636f756e74582003"
            "a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b867637265617465641a684ee180"
            "582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7584059a986a07bfb36e7"
            "b1eb0f8bca743b46d7c0c44688725b06591df19b6347d377eaf34fbd3c0d2c9a14ff718818539af0c8a1a7ba"
            "0ba0a9b1f800a3dd0188a103"
        ),
        "59a986a07bfb36e7b1eb0f8bca743b46d7c0c44688725b06591df19b6347d377"
        "eaf34fbd3c0d2c9a14ff718818539af0c8a1a7ba0ba0a9b1f800a3dd0188a103",
        "bafkreidg33xlpjawbpn5yu3gh6tmucbzooo2umlds6mh2t2nrfv73orqki",
    ),
    "recheck": (
        (
            "85677265636865636b02a86466656c6cf5646e6f6465582029acbae141bccaf0b22e1a94d34d0bc7361e526d"
            "0bfe12c89794bc9322966dd765626f756e641a040000006573746570731829676163636f756e74582003a107"
            "bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b867637265617465641a684ee1806877"
            "6f726b5f636964783b6261666b726569676832616b69736361696c6463716162737967336466723663687533"
            "66677072656769796d73636b376537617161347335327a796963616e646964617465c2498000000000000000"
            "1b582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd758403ad2b154ed333a"
            "241cdb82373ebcaa35154dbd7ed8e6b83bac38c9dd54a865d77cabf5f525cb0598fa9d5f7a477e9353568889"
            "b46a13e0cb011daec2939e6304"
        ),
        "3ad2b154ed333a241cdb82373ebcaa35154dbd7ed8e6b83bac38c9dd54a865d7"
        "7cabf5f525cb0598fa9d5f7a477e9353568889b46a13e0cb011daec2939e6304",
        "bafkreifffhzgpgsr65zgxtlizij4uklzamagdoetybjy75st6o63i3o7m4",
    ),
    "check": (
        (
            "8565636865636b02a8646c656166582007070707070707070707070707070707070707070707070707070707"
            "07070707646e6f6465582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd765"
            "626c6f636b02656d61746368f5676163636f756e74582003a107bff3ce10be1d70dd18e74bc09967e4d6309b"
            "a50d5f1ddc8664125531b867637265617465641a684ee18068776f726b5f636964783b6261666b7265696768"
            "32616b69736361696c646371616273796733646672366368753366677072656769796d73636b376537617161"
            "347335327a796b756e617661696c61626c65f4582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12"
            "c89794bc9322966dd75840cd24d5608e6eb0f2d2c6930f74d16ba0a3032ff7fc4446f9d0a8165ead253722cb"
            "e932f056bbf7852599923dba26c58ff9fe7f3549103f3db6fd4c293e667008"
        ),
        "cd24d5608e6eb0f2d2c6930f74d16ba0a3032ff7fc4446f9d0a8165ead253722"
        "cbe932f056bbf7852599923dba26c58ff9fe7f3549103f3db6fd4c293e667008",
        "bafkreibmpanco2zhdrbz5gpotugiayw6wxgdd6422b3eyvxciyhnckbppi",
    ),
    "dispute": (
        (
            "85676469737075746502a8646e6f6465582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794"
            "bc9322966dd765626c6f636b016570726f6f668158200a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"
            "0a0a0a0a0a0a0a0a0a0a676163636f756e74582003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f"
            "1ddc8664125531b867637265617465641a684ee18068776f726b5f636964783b6261666b726569676832616b"
            "69736361696c646371616273796733646672366368753366677072656769796d73636b376537617161347335"
            "327a796c636c61696d65645f6c65616658200909090909090909090909090909090909090909090909090909"
            "0909090909096f7265636f6d70757465645f6c65616658200808080808080808080808080808080808080808"
            "080808080808080808080808582029acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc932296"
            "6dd758400d03ed679506bba6dca4f1f26bc4e5148d806a53996ca7adbd8c10c06d3127dcb135b890f638c860"
            "4b209b57f98ccab98319edbf6d2db71006fb8642c05aac00"
        ),
        "0d03ed679506bba6dca4f1f26bc4e5148d806a53996ca7adbd8c10c06d3127dc"
        "b135b890f638c8604b209b57f98ccab98319edbf6d2db71006fb8642c05aac00",
        "bafkreifu7fg73trkg54eyfgmpk7uyiuelreg7r5frajqi2zkmjgrxuue54",
    ),
}


def signed(kind: str) -> SignedRecord:
    record, key = golden_records()[kind]
    return codec.sign(record, key)


KINDS = list(golden_records())


# -- encoding ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_golden_vectors(kind):
    data_hex, sig_hex, cid = GOLDEN[kind]
    s = signed(kind)
    data = codec.encode(s)
    assert data.hex() == data_hex
    assert s.signature.hex() == sig_hex
    assert codec.record_cid(data) == cid == cid_for_bytes(data)
    assert codec.record_cid(s) == cid


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(kind):
    s = signed(kind)
    parsed = codec.parse(codec.encode(s))
    assert parsed == s
    assert parsed.kind == kind
    assert codec.encode(parsed) == codec.encode(s)


def test_signed_bytes_layout():
    record, _ = golden_records()["work"]
    raw = codec.signed_bytes(record)
    assert raw.startswith(b"hailstone/work/v1\x00" + PROTOCOL_VERSION.to_bytes(2, "big"))
    assert cbor2.loads(raw[len(b"hailstone/work/v1\x00") + 2 :]) == codec.body_of(record)


def test_field_names_are_short_so_key_orders_agree():
    # Under 24 bytes, length-first order (cbor2) equals RFC 8949 bytewise order.
    names = [n for schema in codec.SCHEMAS.values() for n in schema] + list(codec.PARAMS_FIELDS)
    assert max(len(n.encode()) for n in names) < 24


def test_sign_refuses_the_wrong_key():
    record, _ = golden_records()["work"]
    with pytest.raises(ValueError):
        codec.sign(record, ACC)


def test_big_ints_round_trip():
    record, key = golden_records()["work"]
    big = dataclasses.replace(record, max_value=(1 << 300) + 5, max_n=(1 << 64) - 1)
    assert codec.parse(codec.encode(codec.sign(big, key))).record == big


@pytest.mark.parametrize(
    "change",
    [
        {"username": "a b"},
        {"username": "ab"},
        {"account": b"\x00" * 31},
        {"created": 5},
    ],
)
def test_account_record_checks_fields(change):
    record, _ = golden_records()["account"]
    with pytest.raises(ValueError):
        dataclasses.replace(record, **change)


@pytest.mark.parametrize(
    "change",
    [
        {"tested": -1},
        {"tested": True},
        {"candidates": (5, 3)},
        {"candidates": tuple(range(17))},
        {"backend": "x" * 17},
        {"root": b"\x00" * 33},
        {"evidence_cid": ""},
        {"compute_ms": 1.5},
    ],
)
def test_work_record_checks_fields(change):
    record, _ = golden_records()["work"]
    with pytest.raises(ValueError):
        dataclasses.replace(record, **change)


# -- tampering ---------------------------------------------------------------


def _reencode(s: SignedRecord, *, body=None, kind=None, version=None, signer=None, sig=None):
    return cbor2.dumps(
        [
            kind or s.kind,
            PROTOCOL_VERSION if version is None else version,
            codec.body_of(s.record) if body is None else body,
            signer or s.signer,
            sig or s.signature,
        ],
        canonical=True,
    )


def _tampered_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, bytes):
        return bytes([value[0] ^ 1]) + value[1:]
    if isinstance(value, str):
        return value[:-1] + ("x" if value[-1] != "x" else "y")
    if isinstance(value, list):
        return value + value[:1] if value else [1]
    if isinstance(value, dict):
        return {**value, "step_bound": value["step_bound"] + 1}
    if value is None:
        return "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    raise AssertionError(value)


TAMPER_CASES = [(k, f) for k in KINDS for f in codec.SCHEMAS[k]]


@pytest.mark.parametrize(("kind", "field"), TAMPER_CASES)
def test_tampering_any_field_is_rejected(kind, field):
    s = signed(kind)
    body = codec.body_of(s.record)
    body[field] = _tampered_value(body[field])
    verdict = codec.parse(_reencode(s, body=body))
    assert isinstance(verdict, Rejection)
    # The signer's own key field is checked against the envelope first.
    expected = {R.BAD_SIGNATURE, R.BAD_FIELD, R.WRONG_SIGNER}
    assert verdict.reason_code in expected
    if field in ("node", "account") and s.record.signer == body[field]:
        pass
    elif field == {"account": "account", "delegation": "account"}.get(kind, "node"):
        assert verdict.reason_code == R.WRONG_SIGNER
    elif verdict.reason_code != R.BAD_FIELD:
        assert verdict.reason_code == R.BAD_SIGNATURE


@pytest.mark.parametrize("kind", KINDS)
def test_tampering_every_byte_is_rejected(kind):
    data = codec.encode(signed(kind))
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= flip
            assert isinstance(codec.parse(bytes(bad)), Rejection), (i, flip)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_signature_and_wrong_key(kind):
    s = signed(kind)
    sig = bytes([s.signature[0] ^ 1]) + s.signature[1:]
    assert codec.parse(_reencode(s, sig=sig)).reason_code == R.BAD_SIGNATURE
    # Signed by another key over the same bytes, presented as the right signer.
    other_sig = OTHER.sign(codec.signed_bytes(s.record)).signature
    assert codec.parse(_reencode(s, sig=other_sig)).reason_code == R.BAD_SIGNATURE
    # Presented with the other key as signer: the record names someone else.
    other = bytes(OTHER.verify_key)
    assert codec.parse(_reencode(s, signer=other, sig=other_sig)).reason_code == R.WRONG_SIGNER


def test_wrong_domain_is_rejected():
    s = signed("check")
    body_bytes = cbor2.dumps(codec.body_of(s.record), canonical=True)
    msg = b"hailstone/dispute/v1\x00" + PROTOCOL_VERSION.to_bytes(2, "big") + body_bytes
    assert codec.parse(_reencode(s, sig=NODE.sign(msg).signature)).reason_code == R.BAD_SIGNATURE


def test_wrong_version_is_rejected():
    s = signed("account")
    record, key = golden_records()["account"]
    sig = key.sign(codec.signed_bytes(record, PROTOCOL_VERSION + 1)).signature
    data = _reencode(s, version=PROTOCOL_VERSION + 1, sig=sig)
    assert codec.parse(data).reason_code == R.WRONG_VERSION


def test_unknown_kind_truncated_oversized_noncanonical():
    s = signed("work")
    data = codec.encode(s)
    assert codec.parse(_reencode(s, kind="wages")).reason_code == R.UNKNOWN_KIND
    for cut in (1, 2, len(data) // 2, len(data) - 1):
        assert isinstance(codec.parse(data[:cut]), Rejection)
    assert codec.parse(b"").reason_code == R.MALFORMED
    assert codec.parse(data + b"\x00").reason_code == R.NONCANONICAL
    assert codec.parse(b"\x00" * (codec.MAX_RECORD_BYTES + 1)).reason_code == R.OVERSIZED
    # A delegation padded past its own cap (but under the global one).
    d = signed("delegation")
    body = codec.body_of(d.record) | {"pad": "x" * 600}
    assert codec.parse(_reencode(d, body=body)).reason_code == R.OVERSIZED
    # Non-canonical: same content, a map key order cbor2 would not produce.
    body = codec.body_of(s.record)
    loose = cbor2.dumps(
        [s.kind, PROTOCOL_VERSION, dict(reversed(list(body.items()))), s.signer, s.signature]
    )
    assert codec.parse(loose).reason_code == R.NONCANONICAL
    # An extra field is refused even though the signature would not cover it.
    assert codec.parse(_reencode(s, body=body | {"x": 1})).reason_code == R.BAD_FIELD
    assert codec.parse(cbor2.dumps(1.5)).reason_code == R.MALFORMED
    assert codec.parse("text").reason_code == R.MALFORMED


# -- fuzzing -----------------------------------------------------------------

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.floats(allow_nan=True),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=25,
)


@settings(SETTINGS, max_examples=3000)
@given(st.binary(max_size=600))
def test_random_bytes_never_parse(data):
    assert isinstance(codec.parse(data), Rejection)


@settings(SETTINGS, max_examples=3000)
@given(st.sampled_from(KINDS), st.data())
def test_mutated_records_never_parse(kind, data):
    original = codec.encode(signed(kind))
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            raw.insert(i, data.draw(st.integers(0, 255)))
        elif op == "delete" and raw:
            del raw[i]
        else:
            del raw[i:]
    assume(bytes(raw) != original)  # two flips of one byte undo each other
    verdict = codec.parse(bytes(raw))
    assert isinstance(verdict, Rejection)
    assert verdict.reason_code in R.REASON_CODES


@settings(SETTINGS, max_examples=300)
@given(
    st.sampled_from(KINDS + ["nope"]),
    st.integers(min_value=-2, max_value=3),
    st.dictionaries(st.text(max_size=16), cbor_values, max_size=8),
    st.binary(max_size=40),
    st.binary(max_size=70),
)
def test_structured_garbage_never_parses(kind, version, body, signer, sig):
    data = cbor2.dumps([kind, version, body, signer, sig], canonical=True)
    verdict = codec.parse(data)
    assert isinstance(verdict, Rejection)


@SETTINGS
@given(cbor_values)
def test_any_cbor_value_never_parses(value):
    assert isinstance(codec.parse(cbor2.dumps(value)), Rejection)


@settings(SETTINGS, max_examples=1500)
@given(st.sampled_from(TAMPER_CASES), cbor_values)
def test_correctly_signed_bad_fields_never_raise(case, value):
    # Signed with the right key, so only the field checks stand in the way.
    kind, field = case
    record, key = golden_records()[kind]
    body = codec.body_of(record)
    body[field] = value
    domain = codec.DOMAINS[kind] + PROTOCOL_VERSION.to_bytes(2, "big")
    sig = key.sign(domain + cbor2.dumps(body, canonical=True)).signature
    data = cbor2.dumps([kind, PROTOCOL_VERSION, body, record.signer, sig], canonical=True)
    verdict = codec.parse(data)
    if isinstance(verdict, Rejection):
        assert verdict.reason_code in R.REASON_CODES
    else:  # the value happened to be valid for that field
        assert codec.encode(verdict) == data


@settings(SETTINGS, max_examples=300)
@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=3, max_size=32),
    st.integers(min_value=1_704_067_200, max_value=(1 << 40) - 1),
    st.lists(st.integers(min_value=0, max_value=(1 << 200)), max_size=16, unique=True),
    st.integers(min_value=0, max_value=(1 << 64) - 1),
)
def test_round_trip_generated(username, created, candidates, tested):
    acc = AccountRecord(account=A, username=username, created=created)
    assert codec.parse(codec.encode(codec.sign(acc, ACC))).record == acc
    work, _ = golden_records()["work"]
    work = dataclasses.replace(
        work,
        created=created,
        candidates=tuple(sorted(candidates)),
        tested=tested,
    )
    assert codec.parse(codec.encode(codec.sign(work, NODE))).record == work


# -- validation --------------------------------------------------------------

UNIT = 3


@pytest.fixture(scope="module")
def unit_result() -> UnitResult:
    sv = sieve.load(P.sieve_k)
    lo, hi = P.unit_range(UNIT)
    blocks = tuple(
        reference.run_block(sv, b, b + P.block_size, P.exact_step_bound)
        for b in range(lo, hi, P.block_size)
    )
    return UnitResult(
        start=lo,
        end=hi,
        params_version=P.version,
        block_bits=P.block_bits,
        sieve_k=P.sieve_k,
        backend="reference",
        blocks=blocks,
        seconds=0.25,
    )


@pytest.fixture(scope="module")
def work(unit_result) -> WorkRecord:
    evidence = cid_for_bytes(b"".join(unit_result.leaves))
    return WorkRecord.from_unit_result(unit_result, P, UNIT, N, A, T, evidence_cid=evidence)


def test_work_without_evidence_is_rejected(work):
    bare = dataclasses.replace(work, evidence_cid=None)
    verdict = validate(codec.sign(bare, NODE), ctx())
    assert isinstance(verdict, Rejection) and verdict.reason_code == R.BAD_FIELD


def ctx(*delegations, now=T + 60, **kw):
    if not delegations:
        delegations = (DelegationRecord(account=A, node=N, created=T - 100),)
    return context(now, delegations, (P, DEV), **kw)


def test_from_unit_result(unit_result, work):
    assert work.root == unit_result.root and len(work.root) == 32
    assert work.tested == unit_result.tested > 0
    assert work.compute_ms == 250 and work.seconds == 0.25
    assert work.params == P and work.unit == UNIT
    with pytest.raises(ValueError):
        WorkRecord.from_unit_result(unit_result, P, UNIT + 1, N, A, T)


def test_valid_work_is_accepted_and_validation_is_pure(work):
    s = codec.sign(work, NODE)
    first = validate(s, ctx())
    assert isinstance(first, Accepted) and first
    assert first.cid == codec.record_cid(s)
    assert validate(s, ctx()) == first  # the same record twice: same verdict


def _work_verdict(work, c=None, **changes):
    return validate(codec.sign(dataclasses.replace(work, **changes), NODE), c or ctx())


def test_work_rejections(work):
    assert _work_verdict(work, tested=work.tested + 1).reason_code == R.TESTED_MISMATCH
    low, high = odd_steps_band(P, work.tested)
    assert low <= work.odd_steps <= high
    assert low == work.tested * min_odd_steps(P.sieve_k) > 0
    assert _work_verdict(work, odd_steps=low - 1).reason_code == R.ODD_STEPS_OUT_OF_BAND
    assert _work_verdict(work, odd_steps=high + 1).reason_code == R.ODD_STEPS_OUT_OF_BAND
    assert _work_verdict(work, created=T + 60 + 601).reason_code == R.FROM_FUTURE
    assert isinstance(_work_verdict(work, created=T + 60 + 600), Accepted)
    other = Params.custom(name="test", start=1 << 71, unit_bits=14, block_bits=10, sieve_k=11)
    assert _work_verdict(work, params=other).reason_code == R.UNKNOWN_PARAMS
    assert _work_verdict(work, max_n=work.max_n + (1 << 20)).reason_code == R.BAD_TOTALS
    assert _work_verdict(work, overflows=work.tested + 1).reason_code == R.BAD_TOTALS
    lo, hi = P.unit_range(UNIT)
    assert _work_verdict(work, candidates=(hi + 3,)).reason_code == R.BAD_CANDIDATE
    falls = next(sieve.load(P.sieve_k).tested_numbers(lo, hi))
    assert _work_verdict(work, candidates=(falls,)).reason_code == R.CANDIDATE_FALLS


def test_delegation_rules(work):
    s = codec.sign(work, NODE)
    other_acc = bytes(OTHER.verify_key)
    # Nothing known, or a delegation of this node by another account: not authorised.
    assert validate(s, context(T, (), (P,))).reason_code == R.NO_DELEGATION
    foreign = DelegationRecord(account=other_acc, node=N, created=T - 100)
    assert validate(s, ctx(foreign)).reason_code == R.NO_DELEGATION
    grant = DelegationRecord(account=A, node=N, created=T - 100)
    revoked_later = DelegationRecord(account=A, node=N, created=T + 10, revoked=True)
    assert isinstance(validate(s, ctx(grant, revoked_later)), Accepted)
    revoked_before = DelegationRecord(account=A, node=N, created=T, revoked=True)
    assert validate(s, ctx(grant, revoked_before)).reason_code == R.NODE_REVOKED
    expiring = DelegationRecord(account=A, node=N, created=T - 100, expires=T)
    assert validate(s, ctx(expiring)).reason_code == R.DELEGATION_EXPIRED


def test_delegation_signed_by_another_account_does_not_parse():
    # An account cannot sign a delegation in another account's name.
    record = DelegationRecord(account=A, node=N, created=T)
    sig = OTHER.sign(codec.signed_bytes(record)).signature
    s = SignedRecord(record=record, signer=bytes(OTHER.verify_key), signature=sig)
    data = _reencode(s)
    assert codec.parse(data).reason_code == R.WRONG_SIGNER
    assert validate(s, ctx()).reason_code == R.WRONG_SIGNER


def test_validate_checks_signatures_of_in_memory_records(work):
    s = codec.sign(work, NODE)
    forged = dataclasses.replace(s, record=dataclasses.replace(work, odd_steps=work.odd_steps + 1))
    assert validate(forged, ctx()).reason_code == R.BAD_SIGNATURE
    assert validate("not a record", ctx()).reason_code == R.MALFORMED


def test_a_record_from_parse_validates_the_same_without_a_second_signature_check(work):
    data = codec.encode(codec.sign(work, NODE))
    parsed = codec.parse(data)
    cid = codec.record_cid(data)
    assert validate(parsed, ctx(), parsed_cid=cid) == validate(parsed, ctx())
    assert validate(parsed, ctx(), parsed_cid=cid).cid == cid
    # The rest of validation still runs: an unauthorised node is refused.
    assert validate(parsed, context(T, (), (P,)), parsed_cid=cid).reason_code == R.NO_DELEGATION
    # (a record that did not come from parse must not be given a CID: it would skip
    # the signature check that `test_validate_checks_signatures_...` relies on)


def test_check_and_dispute_validation(unit_result, work):
    work_cid = codec.record_cid(codec.sign(work, NODE))
    leaves = list(unit_result.leaves)
    check = CheckRecord(
        work_cid=work_cid, block=2, leaf=leaves[2], match=True, node=N, account=A, created=T
    )
    c = ctx(works={work_cid: work})
    assert isinstance(validate(codec.sign(check, NODE), c), Accepted)
    past = dataclasses.replace(check, block=P.blocks_per_unit)
    assert validate(codec.sign(past, NODE), c).reason_code == R.BAD_FIELD
    dispute = DisputeRecord(
        work_cid=work_cid,
        block=5,
        recomputed_leaf=bytes(32),
        claimed_leaf=leaves[5],
        proof=tuple(merkle_proof(leaves, 5)),
        node=N,
        account=A,
        created=T,
    )
    assert isinstance(validate(codec.sign(dispute, NODE), c), Accepted)
    wrong = dataclasses.replace(dispute, block=6)
    assert validate(codec.sign(wrong, NODE), c).reason_code == R.BAD_PROOF
    # A dispute without the worker's proven leaf accuses correct work for free: refused.
    unproven = dataclasses.replace(dispute, claimed_leaf=None, proof=())
    assert validate(codec.sign(unproven, NODE), c).reason_code == R.BAD_PROOF
    # Unknown work: held until the work arrives (unknown_work); unknown node: refused.
    assert validate(codec.sign(wrong, NODE), ctx()).reason_code == R.UNKNOWN_WORK
    assert validate(codec.sign(check, NODE), ctx()).reason_code == R.UNKNOWN_WORK
    assert validate(codec.sign(dispute, NODE), context(T, ())).reason_code == R.NO_DELEGATION
