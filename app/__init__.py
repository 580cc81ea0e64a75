"""Hailstone's desktop app: the Qt layer only (windows, wizard, tray, graphs, workers).

engine/ and network/ never import this package; it drives them through their
public interfaces (docs/ARCHITECTURE.md, "Desktop app").
"""
