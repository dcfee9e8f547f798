"""Prints a command's result as one JSON line, written in one piece so that no other writer splits it."""

from __future__ import annotations

import json
import sys
from typing import IO, Any


def print_record(record: Any, file: IO[str] | None = None) -> None:
    """One `write` per line: `print` writes the text and its newline separately, and under PYTHONUNBUFFERED (as
    a Ray job's entrypoint runs) another thread's output, e.g. Ray's relayed worker logs, can land in between."""
    stream = file or sys.stdout
    stream.write(json.dumps(record) + "\n")
    stream.flush()
