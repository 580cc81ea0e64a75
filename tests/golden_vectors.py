"""Regenerate the record golden vectors in tests/test_records.py and docs/PROTOCOL.md.

Run `python -m tests.golden_vectors` after a deliberate wire change (a new field, a
protocol version bump) and review the diff: it must touch only what changed.
"""

from __future__ import annotations

from pathlib import Path

from network import codec
from tests.test_records import golden_records

ROOT = Path(__file__).resolve().parent.parent


def _wrap(text: str, width: int) -> list[str]:
    return [text[i : i + width] for i in range(0, len(text), width)]


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(x) for x in value) + "]"
    if hasattr(value, "unit_bits"):
        return (
            "{" + ", ".join(f"{f}: {_show(getattr(value, f))}" for f in codec.PARAMS_FIELDS) + "}"
        )
    return repr(value) if isinstance(value, str) else str(value)


def main() -> None:
    golden, docs = [], []
    for kind, (rec, key) in golden_records().items():
        signed = codec.sign(rec, key)
        data = codec.encode(signed)
        cid = codec.record_cid(data)
        hex_lines = "\n".join(f'            "{x}"' for x in _wrap(data.hex(), 88))
        sig_lines = "\n".join(f'        "{x}"' for x in _wrap(signed.signature.hex(), 64))
        golden.append(
            f'    "{kind}": (\n        (\n{hex_lines}\n        ),\n{sig_lines},\n'
            f'        "{cid}",\n    ),'
        )
        signer = "account key" if kind in ("account", "delegation") else "node key"
        fields = "\n".join(f"{n} = {_show(getattr(rec, n))}" for n in codec.SCHEMAS[kind])
        docs.append(
            f"#### {kind} (signed by the {signer})\n\n```\n{fields}\n```\n\n"
            "Signed bytes (hex):\n\n```\n"
            + "\n".join(_wrap(codec.signed_bytes(rec).hex(), 96))
            + "\n```\n\nWire bytes (hex):\n\n```\n"
            + "\n".join(_wrap(data.hex(), 96))
            + f"\n```\n\nSignature: `{signed.signature.hex()}`\n\nCID: `{cid}`\n"
        )
    tests = ROOT / "tests" / "test_records.py"
    text = tests.read_text()
    start = text.index("GOLDEN = {\n")
    end = text.index("\n}\n", start)
    tests.write_text(text[:start] + "GOLDEN = {\n" + "\n".join(golden) + text[end:])
    doc = ROOT / "docs" / "PROTOCOL.md"
    text = doc.read_text()
    start = text.index("#### account (signed")
    end = text.index("\n## 7. IPFS layer")
    doc.write_text(text[:start] + "\n".join(docs) + "\n" + text[end:])


if __name__ == "__main__":
    main()
