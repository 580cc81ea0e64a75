"""Preferences built from the declared settings (STYLE §3): one widget per entry.

Widgets are derived from each `Setting`'s kind, title, help, unit and bounds;
a change is validated by the setting, stored (which persists it) and reaches
the engine live through the controller's settings listener. Settings marked
`restart` say so next to their title.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from engine.settings import Setting, SettingsStore

GROUP_ORDER = ("Compute", "When", "General", "Network")
GROUP_TITLES = {
    "Compute": "Compute",
    "When": "When to compute",
    "General": "General",
    "Network": "Network",
}
LIST_SEPARATOR = ";"


class _RangeMixin:
    """A spin box that accepts any number while typing and reports one outside its
    range (`out_of_range(text)`) instead of silently restoring the old value."""

    out_of_range = Signal(str)

    def _core(self, text: str) -> str:
        suffix = self.suffix()  # type: ignore[attr-defined]
        if suffix and text.endswith(suffix):
            text = text[: -len(suffix)]
        return text.strip()

    def validate(self, text: str, _pos: int) -> QValidator.State:  # Qt override
        core = self._core(text)
        if core in ("", "-", ".", "-."):
            return QValidator.State.Intermediate
        try:
            v = self._parse(core)
        except ValueError:
            return QValidator.State.Invalid
        lo, hi = self.minimum(), self.maximum()  # type: ignore[attr-defined]
        ok = lo <= v <= hi
        return QValidator.State.Acceptable if ok else QValidator.State.Intermediate

    def fixup(self, text: str) -> str:  # Qt override: editing ended on an unusable value
        self.out_of_range.emit(self._core(text))
        return text


class RangeSpinBox(_RangeMixin, QSpinBox):
    _parse = staticmethod(int)


class RangeDoubleSpinBox(_RangeMixin, QDoubleSpinBox):
    _parse = staticmethod(float)


def make_editor(setting: Setting, value: Any, on_change: Any) -> QWidget:
    """A widget for one setting; calls `on_change(value)` when the user changes it."""
    k = setting.kind
    if k == "bool":
        w = QCheckBox()
        w.setChecked(bool(value))
        w.toggled.connect(on_change)
        return w
    if k == "int":
        w = RangeSpinBox()
        lo = int(setting.minimum if setting.minimum is not None else -(2**31))
        hi = int(setting.maximum if setting.maximum is not None else 2**31 - 1)
        if setting.key == "cpu_cores":
            hi = min(hi, os.cpu_count() or 1)
            w.setSpecialValueText("automatic (all but one)")
        if setting.key == "bandwidth_limit_kib":
            w.setSpecialValueText("no limit")  # 0 KiB/s would read as "nothing goes"
        w.setRange(lo, hi)
        w.setValue(int(value))
        if setting.unit:
            w.setSuffix(f" {setting.unit}" if setting.unit != "%" else "%")
        w.setKeyboardTracking(False)  # apply when typing is done, not per digit
        w.valueChanged.connect(on_change)
        return w
    if k == "float":
        w = RangeDoubleSpinBox()
        w.setDecimals(3)
        w.setSingleStep(0.01)
        w.setRange(setting.minimum or 0.0, setting.maximum if setting.maximum is not None else 1e12)
        w.setValue(float(value))
        w.setKeyboardTracking(False)
        w.valueChanged.connect(on_change)
        return w
    if k == "choice":
        w = QComboBox()
        w.addItems(list(setting.choices))
        w.setCurrentText(str(value))
        w.currentTextChanged.connect(on_change)
        return w
    if k in ("str", "str_list", "schedule", "int_list"):
        w = QLineEdit()
        if k == "str":
            w.setText(str(value))
            w.editingFinished.connect(lambda: on_change(w.text()))
            return w
        sep = ", " if k == "int_list" else f"{LIST_SEPARATOR} "
        w.setText(sep.join(str(v) for v in value))
        hint = {
            "schedule": "e.g. Mon-Fri 18:00-08:00; Sat,Sun 00:00-24:00 (empty: any time)",
            "int_list": "e.g. 0, 1 (empty: the first GPU)",
            "str_list": f"names separated by '{LIST_SEPARATOR}'",
        }[k]
        w.setPlaceholderText(hint)

        def parse() -> Any:
            text = w.text()
            if k == "int_list":
                parts = [p.strip() for p in text.split(",") if p.strip()]
                try:
                    return [int(p) for p in parts]
                except ValueError:
                    return parts  # the setting rejects it with a message
            return [p.strip() for p in text.split(LIST_SEPARATOR) if p.strip()]

        w.editingFinished.connect(lambda: on_change(parse()))
        return w
    raise ValueError(f"no editor for kind {k!r}")


def set_editor_value(setting: Setting, editor: QWidget, value: Any) -> None:
    """Show `value` in an editor made by make_editor, without reporting a change."""
    k = setting.kind
    editor.blockSignals(True)  # showing a stored value is not a user's change
    try:
        if k == "bool":
            editor.setChecked(bool(value))
        elif k == "int":
            editor.setValue(int(value))
        elif k == "float":
            editor.setValue(float(value))
        elif k == "choice":
            editor.setCurrentText(str(value))
        elif k == "str":
            editor.setText(str(value))
        elif k in ("str_list", "schedule", "int_list"):
            sep = ", " if k == "int_list" else f"{LIST_SEPARATOR} "
            editor.setText(sep.join(str(v) for v in value))
    finally:
        editor.blockSignals(False)


class PreferencesPage(QWidget):
    """Every visible setting, grouped; changes apply live and persist."""

    def __init__(self, ctl: AppController) -> None:
        super().__init__()
        self.ctl = ctl
        self.store: SettingsStore = ctl.settings
        self.editors: dict[str, QWidget] = {}
        self.errors: dict[str, QLabel] = {}
        outer = QVBoxLayout(self)
        outer.addWidget(QLabel("<h2>Preferences</h2>"))
        note = QLabel("Changes apply at once and are saved.")
        outer.addWidget(note)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        body_lay = QVBoxLayout(body)
        groups: dict[str, list[Setting]] = {}
        for s in self.store.settings.values():
            if s.group in GROUP_TITLES:
                groups.setdefault(s.group, []).append(s)
        for g in GROUP_ORDER:
            if g not in groups:
                continue
            box = QGroupBox(GROUP_TITLES[g])
            form = QFormLayout(box)
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
            for s in groups[g]:
                value = self.store[s.key]
                if s.key == "params":
                    value = ctl.params.name  # the set in effect (a --params override wins)
                editor = make_editor(s, value, lambda v, key=s.key: self.apply(key, v))
                editor.setToolTip(s.help)
                if s.key == "params" and ctl.params.name != self.store[s.key]:
                    editor.blockSignals(True)  # showing the override is not a change
                    if editor.findText(ctl.params.name) < 0:  # a custom set (tests, demos)
                        editor.addItem(ctl.params.name)
                    editor.setCurrentText(ctl.params.name)
                    editor.blockSignals(False)
                    editor.setEnabled(False)
                    editor.setToolTip(
                        f"{ctl.params.name} was chosen on the command line (--params) for "
                        f"this run; the saved choice is {self.store[s.key]}."
                    )
                if isinstance(editor, _RangeMixin):
                    editor.out_of_range.connect(
                        lambda text, key=s.key: self.refuse_out_of_range(key, text)
                    )
                editor.setObjectName(f"pref_{s.key}")
                title = s.title + (" (after restart)" if s.restart else "")
                label = QLabel(title + ":")
                label.setToolTip(s.help)
                err = QLabel("")
                err.setStyleSheet("color: #c53030;")
                err.setWordWrap(True)
                err.hide()
                cell = QWidget()
                cl = QVBoxLayout(cell)
                cl.setContentsMargins(0, 0, 0, 0)
                cl.addWidget(editor)
                cl.addWidget(err)
                form.addRow(label, cell)
                self.editors[s.key] = editor
                self.errors[s.key] = err
            body_lay.addWidget(box)
        body_lay.addStretch(1)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        self.gpu_note = QLabel("")
        self.gpu_note.setWordWrap(True)
        self.gpu_note.setAlignment(Qt.AlignmentFlag.AlignLeft)
        outer.addWidget(self.gpu_note)
        # The wizard, a snooze or the tray may change settings after this page was
        # built: follow the store (a Qt connection ends with the page).
        ctl.setting_changed.connect(self.on_setting_changed)

    @Slot(str, object)
    def on_setting_changed(self, key: str, value: Any) -> None:
        editor = self.editors.get(key)
        if editor is None or not editor.isEnabled():
            return  # hidden, or the params override shown instead
        set_editor_value(self.store.settings[key], editor, value)
        self.errors[key].hide()

    def refuse_out_of_range(self, key: str, text: str) -> None:
        """Say why a typed number was not taken (it used to revert without a word)."""
        setting = self.store.settings[key]
        editor = self.editors[key]
        unit = f" {setting.unit}" if setting.unit and setting.unit != "%" else setting.unit or ""
        lo, hi = editor.minimum(), editor.maximum()  # type: ignore[attr-defined]
        fmt = (lambda v: f"{v:g}") if setting.kind == "float" else (lambda v: str(int(v)))
        msg = (
            f"{text or 'An empty value'} is outside {fmt(lo)}–{fmt(hi)}{unit}; "
            f"{setting.title.lower()} stays {fmt(self.store[key])}{unit}."
        )
        err = self.errors[key]
        err.setText(msg)
        err.show()
        self.ctl.note(f"Preference not changed: {msg}", "preferences", "warning")

    def apply(self, key: str, value: Any) -> bool:
        """Validate and store one value; show the problem next to the field if it fails."""
        err = self.errors[key]
        try:
            saved = self.ctl.set_setting(key, value, "preferences")
        except ValueError as exc:
            err.setText(str(exc))
            err.show()
            self.ctl.note(f"Preference not saved: {exc}", "preferences", "warning")
            return False
        if not saved:  # the disk refused: show the value still in effect
            set_editor_value(self.store.settings[key], self.editors[key], self.store[key])
            err.setText("Not saved: the settings file could not be written.")
            err.show()
            return False
        err.hide()
        return True
