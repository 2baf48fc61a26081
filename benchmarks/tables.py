"""Markdown result tables for the benchmark scripts: a caption line, then the table."""
from __future__ import annotations

from pathlib import Path


def write_table(path: Path, caption: str, header: list[str], rows: list[str]) -> str:
    """Write `caption` and a table of `header` (the first column left-aligned, the others right) and
    `rows` (already formatted `| ... |` lines) to `path`; returns the text."""
    text = "\n".join([caption, "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1), *rows])
    path.write_text(text + "\n")
    return text
