"""Small server-side SVG plots (no JavaScript plotting library): scores with interval whiskers, paired deltas around
zero, and plain horizontal bars. Labels are escaped; values outside the axis are clipped to it."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

ROW = 26
LABEL_W = 190
PLOT_W = 360
PAD = 14


@dataclass
class Interval:
    label: str
    value: float | None
    lo: float | None = None
    hi: float | None = None


def _frame(rows: int, body: str, axis: str, title: str) -> str:
    height = rows * ROW + 2 * PAD + 18
    width = LABEL_W + PLOT_W + 80
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>{axis}{body}</svg>'
    )


def interval_plot(rows: list[Interval], title: str, lo: float = 0.0, hi: float = 1.0, zero_line: bool = False) -> str:
    """A dot with whiskers per row on a [lo, hi] axis (scores on [0, 1], deltas on a symmetric axis)."""
    span = (hi - lo) or 1.0

    def x(value: float) -> float:
        return LABEL_W + PLOT_W * (min(max(value, lo), hi) - lo) / span

    parts = []
    for i, row in enumerate(rows):
        y = PAD + i * ROW + ROW / 2
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 4}" text-anchor="end">{escape(row.label)}</text>')
        if row.value is None:
            parts.append(f'<text x="{LABEL_W + 4}" y="{y + 4}" class="muted">no score</text>')
            continue
        if row.lo is not None and row.hi is not None:
            parts.append(
                f'<line x1="{x(row.lo):.1f}" x2="{x(row.hi):.1f}" y1="{y}" y2="{y}" class="whisker"/>'
                f'<line x1="{x(row.lo):.1f}" x2="{x(row.lo):.1f}" y1="{y - 5}" y2="{y + 5}" class="whisker"/>'
                f'<line x1="{x(row.hi):.1f}" x2="{x(row.hi):.1f}" y1="{y - 5}" y2="{y + 5}" class="whisker"/>'
            )
        parts.append(f'<circle cx="{x(row.value):.1f}" cy="{y}" r="4.5" class="point"/>')
        parts.append(f'<text x="{LABEL_W + PLOT_W + 8}" y="{y + 4}">{row.value:+.3f}</text>' if zero_line else
                     f'<text x="{LABEL_W + PLOT_W + 8}" y="{y + 4}">{row.value:.3f}</text>')
    bottom = PAD + len(rows) * ROW
    axis = (
        f'<line x1="{LABEL_W}" x2="{LABEL_W + PLOT_W}" y1="{bottom}" y2="{bottom}" class="axis"/>'
        f'<text x="{LABEL_W}" y="{bottom + 14}" class="muted">{lo:.3g}</text>'
        f'<text x="{LABEL_W + PLOT_W}" y="{bottom + 14}" text-anchor="end" class="muted">{hi:.3g}</text>'
    )
    if zero_line and lo < 0 < hi:
        axis += f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{PAD}" y2="{bottom}" class="zero"/>'
    return _frame(len(rows), "".join(parts), axis, title)


def bar_plot(values: dict[str, float], title: str) -> str:
    """Horizontal bars scaled to the largest value (counts: removal reasons, tier sizes)."""
    top = max((v for v in values.values() if v is not None), default=0) or 1.0
    parts = []
    for i, (label, value) in enumerate(values.items()):
        y = PAD + i * ROW
        width = PLOT_W * max(value, 0) / top
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + ROW / 2 + 4}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{width:.1f}" height="{ROW - 8}" class="bar"/>'
            f'<text x="{LABEL_W + width + 6:.1f}" y="{y + ROW / 2 + 4}">{value:,.4g}</text>'
        )
    return _frame(len(values), "".join(parts), "", title)
