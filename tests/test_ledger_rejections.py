"""Rejections are counted in memory and written in batches (network/ledger.py
REJECTION_FLUSH_S), never one fsync'd write per rejected message."""

from __future__ import annotations

import sqlite3

from network.ledger import RECENT_REJECTIONS_KEPT, REJECTION_FLUSH_S, Ledger


def _written(path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT reason, count FROM rejection_counts").fetchall())
    finally:
        conn.close()


def test_a_flood_of_rejections_is_counted_at_once_and_written_in_one_batch(tmp_path) -> None:
    ledger = Ledger.in_dir(tmp_path)
    for i in range(500):
        ledger.count_rejection("bad_signature", f"message {i}", source="flooder")
    # counted and visible at once, but nothing written yet: no write per message
    assert ledger.rejection_counts() == {"bad_signature": 500}
    assert ledger.recent_rejections(limit=1)[0].detail == "message 499"
    assert len(ledger.recent_rejections(limit=10_000)) == RECENT_REJECTIONS_KEPT
    assert _written(ledger.path) == {}
    # once REJECTION_FLUSH_S has passed, the next rejection writes them all together
    ledger._rej_flushed -= REJECTION_FLUSH_S
    ledger.count_rejection("oversized", "big")
    assert _written(ledger.path) == {"bad_signature": 500, "oversized": 1}
    assert ledger.rejection_counts() == {"bad_signature": 500, "oversized": 1}
    # what is still held at close is written by close
    ledger.count_rejection("oversized", "again")
    ledger.close()
    with Ledger.in_dir(tmp_path) as again:
        assert again.rejection_counts() == {"bad_signature": 500, "oversized": 2}
        recent = again.recent_rejections(limit=2)
        assert [e.detail for e in recent] == ["again", "big"]
        assert len(again.recent_rejections(limit=10_000)) == RECENT_REJECTIONS_KEPT
