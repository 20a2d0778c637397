"""Write a benchmark's results block into a docs page, between its start and end markers (appended when absent)."""

from __future__ import annotations

from pathlib import Path


def write_block(doc: Path, start: str, end: str, lines: list[str]) -> None:
    text = doc.read_text() if doc.exists() else ""
    block = "\n".join([start, *lines, end])
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
