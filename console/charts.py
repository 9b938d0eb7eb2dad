"""Bar charts as inline SVG, drawn on the server from the metrics rows: no chart library and
no script in the browser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Sequence

WIDTH, HEIGHT, PAD = 720, 160, 24


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[int]
    css: str  # a class of console.css: the colour


def stacked_bars(times: Sequence[datetime], series: Sequence[Series], title: str, time_format: str) -> str:
    """Stacked bars, one per time bucket; each bar carries a <title> tooltip with its numbers."""
    if not times:
        return f'<p class="empty">{escape(title)}: no metrics in this range yet (the roll-up writes one row per minute).</p>'
    totals = [sum(s.values[i] for s in series) for i in range(len(times))]
    top = max(max(totals), 1)
    step = (WIDTH - 2 * PAD) / len(times)
    bar = max(step * 0.8, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 2 * PAD}" role="img" aria-label="{escape(title)}">',
        f'<text x="{PAD}" y="14" class="chart-title">{escape(title)} (max {top})</text>',
        f'<line x1="{PAD}" y1="{HEIGHT + PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT + PAD}" class="axis"/>',
    ]
    for i, at in enumerate(times):
        x, base = PAD + i * step, float(HEIGHT + PAD)
        tip = f"{at.strftime(time_format)}: " + ", ".join(f"{s.label} {s.values[i]}" for s in series)
        parts.append(f"<g><title>{escape(tip)}</title>")
        for s in series:
            height = HEIGHT * s.values[i] / top
            if height > 0:
                base -= height
                parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{height:.1f}" class="{s.css}"/>')
        parts.append("</g>")
    for i in (0, len(times) // 2, len(times) - 1):
        parts.append(f'<text x="{PAD + i * step:.1f}" y="{HEIGHT + PAD + 16}" class="tick">{escape(times[i].strftime(time_format))}</text>')
    legend_x = WIDTH - PAD - 110 * len(series)
    for j, s in enumerate(series):
        parts.append(f'<rect x="{legend_x + j * 110}" y="4" width="10" height="10" class="{s.css}"/>'
                     f'<text x="{legend_x + j * 110 + 14}" y="14" class="tick">{escape(s.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
