"""First-run wizard: account, compute, network, finish -> computing starts.

Slow steps (Argon2id key derivation, the GPU probe, testing a kubo API) run as
pool jobs; a page waits for its job and moves on when it reports back, so the
window keeps painting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from app.controller import AppController
from app.messages import gpu_reason_in_words
from app.network_bridge import (
    DEFAULT_KUBO_API,
    passphrase_strength,
    taken_names,
    username_problem,
)
from app.theme import icon
from app.workers import run_job
from engine.settings import effective_cores

log = logging.getLogger(__name__)

# "Fair" on the strength meter (12+ characters, or four words): weaker is refused.
MIN_PASSPHRASE_SCORE = 2


def probe_gpu() -> tuple[bool, str, list[str]]:
    """(available, reason, device names) from engine.gpu, if that module is present."""
    try:
        from engine import gpu  # written separately; optional here
    except Exception as exc:  # ImportError, or a broken CUDA install failing at import
        return False, f"GPU support is not installed ({type(exc).__name__})", []
    try:
        st = gpu.probe()
    except Exception as exc:
        return False, str(exc), []
    devices = [str(getattr(d, "name", d)) for d in (getattr(st, "devices", ()) or ())]
    return bool(st.available), str(getattr(st, "reason", "")), devices


def api_url(addr: str) -> str:
    """An http:// URL for a kubo API given as a multiaddr or a URL."""
    addr = addr.strip()
    m = re.fullmatch(r"/(ip4|ip6|dns|dns4|dns6)/([^/]+)/tcp/(\d+)(?:/http)?/?", addr)
    if m:
        host = f"[{m[2]}]" if m[1] == "ip6" else m[2]
        return f"http://{host}:{m[3]}"
    if re.fullmatch(r"https?://[^\s/]+/?", addr):
        return addr.rstrip("/")
    raise ValueError(f"not an API address: {addr!r} (write /ip4/127.0.0.1/tcp/5001)")


def test_kubo_api(addr: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Ask a kubo daemon for its id. Returns (reachable, peer id or what went wrong)."""
    try:
        url = api_url(addr) + "/api/v0/id"
    except ValueError as exc:
        return False, str(exc)
    req = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            doc = json.loads(resp.read(1 << 20))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, str(getattr(exc, "reason", exc))
    return True, str(doc.get("ID", "?"))


class AccountPage(QWizardPage):
    """Create an account (username, passphrase twice) or import an exported file."""

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        self.accounts = ctl.accounts()
        self.setTitle("Your account")
        self._done = False
        self._job: Any = None
        lay = QVBoxLayout(self)
        if self.accounts is None:
            self.setSubTitle("Accounts are not available in this build.")
            lab = QLabel(
                "Accounts and the network come with Hailstone's network layer, which is not "
                "installed here. Hailstone will compute in solo mode: results stay on this "
                "computer and can be published once the network layer is present."
            )
            lab.setWordWrap(True)
            lay.addWidget(lab)
            return
        if self.accounts.has_account():
            self.setSubTitle("This profile already has an account.")
            info = self.accounts.info()
            lay.addWidget(QLabel(f"Account: <b>{info.get('username', '?')}</b>"))
            self._done = True
            return
        self.setSubTitle(
            "Your account collects the credit for your work on every computer you use."
        )
        self.create_radio = QRadioButton("Create a new account")
        self.import_radio = QRadioButton("Import an account exported from another computer")
        self.create_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.create_radio)
        group.addButton(self.import_radio)
        lay.addWidget(self.create_radio)
        self.create_box = QWidget()
        form = QFormLayout(self.create_box)
        self.username = QLineEdit()
        self.username.setPlaceholderText("3-32 characters: a-z 0-9 _ . -")
        self.username_note = QLabel("")
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase2 = QLineEdit()
        self.passphrase2.setEchoMode(QLineEdit.EchoMode.Password)
        self.strength = QProgressBar()
        self.strength.setRange(0, 4)
        self.strength.setTextVisible(False)
        self.strength.setMaximumHeight(8)
        self.strength_note = QLabel("")
        form.addRow("Username:", self.username)
        form.addRow("", self.username_note)
        form.addRow("Passphrase:", self.passphrase)
        form.addRow("Again:", self.passphrase2)
        form.addRow("", self.strength)
        form.addRow("", self.strength_note)
        lay.addWidget(self.create_box)
        lay.addWidget(self.import_radio)
        self.import_box = QWidget()
        iform = QFormLayout(self.import_box)
        row = QHBoxLayout()
        self.import_path = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.import_path, 1)
        row.addWidget(browse)
        iform.addRow("File:", row)
        self.import_passphrase = QLineEdit()
        self.import_passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        iform.addRow("Passphrase:", self.import_passphrase)
        lay.addWidget(self.import_box)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        lay.addStretch(1)
        for w in (
            self.username,
            self.passphrase,
            self.passphrase2,
            self.import_path,
            self.import_passphrase,
        ):
            w.textChanged.connect(self._changed)
        self.create_radio.toggled.connect(self._changed)
        # Typing starts in the username field, not on the "Create" radio button: the
        # wizard focuses the first widget of the page's tab chain.
        QWidget.setTabOrder(self.passphrase2, self.create_radio)
        QWidget.setTabOrder(self.create_radio, self.import_radio)
        # Names the node already knows: the running node's view, plus the account
        # records of a ledger already in the data folder (read off the GUI thread).
        self.owners: dict[str, bytes] = ctl.name_owners()
        self._owners_job = run_job(
            lambda: taken_names(ctl.data_dir, ctl.params), self._owners_read, self._owners_failed
        )
        self._changed()

    def _owners_read(self, owners: dict[str, bytes]) -> None:
        self.owners = {**owners, **self.ctl.name_owners()}
        self._owners_job = None
        self._changed()

    def _owners_failed(self, exc: Exception) -> None:
        self._owners_job = None
        self.ctl.note(f"Known usernames could not be read: {exc}", "setup", "warning")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import account", str(Path.home()))
        if path:
            self.import_path.setText(path)

    def username_problem(self) -> str:
        """Why the typed username cannot be used ("" when it can)."""
        return username_problem(self.username.text(), self.owners)

    @Slot()
    def _changed(self) -> None:
        creating = self.create_radio.isChecked()
        self.create_box.setEnabled(creating)
        self.import_box.setEnabled(not creating)
        if creating:
            problem = self.username_problem() if self.username.text() else ""
            self.username_note.setText(problem)
            score, hint = passphrase_strength(self.passphrase.text())
            if self.passphrase.text() and score < MIN_PASSPHRASE_SCORE:
                hint = "Not accepted: " + hint[0].lower() + hint[1:]
            self.strength.setValue(score)
            mismatch = self.passphrase2.text() and self.passphrase2.text() != self.passphrase.text()
            self.strength_note.setText("The two passphrases differ." if mismatch else hint)
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # Qt override
        if self.accounts is None or self._done:
            return True
        if self._job is not None:
            return False
        if self.create_radio.isChecked():
            return (
                not self.username_problem()
                # A weak passphrase ("password") is refused, not merely warned about:
                # it guards the key that owns all the credit.
                and passphrase_strength(self.passphrase.text())[0] >= MIN_PASSPHRASE_SCORE
                and self.passphrase.text() == self.passphrase2.text()
            )
        return bool(self.import_path.text().strip() and self.import_passphrase.text())

    def validatePage(self) -> bool:  # Qt override
        if self.accounts is None or self._done:
            return True
        if self._job is None:
            if self.create_radio.isChecked():
                self.status.setText("Creating your account's keys… (this takes a moment)")
            else:
                self.status.setText("Importing the account… (unlocking it takes a moment)")
            if self.create_radio.isChecked():
                user, pw = self.username.text(), self.passphrase.text()
                fn = lambda: self.accounts.create(user, pw)  # noqa: E731
            else:
                path, pw = Path(self.import_path.text().strip()), self.import_passphrase.text()
                fn = lambda: self.accounts.import_file(path, pw)  # noqa: E731
            self._job = run_job(fn, self._created, self._failed)
            self.completeChanged.emit()
        return False  # the job moves the wizard on when it is done

    def _created(self, created: Any) -> None:
        self._job = None
        self._done = True
        self.status.setText("Account ready.")
        self.ctl.note(
            f"Account created; this computer's node key is {created.node.hex()[:16]}….", "account"
        )
        self.completeChanged.emit()
        self.wizard().next()

    def _failed(self, exc: Exception) -> None:
        self._job = None
        if getattr(exc, "code", "") == "wrong_passphrase":
            m = self.ctl.show("wrong_passphrase", source="account")
        else:
            detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            m = self.ctl.show("account_failed", detail, source="account")
        self.status.setText(m.text)
        self.completeChanged.emit()


class ComputePage(QWizardPage):
    """CPU cores, GPU on/off and devices, only when idle, pause on battery."""

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        s = ctl.settings
        self.setTitle("Computing")
        self.setSubTitle("How much of this computer Hailstone may use. You can change this later.")
        form = QFormLayout(self)
        self.cores = QSpinBox()
        n = os.cpu_count() or 1
        self.cores.setRange(0, n)
        self.cores.setSpecialValueText(f"automatic ({effective_cores(0)} of {n})")
        self.cores.setValue(int(s["cpu_cores"]))
        self.cores.setSuffix(" cores")
        form.addRow("CPU cores:", self.cores)
        self.gpu = QCheckBox("Use the GPU")
        self.gpu.setChecked(bool(s["gpu_enabled"]))
        self.gpu_note = QLabel("Looking for a GPU…")
        self.gpu_note.setWordWrap(True)
        self.devices = QLineEdit(", ".join(str(d) for d in s["gpu_devices"]))
        self.devices.setPlaceholderText("all")
        form.addRow("Graphics card:", self.gpu)
        form.addRow("", self.gpu_note)
        form.addRow("GPU devices:", self.devices)
        self.devices.setVisible(False)
        form.labelForField(self.devices).setVisible(False)
        self.idle = QCheckBox("Only when the computer is idle")
        self.idle.setChecked(bool(s["idle_only"]))
        self.battery = QCheckBox("Pause while on battery")
        self.battery.setChecked(bool(s["pause_on_battery"]))
        form.addRow("When:", self.idle)
        form.addRow("", self.battery)
        self._form = form
        self._job = run_job(
            probe_gpu, self._gpu_probed, lambda _e: self._gpu_probed((False, str(_e), []))
        )

    def _gpu_probed(self, res: tuple[bool, str, list[str]]) -> None:
        available, reason, devices = res
        if available:
            self.gpu_note.setText("Found: " + ", ".join(f"{i}: {d}" for i, d in enumerate(devices)))
            show = len(devices) > 1
            self.devices.setVisible(show)
            self._form.labelForField(self.devices).setVisible(show)
        else:
            log.info("no GPU in the wizard: %s", reason)
            self.gpu_note.setText(f"No GPU: {gpu_reason_in_words(reason)}. The CPU will compute.")
            self.gpu_note.setToolTip(reason)  # the technical reason, for a bug report

    def values(self) -> dict[str, Any]:
        devices = [int(p) for p in self.devices.text().replace(" ", "").split(",") if p.isdigit()]
        return {
            "cpu_cores": self.cores.value(),
            "gpu_enabled": self.gpu.isChecked(),
            "gpu_devices": devices,
            "idle_only": self.idle.isChecked(),
            "pause_on_battery": self.battery.isChecked(),
        }


class NetworkPage(QWizardPage):
    """The embedded IPFS node, or an existing kubo daemon (tested live)."""

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        self.setTitle("Network")
        self.setSubTitle("Hailstone exchanges signed results with other volunteers over IPFS.")
        lay = QVBoxLayout(self)
        self.embedded = QRadioButton("Run an IPFS node inside Hailstone (recommended)")
        self.rpc = QRadioButton("Use an IPFS node I already run (IPFS Desktop, kubo)")
        group = QButtonGroup(self)
        group.addButton(self.embedded)
        group.addButton(self.rpc)
        (self.rpc if ctl.settings["ipfs_backend"] == "rpc" else self.embedded).setChecked(True)
        lay.addWidget(self.embedded)
        lay.addWidget(self.rpc)
        row = QHBoxLayout()
        self.addr = QLineEdit(ctl.settings["kubo_api_addr"] or DEFAULT_KUBO_API)
        self.test_button = QPushButton("Test")
        row.addWidget(QLabel("API address:"))
        row.addWidget(self.addr, 1)
        row.addWidget(self.test_button)
        self.rpc_box = QWidget()
        self.rpc_box.setLayout(row)
        lay.addWidget(self.rpc_box)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        lay.addWidget(self.result)
        lay.addStretch(1)
        self.tested_ok: bool | None = None
        self._job: Any = None
        self.test_button.clicked.connect(self.test)
        self.rpc.toggled.connect(self._changed)
        self.addr.textChanged.connect(self._addr_changed)
        self._changed()

    def _changed(self) -> None:
        self.rpc_box.setEnabled(self.rpc.isChecked())
        self.completeChanged.emit()

    def _addr_changed(self) -> None:
        self.tested_ok = None
        self.result.setText("")
        self.completeChanged.emit()

    @Slot()
    def test(self) -> None:
        """Test the kubo API address off the GUI thread."""
        addr = self.addr.text()
        self.result.setText(f"Testing {addr}…")
        self.test_button.setEnabled(False)
        self._job = run_job(
            lambda: test_kubo_api(addr), self._tested, lambda e: self._tested((False, str(e)))
        )

    def _tested(self, res: tuple[bool, str]) -> None:
        ok, detail = res
        self._job = None
        self.test_button.setEnabled(True)
        self.tested_ok = ok
        if ok:
            self.result.setText(f"Connected: the node's peer id is {detail}.")
        else:
            m = self.ctl.show(
                "ipfs_unreachable", f"{self.addr.text()} ({detail})", source="network"
            )
            self.result.setText(m.text)
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # Qt override
        return self.embedded.isChecked() or self.tested_ok is True

    def values(self) -> dict[str, Any]:
        return {
            "ipfs_backend": "rpc" if self.rpc.isChecked() else "embedded",
            "kubo_api_addr": self.addr.text().strip(),
        }


class FinishPage(QWizardPage):
    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        self.setTitle("Ready")
        self.setSubTitle("Press Finish to start computing.")
        lay = QVBoxLayout(self)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        lay.addStretch(1)

    def initializePage(self) -> None:  # Qt override
        wiz = self.wizard()
        c = wiz.compute.values()
        n = wiz.network.values()
        cores = effective_cores(c["cpu_cores"])
        lines = [
            f"• Parameter set: <b>{self.ctl.params.name}</b>",
            f"• CPU: {cores} core{'s' if cores > 1 else ''}"
            + (", GPU when available" if c["gpu_enabled"] else ""),
            "• Only when idle" if c["idle_only"] else "• Whenever the computer is on",
            "• Pauses on battery" if c["pause_on_battery"] else "• Also on battery",
            "• IPFS: "
            + ("embedded node" if n["ipfs_backend"] == "embedded" else n["kubo_api_addr"]),
            "",
            "Hailstone keeps running in the tray when you close its window."
            if QSystemTrayIcon.isSystemTrayAvailable()
            else "Closing Hailstone's window stops computing; there is no tray here.",
        ]
        self.summary.setText("<br>".join(lines))


class SetupWizard(QWizard):
    """The first-run wizard. Accepting it saves the settings and starts computing."""

    def __init__(self, ctl: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctl = ctl
        self.setWindowTitle("Welcome to Hailstone")
        self.setWindowIcon(icon("hailstone"))
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.account = AccountPage(ctl)
        self.compute = ComputePage(ctl)
        self.network = NetworkPage(ctl)
        self.finish = FinishPage(ctl)
        for p in (self.account, self.compute, self.network, self.finish):
            self.addPage(p)
        self.resize(620, 480)

    def accept(self) -> None:  # Qt override
        values = {**self.compute.values(), **self.network.values()}
        for key, value in values.items():
            try:
                self.ctl.set_setting(key, value, "setup")  # a full disk is a message
            except ValueError as exc:
                self.ctl.note(f"Setting {key} not saved: {exc}", "setup", "warning")
        try:
            self.ctl.mark_set_up()
        except OSError as exc:
            # Computing still starts; the wizard simply shows again next time.
            self.ctl.show("settings_not_saved", f"setup state: {exc.strerror or exc}", "setup")
        self.ctl.note("Setup finished.", "setup")
        super().accept()
        self.ctl.start_engine()
