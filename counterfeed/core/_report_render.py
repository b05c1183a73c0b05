"""The report's document model and its two renderings (Markdown and self-contained HTML).

:mod:`counterfeed.core.report` builds a :class:`_Doc` of headings, paragraphs, tables, key-value
lists, figures and links from a :class:`RunResult`; this module turns it into ``report.md`` and
``report.html`` (inline CSS, figures embedded as base64 PNG, every user string escaped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- document blocks and their two renderings ------------------------------------------------------
@dataclass
class _Heading:
    level: int
    text: str
    id: str


@dataclass
class _Para:
    text: str
    kind: str = ""  # "", "lead", "warn" (red), "caution" (yellow), "ok" (green), "muted"
    items: list[str] = field(default_factory=list)  # bullet points inside the box


@dataclass
class _Table:
    headers: list[str]
    rows: list[list[Any]]  # cells: str, or (str, css class)
    small: bool = False


@dataclass
class _KV:
    pairs: list[tuple[str, str]]


@dataclass
class _Figure:
    path: Path
    caption: str


@dataclass
class _Links:
    items: list[tuple[str, str]]  # (relative path, description)


@dataclass
class _Doc:
    title: str
    blocks: list[Any] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set)

    def h(self, level: int, text: str) -> None:
        base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
        ident, n = base, 2
        while ident in self._ids:
            ident, n = f"{base}-{n}", n + 1
        self._ids.add(ident)
        self.blocks.append(_Heading(level, text, ident))

    def add(self, *blocks: Any) -> None:
        self.blocks.extend(blocks)


def _cell(c: Any) -> tuple[str, str]:
    return (str(c[0]), str(c[1])) if isinstance(c, tuple) else (str(c), "")


def _md(text: str) -> str:
    import html

    return html.escape(str(text), quote=False).replace("\n", " ")


def _to_markdown(doc: _Doc) -> str:
    out = [f"# {_md(doc.title)}", ""]
    for b in doc.blocks:
        if isinstance(b, _Heading):
            out += ["#" * b.level + " " + _md(b.text), ""]
        elif isinstance(b, _Para):
            label = {"warn": "**Warning:** ", "caution": "**Note:** ", "ok": "OK: "}.get(b.kind, "")
            prefix = "> " if b.kind in ("warn", "caution", "ok") else ""
            text = f"*{_md(b.text)}*" if b.kind in ("lead", "muted") else _md(b.text)
            out.append(prefix + label + text)
            out += [f"{prefix}- {_md(i)}" for i in b.items]
            out.append("")
        elif isinstance(b, _Table):
            out.append("| " + " | ".join(_md(h) for h in b.headers) + " |")
            out.append("|" + "---|" * len(b.headers))
            for row in b.rows:
                out.append("| " + " | ".join(_md(_cell(c)[0]).replace("|", "\\|") for c in row) + " |")
            out.append("")
        elif isinstance(b, _KV):
            out += [f"- **{_md(k)}:** {_md(v)}" for k, v in b.pairs] + [""]
        elif isinstance(b, _Figure):
            out += [f"![{_md(b.caption)}](figures/{b.path.name})", "", f"*{_md(b.caption)}*", ""]
        elif isinstance(b, _Links):
            out += [f"- [{_md(p)}]({_href(p)}) — {_md(d)}" for p, d in b.items] + [""]
    return "\n".join(out).rstrip() + "\n"


def _href(rel: str) -> str:
    from urllib.parse import quote

    return quote(rel, safe="/")


def _to_html(doc: _Doc) -> str:
    import base64
    import html

    e = html.escape
    toc, body = [], []
    for b in doc.blocks:
        if isinstance(b, _Heading):
            if b.level <= 3:
                toc.append(f'<li class="l{b.level}"><a href="#{b.id}">{e(b.text)}</a></li>')
            tag = f"h{min(b.level, 4)}"
            body.append(f'<{tag} id="{b.id}">{e(b.text)}</{tag}>')
        elif isinstance(b, _Para):
            items = "".join(f"<li>{e(i)}</li>" for i in b.items)
            items = f"<ul>{items}</ul>" if items else ""
            cls = f' class="box {b.kind}"' if b.kind in ("warn", "caution", "ok") else (
                f' class="{b.kind}"' if b.kind else "")
            tag = "div" if items else "p"
            cls = ' class="box lead"' if b.kind == "lead" and items else cls
            body.append(f"<{tag}{cls}>{e(b.text)}{items}</{tag}>")
        elif isinstance(b, _Table):
            head = "".join(f"<th>{e(h)}</th>" for h in b.headers)
            rows = []
            for row in b.rows:
                cells = [_cell(c) for c in row]
                rows.append("<tr>" + "".join(
                    f'<td class="{e(k)}">{e(t)}</td>' if k else f"<td>{e(t)}</td>" for t, k in cells) + "</tr>")
            cls = "data small" if b.small else "data"
            body.append(f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
                        f'<tbody>{"".join(rows)}</tbody></table></div>')
        elif isinstance(b, _KV):
            body.append('<dl class="kv">' + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in b.pairs)
                        + "</dl>")
        elif isinstance(b, _Figure):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{e(b.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{e(b.caption)}</figcaption></figure>")
        elif isinstance(b, _Links):
            body.append('<ul class="files">' + "".join(
                f'<li><a href="{e(_href(p))}"><code>{e(p)}</code></a> <span>{e(d)}</span></li>'
                for p, d in b.items) + "</ul>")
    return _HTML.format(title=e(doc.title), toc="".join(toc), body="\n".join(body))


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ --ink:#212529; --muted:#6c757d; --line:#e9ecef; --accent:#1c7ed6; --truth:#d9480f; }}
* {{ box-sizing:border-box; }}
body {{ margin:0; color:var(--ink); background:#f8f9fa; line-height:1.55;
  font:15px/1.55 -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Helvetica, Arial, sans-serif; }}
.layout {{ display:grid; grid-template-columns:230px minmax(0,1fr); max-width:1360px; margin:0 auto; }}
nav {{ position:sticky; top:0; align-self:start; max-height:100vh; overflow:auto; padding:28px 10px 28px 22px;
  font-size:13px; }}
nav .brand {{ font-weight:700; letter-spacing:.02em; color:var(--accent); margin-bottom:10px; }}
nav ul {{ list-style:none; padding:0; margin:0; }}
nav li.l2 {{ margin-top:6px; font-weight:600; }} nav li.l3 {{ padding-left:12px; color:var(--muted); }}
nav a {{ color:inherit; text-decoration:none; }} nav a:hover {{ color:var(--accent); }}
main {{ background:white; padding:30px 44px 60px; min-height:100vh; border-left:1px solid var(--line);
  border-right:1px solid var(--line); }}
h1 {{ font-size:30px; margin:0 0 4px; }}
h2 {{ font-size:22px; margin:42px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--line); }}
h3 {{ font-size:17px; margin:28px 0 8px; }} h4 {{ font-size:15px; margin:18px 0 6px; color:#495057; }}
p {{ margin:8px 0 12px; max-width:920px; }}
p.lead {{ font-size:17px; background:#e7f5ff; border-left:4px solid var(--accent); padding:12px 16px;
  border-radius:4px; max-width:none; }}
p.muted {{ color:var(--muted); font-size:13px; }}
.box {{ padding:12px 16px; border-radius:6px; margin:12px 0; border:1px solid; }}
.box ul {{ margin:6px 0 0; padding-left:20px; }}
.box.lead {{ font-size:16px; background:#e7f5ff; border:none; border-left:4px solid var(--accent);
  border-radius:4px; font-weight:600; }} .box.lead li {{ font-weight:400; margin:3px 0; }}
.warn {{ background:#fff5f5; border-color:#ffa8a8; color:#a61e1e; font-weight:600; }}
.warn li {{ font-weight:400; }}
.caution {{ background:#fff9db; border-color:#ffe066; color:#5c3c00; }}
.ok {{ background:#ebfbee; border-color:#8ce99a; color:#1b5e20; }}
.scroll {{ overflow-x:auto; margin:10px 0 18px; }}
table.data {{ border-collapse:collapse; font-size:13.5px; font-variant-numeric:tabular-nums; }}
table.data th {{ text-align:left; background:#f1f3f5; padding:6px 10px; border-bottom:2px solid #dee2e6;
  white-space:nowrap; }}
table.data td {{ padding:5px 10px; border-bottom:1px solid var(--line); vertical-align:top; }}
table.data tr:hover td {{ background:#f8f9fa; }}
table.small {{ font-size:12.5px; }} table.small td {{ padding:3px 8px; }}
table.small td:not(.code) {{ white-space:nowrap; }}
td.num {{ text-align:right; white-space:nowrap; }}
td.yes {{ color:#2b8a3e; font-weight:700; text-align:center; }}
td.no {{ color:#c92a2a; font-weight:700; text-align:center; }}
td.na {{ color:#adb5bd; text-align:center; }}
td.truth {{ color:var(--truth); font-weight:600; text-align:right; white-space:nowrap; }}
td.bad {{ color:#c92a2a; font-weight:600; }}
td.code {{ font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; color:#495057; }}
figure {{ margin:14px 0 22px; }}
figure img {{ max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }}
figcaption {{ color:var(--muted); font-size:13px; margin-top:4px; max-width:920px; }}
ul.files {{ list-style:none; padding:0; columns:2; font-size:13.5px; }}
ul.files li {{ margin:3px 0; break-inside:avoid; }} ul.files span {{ color:var(--muted); }}
code {{ font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12.5px; }}
dl.kv {{ display:grid; grid-template-columns:max-content 1fr; gap:5px 22px; margin:12px 0 18px; }}
dl.kv dt {{ color:var(--muted); }} dl.kv dd {{ margin:0; font-weight:500; }}
@media (max-width: 1000px) {{ .layout {{ display:block; }} nav {{ position:static; max-height:none; }}
  main {{ padding:20px; }} ul.files {{ columns:1; }} }}
</style></head>
<body><div class="layout">
<nav><div class="brand">counterfeed report</div><ul>{toc}</ul></nav>
<main><h1>{title}</h1>
{body}
</main></div></body></html>
"""

