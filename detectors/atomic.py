"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .tempfiles import remove_stale, tag


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{path.name}.")  # left by a killed writer
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{tag()}", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: object, indent: int | None = 2) -> Path:
    """Write `data` as JSON (indented unless `indent` is None), atomically."""
    return write_bytes_atomic(path, (json.dumps(data, indent=indent) + "\n").encode())
