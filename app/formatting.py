"""Numbers, durations and ranges as a volunteer reads them (no Qt here)."""

from __future__ import annotations

from typing import Any

__all__ = ["fmt_count", "fmt_duration", "fmt_range", "fmt_rate"]


def fmt_rate(rate: float) -> str:
    """numbers/s with an SI prefix (every integer counts)."""
    for div, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= div:
            return f"{rate / div:.2f} {prefix} numbers/s"
    return f"{rate:.0f} numbers/s"


def fmt_count(n: float) -> str:
    for div, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f} {prefix}"
    return f"{n:.0f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    if seconds < 1:
        return "< 1 s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_range(params: Any, lo: int, hi: int) -> str:
    """A unit's range as a volunteer can read it: "2^71 + 5·2^40 … (1.10 T numbers)"."""
    start = params.start
    size = hi - lo
    offset = lo - start
    if start > 0 and start & (start - 1) == 0 and size > 0 and offset % size == 0 and offset >= 0:
        k = offset // size
        base = f"2^{start.bit_length() - 1}"
        size_text = f"2^{size.bit_length() - 1}" if size & (size - 1) == 0 else str(size)
        where = base if k == 0 else f"{base} + {k:,}·{size_text}"
    else:
        where = f"{lo:.6e}"
    return f"from {where}, {fmt_count(size)} numbers"
