"""Logging for the headless commands: levels, text or JSON, a rotating file, journald.

`configure(...)` sets up the root logger once per process:

- stderr: text (`time level logger message`) or JSON lines (python-json-logger).
  Under systemd (`JOURNAL_STREAM` names our stderr) every line starts with the
  syslog priority as `<N>`, which journald turns into the entry's level
  (`SyslogLevelPrefix=`, on by default), and text lines carry no time (journald
  stamps each line).
- `logs/node.log` in the profile: the same format with times, rotated at
  `MAX_BYTES` with `BACKUPS` old files kept, readable by the owner only.
- a `SecretFilter` on every handler: registered secrets (the passphrase, the node
  secret) are replaced by `[redacted]` wherever they would appear. Nothing logs
  them on purpose; the filter is the second line of defence.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

LOG_DIR = "logs"
LOG_FILE = "node.log"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 5
FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
REDACTED = "[redacted]"

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JOURNAL_TEXT = "%(levelname)s %(name)s: %(message)s"
_JSON_FIELDS = "%(levelname)s %(name)s %(message)s"
# syslog priorities (sd-daemon.h): what journald reads from a "<N>" prefix.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


def under_journald(stream: TextIO) -> bool:
    """True when `stream` is connected to the journal (systemd sets JOURNAL_STREAM
    to "device:inode" of the stream it gave us; a redirected stderr does not match)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return st.st_dev == dev and st.st_ino == ino


class SecretFilter(logging.Filter):
    """Replaces every registered secret in a record's message and arguments."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str | bytes) -> None:
        """Never let `secret` (or, for bytes, its hex form) reach a log line."""
        if isinstance(secret, bytes):
            self._secrets.add(secret.hex())
            try:
                text = secret.decode("utf-8")
            except UnicodeDecodeError:
                return
            secret = text
        if len(secret) >= 4:  # shorter strings would redact ordinary words
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = self.scrub(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.scrub(record.exc_text)
        return True


class _JournalFormatter(logging.Formatter):
    """Another formatter's lines, each with the syslog priority prefix journald reads."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        # Every line of a traceback gets the prefix, so journald keeps its level.
        return "\n".join(prefix + line for line in self.inner.format(record).splitlines())


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotates like its base; every file it opens is readable by the owner only."""

    def _open(self):  # noqa: ANN202 - logging's own signature
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def make_formatter(fmt: str, *, journal: bool = False) -> logging.Formatter:
    """The formatter for `fmt` ("text" or "json"); `journal` adds journald priorities
    (and drops the time from text: journald stamps every line itself)."""
    if fmt == "json":
        # "time": ISO 8601 in UTC, which log collectors parse without a pattern.
        inner: logging.Formatter = JsonFormatter(
            _JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    elif fmt == "text":
        inner = logging.Formatter(_JOURNAL_TEXT if journal else _TEXT)
    else:
        raise ValueError(f"unknown log format {fmt!r} (choose text or json)")
    return _JournalFormatter(inner) if journal else inner


SECRETS = SecretFilter()


def configure(
    *,
    level: str = "warning",
    fmt: str = "text",
    data_dir: Path | None = None,
    stream: TextIO | None = None,
) -> Path | None:
    """Set up the root logger; returns the log file's path (None without `data_dir`).

    Replaces handlers an earlier call installed, so tests and repeated commands
    in one process get exactly one of each. A log file that cannot be opened (a
    read-only profile) is reported on stderr and left out.

    Raises:
        ValueError: an unknown level or format.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (choose {', '.join(LEVELS)})")
    stream = stream if stream is not None else sys.stderr
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_hailstone", False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(getattr(logging, level.upper()))
    console = logging.StreamHandler(stream)
    console.setFormatter(make_formatter(fmt, journal=under_journald(stream)))
    handlers: list[logging.Handler] = [console]
    path = None
    if data_dir is not None:
        path = Path(data_dir) / LOG_DIR / LOG_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only files: logs say which units and peers this is.
            rotating = _PrivateRotatingFileHandler(
                path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
            )
        except OSError as exc:
            print(f"hailstone: no log file ({path}: {exc.strerror})", file=stream)
            path = None
        else:
            rotating.setFormatter(make_formatter(fmt))
            handlers.append(rotating)
    for handler in handlers:
        handler._hailstone = True  # type: ignore[attr-defined]
        handler.addFilter(SECRETS)
        root.addHandler(handler)
    logging.captureWarnings(True)
    return path
