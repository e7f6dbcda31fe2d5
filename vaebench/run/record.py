"""The run's record: metrics.json, written atomically and read back for its status, and why a run
stopped, told to the user and kept in train.log."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def recorded_status(run_dir: Path) -> str | None:
    """The status metrics.json records, None where there is none to read."""
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def tell_failure(message: str, *hints: str) -> None:
    """Why the run stopped: on stderr for the user and in train.log, so the run folder keeps it too."""
    text = "\n".join([f"\nvaebench: {message}", *hints])
    print(text, file=sys.stderr)
    logging.getLogger("vaebench.record").error(text.strip())
