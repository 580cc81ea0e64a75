"""Suite-wide test setup: offscreen Qt, no stray threads."""

from __future__ import annotations

import os

# Qt must not look for a display in tests; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
