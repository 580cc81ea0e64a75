"""Sub-commands of the desktop app: `gui` and `screenshots`; `run_gui` for no sub-command."""

from __future__ import annotations

import argparse
from typing import Any


def run_gui(args: Any) -> int:
    """Open the desktop app (imports Qt only now, so headless commands stay light).

    Missing X11 libraries are named, with the packages to install, before Qt could
    abort with a message that names neither (exit status 1).
    """
    import sys

    from app import syslibs

    missing = syslibs.check()
    if missing:
        print(missing.advice(), file=sys.stderr)
        return 1
    from app.application import run_gui as _run

    return _run(args)


def _screenshots(args: Any) -> int:
    from app.screenshots import main

    return main(args.out, seconds=args.seconds)


def register(subparsers: argparse._SubParsersAction) -> None:
    g = subparsers.add_parser("gui", help="open the desktop app (the default)")
    g.add_argument(
        "--data-dir", metavar="DIR", help="profile folder (default: the per-user app data folder)"
    )
    g.add_argument("--params", choices=("dev", "production"), help="parameter set for this run")
    g.add_argument("--minimized", action="store_true", help="start in the tray / minimised")
    g.set_defaults(func=run_gui)
    s = subparsers.add_parser(
        "screenshots",
        help="save a PNG of every page, wizard page and the tray menu (demo profile, dev params)",
    )
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    s.add_argument("--seconds", type=float, default=20.0, help="how long the demo computes first")
    s.set_defaults(func=_screenshots)
