"""Inline SVG charts rendered on the server: no script library, no CDN, nothing to fetch."""

from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2")


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bar_chart(
    title: str,
    bars: Sequence[tuple[str, float]],
    *,
    width: int = 640,
    height: int = 220,
    color: str = PALETTE[0],
    unit: str = "",
) -> str:
    """Vertical bars with their labels; the values are printed above the bars."""
    top, bottom, left = 24, 36, 8
    plot_height = height - top - bottom
    peak = max((value for _, value in bars), default=0) or 1
    slot = min((width - 2 * left) / max(len(bars), 1), 90)  # one bar is not a wall
    label_every = -(-len(bars) // 10) or 1  # at most ~10 labels, so they stay readable
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_height}" x2="{width - left}" '
        f'y2="{top + plot_height}" stroke="#9ca3af"/>',
    ]
    for n, (label, value) in enumerate(bars):
        bar_height = plot_height * value / peak
        x = left + n * slot + slot * 0.15
        y = top + plot_height - bar_height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{bar_height:.1f}" fill="{color}" data-value="{value}">'
            f"<title>{escape(label)}: {_number(value)}{unit}</title></rect>"
        )
        if value and len(bars) <= 31:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                f'class="value">{_number(value)}</text>'
            )
        if n % label_every == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom + 14}" '
                f'text-anchor="middle" class="label">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def funnel(title: str, steps: Sequence[tuple[str, float]], *, width: int = 640) -> str:
    """Horizontal bars narrowing step by step (leads, converted, won ...)."""
    row, left = 30, 150
    height = 24 + row * len(steps)
    peak = max((value for _, value in steps), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="8" y="14" class="chart-title">{escape(title)}</text>',
    ]
    for n, (label, value) in enumerate(steps):
        bar = (width - left - 60) * value / peak
        y = 22 + n * row
        parts.append(
            f'<text x="8" y="{y + 16}" class="label">{escape(label)}</text>'
            f'<rect class="bar" x="{left}" y="{y}" width="{bar:.1f}" height="{row - 8}" '
            f'fill="{PALETTE[n % len(PALETTE)]}" data-value="{value}"/>'
            f'<text x="{left + bar + 6:.1f}" y="{y + 16}" class="value">{_number(value)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
