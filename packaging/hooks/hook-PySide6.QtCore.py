"""Hailstone's copy of PyInstaller's PySide6.QtCore hook, without Qt's translations.

The app's own text is English only, so Qt's translated standard buttons (about
7 MB of .qm files) would only mix languages.
"""

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
datas = [entry for entry in datas if "translations" not in entry[1].replace("\\", "/").split("/")]
