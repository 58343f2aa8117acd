"""Small server-side SVG charts for the reports page: no JavaScript, no CDN, work offline and
under the dashboard's Content-Security-Policy. Each function returns ``Markup`` to embed
inline; every label is escaped. Hovering a bar or cell shows its exact value (``<title>``).
"""
from __future__ import annotations

import math

from markupsafe import Markup, escape

WIDTH = 720
HEIGHT = 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 12, 14, 34
AXIS = "#6b7280"
GRID = "#e5e7eb"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def nice_max(value: float) -> float:
    """The smallest 1/2/5 x 10^n at or above ``value`` (a readable top of the axis)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * exp >= value:
            return float(step * exp)
    return float(10 * exp)  # pragma: no cover


def _svg(body: str, label: str, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    return Markup(
        f'<svg class="si-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(label)}" '
        f'style="max-width:{width}px;font:11px sans-serif">{body}</svg>')


def _axes(top: float, fmt, plot_w: float, plot_h: float) -> list[str]:
    parts = []
    for i in range(5):
        value = top * i / 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{PAD_LEFT}" x2="{PAD_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID}"/>')
        parts.append(f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'fill="{AXIS}">{escape(fmt(value))}</text>')
    return parts


def _x_labels(labels: list[str], slot: float, plot_h: float) -> list[str]:
    every = max(1, math.ceil(len(labels) / 12))
    parts = []
    for i, text in enumerate(labels):
        if i % every == 0:
            x = PAD_LEFT + slot * (i + 0.5)
            parts.append(f'<text x="{x:.1f}" y="{PAD_TOP + plot_h + 16}" text-anchor="middle" '
                         f'fill="{AXIS}">{escape(text)}</text>')
    return parts


def bar_chart(labels: list[str], series: list[tuple[str, list[float], str]], *, label: str,
              fmt=lambda v: f"{v:g}") -> Markup:
    """Grouped bars: ``series`` = [(name, values, colour)], one value per label."""
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    top = nice_max(max([v for _, values, _ in series for v in values if v] or [0]))
    slot = plot_w / max(len(labels), 1)
    bar = max(slot * 0.8 / max(len(series), 1), 1)
    parts = _axes(top, fmt, plot_w, plot_h)
    for s, (name, values, colour) in enumerate(series):
        for i, value in enumerate(values):
            h = plot_h * (value or 0) / top
            x = PAD_LEFT + slot * i + slot * 0.1 + bar * s
            parts.append(
                f'<rect x="{x:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(labels[i])}: '
                f'{escape(fmt(value or 0))} {escape(name)}</title></rect>')
    parts += _x_labels(labels, slot, plot_h)
    parts += _legend([(name, colour) for name, _, colour in series], plot_w)
    return _svg("".join(parts), label)


def line_chart(labels: list[str], values: list[float | None], *, label: str, name: str,
               colour: str = "#2563eb", fmt=lambda v: f"{v:g}") -> Markup:
    """One line; ``None`` values leave a gap (a day without data is not a zero)."""
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    top = nice_max(max([v for v in values if v is not None] or [0]))
    slot = plot_w / max(len(labels), 1)
    parts = _axes(top, fmt, plot_w, plot_h)
    segment: list[str] = []
    segments = []
    for i, value in enumerate(values):
        if value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        x = PAD_LEFT + slot * (i + 0.5)
        y = PAD_TOP + plot_h - plot_h * value / top
        segment.append(f"{x:.1f},{y:.1f}")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>'
                     f'{escape(labels[i])}: {escape(fmt(value))}</title></circle>')
    if segment:
        segments.append(segment)
    for points in segments:
        parts.insert(0, f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
                        'stroke-width="2"/>')
    parts += _x_labels(labels, slot, plot_h)
    parts += _legend([(name, colour)], plot_w)
    return _svg("".join(parts), label)


def _legend(items, plot_w) -> list[str]:
    parts, x = [], PAD_LEFT + plot_w
    for name, colour in reversed(items):
        x -= 8 + 7 * len(name) + 16
        parts.append(f'<rect x="{x}" y="2" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="11" fill="{AXIS}">{escape(name)}</text>')
    return parts


def heatmap(grid: list[list[int]], *, label: str, colour=(37, 99, 235)) -> Markup:
    """7 x 24 counts (Monday first, hours 0-23) as shaded cells."""
    cell_w, cell_h, left, top_pad = 26, 20, 40, 18
    width, height = left + 24 * cell_w + 4, top_pad + 7 * cell_h + 4
    peak = max((v for row in grid for v in row), default=0) or 1
    parts = []
    for hour in range(0, 24, 3):
        parts.append(f'<text x="{left + hour * cell_w + cell_w / 2}" y="12" text-anchor="middle" '
                     f'fill="{AXIS}">{hour:02d}</text>')
    r, g, b = colour
    for day, row in enumerate(grid):
        y = top_pad + day * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" fill="{AXIS}">'
                     f'{WEEKDAYS[day]}</text>')
        for hour, value in enumerate(row):
            alpha = 0.06 + 0.94 * value / peak if value else 0.0
            fill = f"rgba({r},{g},{b},{alpha:.2f})" if value else "#f3f4f6"
            parts.append(
                f'<rect x="{left + hour * cell_w}" y="{y}" width="{cell_w - 2}" '
                f'height="{cell_h - 2}" fill="{fill}"><title>{WEEKDAYS[day]} {hour:02d}:00–'
                f'{hour:02d}:59: {value}</title></rect>')
    return _svg("".join(parts), label, width, height)
