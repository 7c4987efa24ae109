"""The main job's report: ``report.md``, a self-contained ``report.html`` and ``headline.json``.

Everything shown is read from the parts' run folders (``summary.json``, ``meta.json`` and the
PNG figures they drew from their own tables); nothing is recomputed. Each part's command chose
its own headline numbers and verdicts (``summary["headline"]``, ``summary["verdicts"]``), so the
report knows no other stage's keys.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surgelab.rundir import jsonable, read_json

#: what every B-like quantity in the report is (issue: each keeps its own name)
GLOSSARY: tuple[tuple[str, str], ...] = (
    (
        "S–E B_crit",
        "E_min/S_min from the steps–examples fit 1/S = −B_crit/E + 1/S_min "
        "(Eq. 22): the batch size at which a run costs twice the minimum steps and twice the "
        "minimum examples; the paper's estimate of B_noise and where the surge law puts the peak.",
    ),
    (
        "Theorem 3's B_noise",
        "πσ²-weighted ratio from the gradient mean, noise and Hessian "
        "(Eq. 15): the peak of the one-step sign-update optimum when coordinates are independent.",
    ),
    (
        "SGD B_noise",
        "tr(HΣ)/GᵀHG (McCandlish et al.): where SGD's optimal lr reaches half its maximum.",
    ),
    ("B_simple", "tr Σ/|G|²: the Hessian-free proxy of the SGD B_noise."),
    ("measured peak", "the batch size whose measured best learning rate is largest."),
)


@dataclass(frozen=True)
class Part:
    """One part of the main job: where it ran, how to reproduce it, and how it ended."""

    key: str
    title: str
    folder: Path
    command: str
    status: str  # "ok", "failed", "skipped"
    message: str = ""
    summary: Mapping[str, Any] = field(default_factory=dict)


def fmt(x: Any) -> str:
    """Every number in the report: 4 significant digits, exact ints, words as they are."""
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    if x is None:
        return "n/a"
    if isinstance(x, (bool, int)):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.4g}"
    return str(x)


def _source(h: Mapping[str, Any]) -> str:
    idx = f"[{h['index']}]" if "index" in h else ""
    return f"{h['part']}/summary.json: {h['key']}{idx}"


def _value(h: Mapping[str, Any]) -> str:
    v = fmt(h.get("value"))
    if h.get("lo") is not None and h.get("hi") is not None:
        v += f" [{fmt(h['lo'])}, {fmt(h['hi'])}]"
    return v


def _is_shown(v: Any) -> bool:
    """Scalars and short lists of scalars are shown; nested structures stay in the JSON."""
    if isinstance(v, (list, tuple)):
        return len(v) <= 12 and all(not isinstance(x, (list, tuple, dict)) for x in v)
    return isinstance(v, (int, float, str, bool)) or v is None


def _scalar_items(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [
        (k, v) for k, v in summary.items() if k not in ("headline", "verdicts") and _is_shown(v)
    ]


def headlines(parts: Sequence[Part]) -> list[dict[str, Any]]:
    """The headline numbers the parts chose, each tagged with its part."""
    out = []
    for p in parts:
        if p.status != "ok":
            continue
        for h in p.summary.get("headline") or []:
            out.append({"part": p.key, **h})
    return out


def verdicts(parts: Sequence[Part]) -> list[str]:
    lines = []
    for p in parts:
        if p.status == "ok":
            lines += list(p.summary.get("verdicts") or [])
        else:
            lines.append(f"{p.title}: {p.status}" + (f" ({p.message})" if p.message else ""))
    return lines


def _figures(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def render_markdown(parts: Sequence[Part], root: Path, title: str, env: Mapping) -> str:
    md = [f"# {title}", "", "## Verdicts", ""]
    md += [f"- {v}" for v in verdicts(parts)] + [""]
    md += ["## Headline numbers", "", "| figure | value | source |", "|---|---|---|"]
    md += [f"| {h['label']} | {_value(h)} | `{_source(h)}` |" for h in headlines(parts)]
    md += ["", "## Glossary", ""] + [f"- **{k}**: {v}" for k, v in GLOSSARY] + [""]
    for p in parts:
        rel = p.folder.relative_to(root) if p.folder.is_relative_to(root) else p.folder
        md += [
            f"## {p.title}",
            "",
            f"Status: **{p.status}**" + (f" — {p.message}" if p.message else ""),
            "",
        ]
        md += ["Reproduce:", "", "```", p.command, "```", ""]
        items = _scalar_items(p.summary)
        if items:
            md += ["| key | value |", "|---|---|"] + [f"| {k} | {fmt(v)} |" for k, v in items]
            md.append("")
        md += [f"![{fig.stem}]({rel}/{fig.name})\n" for fig in _figures(p.folder)]
    md += ["## Environment", "", "```json", json.dumps(env, indent=2, default=str), "```", ""]
    return "\n".join(md)


def render_html(parts: Sequence[Part], title: str, env: Mapping) -> str:
    esc = html.escape
    hl = headlines(parts)
    out = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:left}img{max-width:100%;border:1px solid #eee}"
        ".ok{color:#080}.failed{color:#b00}.skipped{color:#888}pre{background:#f6f6f6;"
        "padding:6px;overflow-x:auto}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<h2>Verdicts</h2><ul>",
    ]
    out += [f"<li>{esc(v)}</li>" for v in verdicts(parts)]
    out += [
        "</ul>",
        "<h2>Headline numbers</h2>",
        "<table id='headline-table'><tr><th>figure</th><th>value</th><th>source</th></tr>",
    ]
    out += [
        f"<tr><td>{esc(str(h['label']))}</td><td class='value' data-part='{esc(h['part'])}' "
        f"data-key='{esc(str(h['key']))}'>{esc(_value(h))}</td>"
        f"<td><code>{esc(_source(h))}</code></td></tr>"
        for h in hl
    ]
    out.append("</table>")
    blob = json.dumps(
        jsonable([{k: h[k] for k in ("part", "key", "index", "value") if k in h} for h in hl])
    )
    out.append(f"<script type='application/json' id='headline'>{esc(blob)}</script>")
    out.append("<h2>Glossary</h2><dl>")
    out += [f"<dt><b>{esc(k)}</b></dt><dd>{esc(v)}</dd>" for k, v in GLOSSARY]
    out.append("</dl>")
    for p in parts:
        out += [
            f"<h2>{esc(p.title)}</h2>",
            f"<p>Status: <b class='{esc(p.status)}'>{esc(p.status)}</b> {esc(p.message)}</p>",
            f"<p>Reproduce:</p><pre>{esc(p.command)}</pre>",
        ]
        items = _scalar_items(p.summary)
        if items:
            out.append("<table>")
            out += [f"<tr><td>{esc(k)}</td><td>{esc(fmt(v))}</td></tr>" for k, v in items]
            out.append("</table>")
        for fig in _figures(p.folder):
            data = base64.b64encode(fig.read_bytes()).decode("ascii")
            out.append(
                f"<figure><img alt='{esc(fig.stem)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{esc(p.key)}/{esc(fig.name)}</figcaption></figure>"
            )
    out += [
        "<h2>Environment</h2>",
        f"<pre>{esc(json.dumps(env, indent=2, default=str))}</pre>",
        "</body></html>",
    ]
    return "\n".join(out)


def write_report(parts: Sequence[Part], root: Path, title: str = "surgelab report") -> dict:
    """Write report.md, report.html and headline.json into ``root``; return the headline."""
    root = Path(root)
    meta = root / "meta.json"
    env = read_json(meta) if meta.exists() else {}
    (root / "report.md").write_text(render_markdown(parts, root, title, env), encoding="utf-8")
    (root / "report.html").write_text(render_html(parts, title, env), encoding="utf-8")
    headline = {"headline": headlines(parts), "verdicts": verdicts(parts)}
    (root / "headline.json").write_text(json.dumps(jsonable(headline), indent=2) + "\n")
    return headline
