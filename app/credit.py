"""What a unit's status means for the volunteer, in words (no Qt here).

The network state (network/state.py) names each unit's status with a code
(`reported_once`, `verified`, ...). A volunteer needs to know what the unit is
waiting for, whether it earned them credit, and why; these functions turn a
history row into that sentence. A status code this module does not know yet (the
protocol grows) is still shown readably, never as a raw code.
"""

from __future__ import annotations

from typing import Any

# code -> short title for the History table
TITLES: dict[str, str] = {
    "computed (solo)": "Computed here (solo)",
    "reported_once": "Waiting for a second result",
    "verified": "Verified",
    "conflicting": "Results disagree",
    "disputed": "Disputed",
    "candidate": "Candidate found: held for review",
    "open": "Not counted",
}


# Under the trust protocol (network/trust.py) an unfinished unit also has a phase,
# which says more precisely what it is waiting for.
PHASE_WORDS: dict[str, str] = {
    "committed": (
        "Your result is committed (sealed, not yet shown to anyone) and will be revealed "
        "shortly; sealing first stops others from copying it. No credit yet."
    ),
    "revealed": (
        "Your result is revealed. The network's random draw picks another volunteer to "
        "compute the unit independently; it counts once their root matches yours."
    ),
    "paired": (
        "A second, independent result matches yours. Randomly drawn block audits "
        "re-check a few blocks before the unit counts; credit follows them."
    ),
    "withheld": (
        "The unit's evidence was not served when an auditor asked for it, which counts as "
        "a fault. Keep Hailstone running so peers can fetch your evidence."
    ),
}


def title(status: str) -> str:
    """A short, readable status ("awaiting_audit" -> "Awaiting audit" when unknown)."""
    return TITLES.get(status) or status.replace("_", " ").capitalize()


def _names(names: tuple[str, ...]) -> str:
    if not names:
        return "nobody yet"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def explain(row: Any) -> str:
    """One or two sentences: what this unit is waiting for, and what it earned you.

    Args:
        row: a network_bridge.HistoryRow (status, credited, agreeing, disagreeing,
            candidates).
    """
    s = row.status
    others = tuple(n for n in row.agreeing if n != row.me)
    if s == "computed (solo)":
        return (
            "Computed on this computer without the network: the result is exact and kept "
            "here, but it earns no credit until it is reported to the network and a "
            "second volunteer gets the same root."
        )
    phase = getattr(row, "phase", "")
    if s not in ("verified", "candidate", "disputed") and phase in PHASE_WORDS:
        return PHASE_WORDS[phase]
    if s == "reported_once":
        return (
            "Your result is published. It counts once another volunteer computes the same "
            "unit independently and gets the same root; until then it earns no credit. "
            "Nothing to do: the network assigns the second result by itself."
        )
    if s == "verified":
        if row.credited:
            return (
                f"Verified: {_names(others)} got the same root as you. You are credited with "
                "this unit and its numbers on the leaderboard."
            )
        return (
            f"Verified by {_names(others)}, whose results came before yours; the credit goes "
            "to the first two matching results, so this unit earns you none."
        )
    if s == "conflicting":
        return (
            f"Results disagree: {_names(row.disagreeing)} reported a different root. A further "
            "independent result (and block audits) will decide which is right; credit waits "
            "until then."
        )
    if s == "disputed":
        return (
            "A recomputed block did not match a reported root, so the unit is disputed and "
            "its faulty reports are removed; it is computed again, and credit follows the "
            "new agreement."
        )
    if s == "candidate":
        return (
            f"A number in this unit ({row.candidates} reported) did not fall below itself "
            "within the step bound. That would be a historic finding if it stands, so the "
            "unit is held for review and is never counted as verified until it is resolved."
        )
    if s == "open":
        return "This report does not count (for example, it was removed by a dispute)."
    return f"{title(s)}: the network has not decided this unit yet; credit waits until it does."


def credit_summary(rows: list[Any], unit_size: int) -> dict[str, int]:
    """Counts for the dashboard: computed, credited, waiting, and numbers credited."""
    credited = sum(1 for r in rows if r.status == "verified" and r.credited)
    waiting = sum(1 for r in rows if r.status not in ("verified", "open", "computed (solo)"))
    return {
        "computed": len(rows),
        "credited": credited,
        "waiting": waiting,
        "numbers_computed": len(rows) * unit_size,
        "numbers_credited": credited * unit_size,
    }
