"""The fleet picture as a file: an SVG (heat strip, version histogram, legend) or an HTML page around it.

Self-contained (no script, no external asset) so it can be attached to a ticket or a pipeline run.
Every text is escaped: tenant ids and labels come from a tenant source.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Final

from fleetway.activities.fleet.report import FleetReport
from fleetway.activities.fleet.state import FleetState

__all__ = ["COLOURS", "render_svg", "write_report"]

# Terminal colour names (rich) and their SVG fill, worst first.
COLOURS: Final = {
    FleetState.UNREADABLE: "magenta",
    FleetState.UNKNOWN: "bright_black",
    FleetState.FAILED: "red",
    FleetState.TAMPERED: "bright_red",
    FleetState.AHEAD: "blue",
    FleetState.IGNORED: "bright_yellow",
    FleetState.OUTDATED: "cyan",
    FleetState.BEHIND: "yellow",
    FleetState.CURRENT: "green",
}
_FILL: Final = {
    FleetState.UNREADABLE: "#a020a0",
    FleetState.UNKNOWN: "#808080",
    FleetState.FAILED: "#d62728",
    FleetState.TAMPERED: "#ff7f0e",
    FleetState.AHEAD: "#1f77b4",
    FleetState.IGNORED: "#bcbd22",
    FleetState.OUTDATED: "#17becf",
    FleetState.BEHIND: "#e6c229",
    FleetState.CURRENT: "#2ca02c",
}
_WIDTH: Final = 800
_STRIP_H: Final = 36
_ROW_H: Final = 18


def render_svg(report: FleetReport) -> str:
    """The picture: a title, the heat strip, one bar per version, a legend."""
    parts: list[str] = []
    title = f"{report.total} tenants, latest v{report.latest or '∅'}, read at {report.read_at}"
    parts.append(f'<text x="0" y="14" font-size="13">{escape(title)}</text>')
    y = 24
    if report.strip:
        cell = _WIDTH / len(report.strip)
        for i, (state, version) in enumerate(zip(report.strip, report.strip_versions, strict=True)):
            parts.append(
                f'<rect x="{i * cell:.2f}" y="{y}" width="{cell + 0.5:.2f}" height="{_STRIP_H}" '
                f'fill="{_FILL[FleetState(state)]}"><title>{escape(state)} from v{escape(version or "∅")}'
                "</title></rect>"
            )
        y += _STRIP_H + 12
    peak = max(report.versions.values(), default=1)
    for version, count in report.versions.items():
        width = max(2.0, (_WIDTH - 160) * count / peak)
        colour = _FILL[FleetState.CURRENT] if version == report.latest else _FILL[FleetState.BEHIND]
        label = f"v{version}" if version else "none"
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(label)}</text>')
        parts.append(f'<rect x="70" y="{y + 2}" width="{width:.1f}" height="{_ROW_H - 4}" fill="{colour}"/>')
        parts.append(f'<text x="{76 + width:.1f}" y="{y + 13}" font-size="12">{count}</text>')
        y += _ROW_H
    y += 8
    x = 0
    for state, n in report.states.items():
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{_FILL[FleetState(state)]}"/>')
        parts.append(f'<text x="{x + 16}" y="{y + 11}" font-size="12">{escape(state)} {n}</text>')
        x += 130
    height = y + 20
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif">' + "".join(parts) + "</svg>\n"
    )


def _table(title: str, groups: dict[str, dict[str, int]], kinds: list[str]) -> str:
    head = "".join(f"<th>{escape(k)}</th>" for k in kinds)
    rows = "".join(
        f"<tr><td>{escape(group)}</td>"
        + "".join(f"<td>{counts.get(k, 0) or ''}</td>" for k in kinds)
        + "</tr>"
        for group, counts in groups.items()
    )
    return f"<h2>{escape(title)}</h2><table><tr><th></th>{head}</tr>{rows}</table>"


def write_report(report: FleetReport, path: Path) -> None:
    """Write ``path``: the SVG alone (``.svg``) or an HTML page with it and the tables (``.html``)."""
    svg = render_svg(report)
    if path.suffix == ".svg":
        path.write_text(svg, encoding="utf-8")
        return
    kinds = list(report.states)
    named = "".join(
        f"<p><b>{escape(kind)}</b>: {escape(', '.join(tenants))}</p>"
        for kind, tenants in report.named.items()
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>fleetway fleet</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}"
        "td:first-child{text-align:left}</style></head><body>"
        f"<h1>fleet state</h1><p>set {escape(report.migration_set)}</p>{svg}"
        + _table("by server", report.servers, kinds)
        + _table("by label", report.labels, kinds)
        + named
        + "</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
