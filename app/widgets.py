"""Small widgets shared by the pages and the main window."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel, QWidget


class ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" instead of widening the window.

    A plain QLabel's minimum width is its text's width, so a long status message
    (a GPU warning, an error detail) made the whole window wider, or was cut off
    under the next widget. This one shows what fits, keeps the full text in its
    tooltip, and asks for only `min_width` pixels.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, min_width: int = 40) -> None:
        super().__init__(parent)
        self._full = ""
        self._min_width = min_width
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def text(self) -> str:  # the full text, not the elided one
        return self._full

    def setText(self, text: str) -> None:  # Qt override
        self._full = str(text)
        self.setToolTip(self._full if self._full else "")
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(
            self._full, Qt.TextElideMode.ElideRight, max(self.width(), self._min_width)
        )
        super().setText(shown)

    def resizeEvent(self, event: Any) -> None:  # Qt override
        super().resizeEvent(event)
        self._elide()

    def minimumSizeHint(self) -> QSize:  # Qt override
        return QSize(self._min_width, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # Qt override
        full = self.fontMetrics().horizontalAdvance(self._full) + 8
        return QSize(full, super().sizeHint().height())
