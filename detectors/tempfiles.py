"""Temporary files and folders named after the process that made them, so that what a killed run
(kill -9, power loss) left behind is recognised and removed by the next run.

Names are a prefix, then ``pid<N>-``; an entry whose process no longer exists is stale. SIGTERM and Ctrl-C need
no help from here: the `detrt` command turns SIGTERM into SystemExit, so `finally` blocks clean up.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_PID = re.compile(r"pid(\d+)-")


def tag() -> str:
    """The part of a temporary name that says which process made it."""
    return f"pid{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(folder: str | Path, prefix: str) -> list[Path]:
    """Remove the entries of `folder` named `prefix` + pid<N>-... whose process N has ended; returns them."""
    removed = []
    for entry in Path(folder).glob(f"{glob_escape(prefix)}*"):
        match = _PID.match(entry.name[len(prefix):])
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                removed.append(entry)
    return removed


def glob_escape(text: str) -> str:
    """`text` with glob's special characters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


@contextlib.contextmanager
def temporary_folder(prefix: str) -> Iterator[str]:
    """A temporary folder in the system temp folder (removed on exit, SIGTERM included), after removing the
    stale ones with the same `prefix` that killed runs left."""
    remove_stale(tempfile.gettempdir(), prefix)
    with tempfile.TemporaryDirectory(prefix=prefix + tag()) as folder:
        yield folder
