"""``archive.report.Report`` as a terminal table (rich), JSON, or one self-contained
HTML page (inline CSS and SVG, no scripts or assets from anywhere): per feed a
timeline bar (green = covered, red = a hole, amber = book not verified) with
per-hour coverage beneath, then every fault with its time and duration."""

from __future__ import annotations

import html
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from ticktape.archive.report import HOUR_NS, Report, iso, merge, subtract


def as_json(rep: Report) -> str:
    return json.dumps(rep.as_dict(), indent=1)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _dur(s: float | None) -> str:
    if s is None:
        return "unresolved"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def print_tables(rep: Report, console: Console | None = None) -> None:
    c = console or Console(highlight=False)
    if not c.is_terminal and c.width < 120:
        c.width = 120
    t = Table(title=f"coverage per feed and hour: {rep.root}", title_justify="left")
    for col in ("exchange", "symbol", "hour (UTC)", "coverage", "book verified", "rows"):
        t.add_column(col, justify="left" if col in ("exchange", "symbol", "hour (UTC)") else "right", no_wrap=True)
    for h in rep.hours:
        rows = f"{sum(h.rows.values()):,}"
        style = "red" if h.coverage < 0.999 else ""
        t.add_row(h.exchange, h.symbol, iso(h.hour_ns)[:13] + ":00", f"[{style}]{_pct(h.coverage)}[/]" if style
                  else _pct(h.coverage), _pct(h.book_verified), rows)
    c.print(t)
    f = Table(title="faults (gaps, disconnects, drops, resyncs, ...)", title_justify="left")
    for col in ("time (UTC)", "exchange", "kind", "duration", "symbols", "detail"):
        f.add_column(col)
    for x in rep.faults:
        f.add_row(iso(x.start_ns), x.exchange, x.kind, _dur(x.duration_s),
                  ",".join(x.symbols) or "(connection)", x.detail[:80])
    if not rep.faults:
        f.add_row("-", "-", "none", "", "", "")
    c.print(f)
    s = Table(title="tables and event counts", title_justify="left")
    for col in ("exchange", "table", "rows", "files", "bytes"):
        s.add_column(col, justify="left" if col in ("exchange", "table") else "right")
    for (ex, tb), v in sorted(rep.tables.items()):
        s.add_row(ex, tb, f"{v['rows']:,}", f"{v['files']:,}", f"{v['bytes']:,}")
    c.print(s)
    for ex, counts in sorted(rep.counts.items()):
        c.print(f"{ex}: " + ", ".join(f"{k} {n:,}" for k, n in sorted(counts.items())))


# -- HTML -----------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}td.n{text-align:right}.bad{color:#b00020;font-weight:600}
.feed{margin:14px 0}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
svg{display:block}
"""
W, BAR_H, HOUR_H = 960, 22, 14


def _x(ns: int, lo: int, hi: int) -> float:
    return round((ns - lo) / max(1, hi - lo) * W, 2)


def _timeline(rep: Report, feed: Any, lo: int, hi: int) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{BAR_H + HOUR_H + 18}" '
             f'role="img" aria-label="timeline {html.escape(feed.exchange)} {html.escape(feed.symbol)}">']
    parts.append(f'<rect class="outside" x="0" y="0" width="{W}" height="{BAR_H}" fill="#eee"/>')
    covered = subtract([(feed.first_ns, feed.last_ns)], feed.outages)
    for a, b in covered:
        parts.append(f'<rect class="covered" x="{_x(a, lo, hi)}" y="0" width="{max(0.5, _x(b, lo, hi) - _x(a, lo, hi))}" '
                     f'height="{BAR_H}" fill="#2e9e44"><title>covered {iso(a)} .. {iso(b)}</title></rect>')
    if feed.verified is not None:
        unverified = subtract(covered, merge(feed.verified))
        for a, b in unverified:
            parts.append(f'<rect class="unverified" x="{_x(a, lo, hi)}" y="{BAR_H // 2}" '
                         f'width="{max(0.5, _x(b, lo, hi) - _x(a, lo, hi))}" height="{BAR_H - BAR_H // 2}" fill="#f0a202">'
                         f'<title>book not verified {iso(a)} .. {iso(b)}</title></rect>')
    for a, b in feed.outages:
        a2, b2 = max(a, feed.first_ns), min(b, feed.last_ns)
        if b2 <= a2:
            continue
        parts.append(f'<rect class="hole" x="{_x(a2, lo, hi)}" y="0" width="{max(1.0, _x(b2, lo, hi) - _x(a2, lo, hi))}" '
                     f'height="{BAR_H}" fill="#d32f2f"><title>hole {iso(a)} .. {iso(b)} ({(b - a) / 1e9:.1f} s)</title></rect>')
    for h in (x for x in rep.hours if x.exchange == feed.exchange and x.symbol == feed.symbol):
        xa, xb = _x(max(h.hour_ns, lo), lo, hi), _x(min(h.hour_ns + HOUR_NS, hi), lo, hi)
        shade = int(255 - 155 * h.coverage)
        parts.append(f'<rect class="hour" x="{xa}" y="{BAR_H + 2}" width="{max(0.5, xb - xa - 0.5)}" height="{HOUR_H}" '
                     f'fill="rgb({shade},{shade},255)"><title>{iso(h.hour_ns)[:13]}:00 coverage {h.coverage:.1%}'
                     f'</title></rect>')
    parts.append(f'<text x="0" y="{BAR_H + HOUR_H + 14}" font-size="11">{iso(lo)}</text>')
    parts.append(f'<text x="{W}" y="{BAR_H + HOUR_H + 14}" font-size="11" text-anchor="end">{iso(hi)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def as_html(rep: Report) -> str:
    e = html.escape
    lo = min((f.first_ns for f in rep.feeds), default=0)
    hi = max((f.last_ns for f in rep.feeds), default=1)
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>ticktape report: {e(rep.root)}</title><style>{_CSS}</style></head><body>",
           f"<h1>ticktape data-quality report</h1><p>archive <code>{e(rep.root)}</code>, "
           f"{e(iso(lo))} .. {e(iso(hi))}, {len(rep.feeds)} feeds, {len(rep.faults)} faults, "
           f"{rep.files_read} files read (footers and the events table only).</p>",
           '<p class="legend">timeline:<span style="background:#2e9e44"></span>covered'
           '<span style="background:#d32f2f"></span>hole (disconnected)'
           '<span style="background:#f0a202"></span>book not verified'
           '<span style="background:#eee"></span>not captured; lower band: coverage per hour</p>',
           "<h2>Feeds</h2>"]
    for f in rep.feeds:
        hours = [h for h in rep.hours if h.exchange == f.exchange and h.symbol == f.symbol]
        cov = sum(h.coverage for h in hours) / max(1, len(hours))
        out.append(f'<div class="feed" id="feed-{e(f.exchange)}-{e(f.symbol)}"><b>{e(f.exchange)} {e(f.symbol)}</b> '
                   f"mean hourly coverage {cov:.1%}, {len(f.outages)} hole(s)")
        out.append(_timeline(rep, f, lo, hi))
        out.append("</div>")
    out.append("<h2>Coverage per hour</h2><table><tr><th>exchange</th><th>symbol</th><th>hour (UTC)</th>"
               "<th>coverage</th><th>book verified</th><th>rows</th></tr>")
    for h in rep.hours:
        cls = ' class="n bad"' if h.coverage < 0.999 else ' class="n"'
        rows = ", ".join(f"{e(k)} {v:,}" for k, v in h.rows.items())
        out.append(f"<tr><td>{e(h.exchange)}</td><td>{e(h.symbol)}</td><td>{iso(h.hour_ns)[:13]}:00</td>"
                   f"<td{cls}>{_pct(h.coverage)}</td><td class=\"n\">{_pct(h.book_verified)}</td><td>{rows}</td></tr>")
    out.append("</table><h2>Faults</h2><table><tr><th>time (UTC)</th><th>exchange</th><th>kind</th><th>duration</th>"
               "<th>symbols</th><th>detail</th></tr>")
    for x in rep.faults:
        out.append(f'<tr class="fault"><td>{iso(x.start_ns)}</td><td>{e(x.exchange)}</td><td>{e(x.kind)}</td>'
                   f"<td class=\"n\">{_dur(x.duration_s)}</td><td>{e(','.join(x.symbols) or '(connection)')}</td>"
                   f"<td>{e(x.detail)}</td></tr>")
    out.append("</table><h2>Tables</h2><table><tr><th>exchange</th><th>table</th><th>rows</th><th>files</th>"
               "<th>bytes</th></tr>")
    for (ex, tb), v in sorted(rep.tables.items()):
        out.append(f"<tr><td>{e(ex)}</td><td>{e(tb)}</td><td class=\"n\">{v['rows']:,}</td>"
                   f"<td class=\"n\">{v['files']:,}</td><td class=\"n\">{v['bytes']:,}</td></tr>")
    out.append("</table><h2>Event counts</h2><table><tr><th>exchange</th><th>kind</th><th>rows</th></tr>")
    for ex, counts in sorted(rep.counts.items()):
        for k, n in sorted(counts.items()):
            out.append(f"<tr><td>{e(ex)}</td><td>{e(k)}</td><td class=\"n\">{n:,}</td></tr>")
    out.append("</table></body></html>\n")
    return "\n".join(out)
