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

#: every name the report's numbers go by (issue: each B-like quantity keeps its own name)
GLOSSARY: tuple[tuple[str, str], ...] = (
    (
        "Recommendation",
        "the learning rate to use at each batch size, from the measured training optimum (the "
        "real-data sweep): at a measured batch size its best lr; elsewhere the law or rule that "
        "predicted held-out batch sizes best on this run's data.",
    ),
    (
        "best lr",
        "at one batch size, the learning rate of the sweep with the largest loss reduction over "
        "the further steps after reaching the target loss (the paper's rule).",
    ),
    (
        "interval",
        "at a measured batch size: the seed-bootstrap interval of its best lr when the sweep "
        "has one, else the lrs tried just below and above the best (where the optimum lies if "
        "the loss is unimodal in lr); elsewhere lr·exp(±1.64·leave-one-out error), the spread "
        "of held-out predictions on this run's data (90% if normal).",
    ),
    (
        "leave-one-out error",
        "RMS over batch sizes of log(predicted lr) − log(best lr) when that batch size is left "
        "out of the fit (natural log: 0.69 is a factor 2).",
    ),
    (
        "extrapolated",
        "the batch size lies outside the measured ones; the factor says how far beyond.",
    ),
    (
        "censored",
        "the best lr is the smallest or largest lr tried at that batch size: the optimum may "
        "lie beyond the grid.",
    ),
    (
        "S–E B_crit",
        "E_min/S_min from the steps–examples fit 1/S = −B_crit/E + 1/S_min "
        "(Eq. 22): the batch size at which a run costs twice the minimum steps and twice the "
        "minimum examples; the paper's estimate of B_noise and where the surge law puts the peak.",
    ),
    ("S_min, E_min", "steps needed as B → ∞, and examples needed as B → 0 (Eq. 20)."),
    (
        "predicted peak",
        "the batch size where the surge law's learning rate is largest: its B_noise (the S–E "
        "B_crit in the sweep's fit). Past it, larger batches need a smaller Adam lr.",
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
    (
        "fall",
        "lr*(B_peak)/lr*(B_last) over the batch sizes with an interior best lr (censored ones "
        "are bounds, listed, not used): B_peak has the largest, B_last is the largest batch "
        "size. Claimed only when its seed-bootstrap interval lies above 1 (the interval holds "
        "the pair fixed; picking the peak on the same data biases the factor upward).",
    ),
    (
        "how the B's relate",
        "Theorem 3's B_noise (sign updates), the SGD B_noise and B_simple (the SGD B_noise when "
        "H ∝ I) are one-step noise scales from the gradient's mean, noise and Hessian (the "
        "estimate part); the S–E B_crit is fitted to whole training runs and is the paper's "
        "estimate of B_noise, which the surge law makes the peak; the measured peak is read off "
        "the measured best lrs.",
    ),
    (
        "which B the advice uses",
        "the Recommendation uses the measured best lrs; between and beyond them the law or rule "
        "that predicted held-out batch sizes best, the surge and SGD laws with B_noise = the "
        "S–E B_crit (also the 'past the predicted peak' caveat). Theorem 3's B_noise and "
        "B_simple set no lr here; `surgelab advise`'s shortcut takes B_noise from --b-noise, a "
        "noise-scale monitor's B_simple, or a steps table's S–E B_crit.",
    ),
    (
        "ε_max",
        "a law's scale: the surge law's largest learning rate (at its peak), or the SGD law's "
        "B → ∞ limit.",
    ),
)

#: How the labels of batch-size headlines begin (a B-like quantity below one is outside the laws).
_B_LIKE = (
    "S–E B_crit",
    "Theorem 3's B_noise",
    "SGD B_noise",
    "B_simple",
    "measured peak",
    "peak batch size",
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
    c = caveat(h)
    return f"{v} ({c})" if c else v


def caveat(h: Mapping[str, Any]) -> str:
    """A headline value outside the laws' regime, in words ("" when none).

    Examples:
      >>> caveat({"label": "Theorem 3's B_noise", "value": 0.83})
      'below one example: outside the regime of the batch-size laws'
    """
    v, label = h.get("value"), str(h.get("label", ""))
    if not label.startswith(_B_LIKE) or isinstance(v, bool):
        return ""
    if isinstance(v, (int, float)) and math.isfinite(v) and v < 1:
        return "below one example: outside the regime of the batch-size laws"
    if isinstance(v, (int, float)) and not math.isfinite(v):
        return "not resolved"
    return ""


def _lr(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"


def _interval(lo: Any, hi: Any, lr: Any) -> str:
    a, b = _lr(lo), _lr(hi)
    if a == b == "n/a":
        return "none"
    if b == "n/a":
        return f"{a} … beyond {_lr(lr)} (grid edge)"
    if a == "n/a":
        return f"below {_lr(lr)} (grid edge) … {b}"
    return f"{a} … {b}"


def rec_rows(rec: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str, str, str, str, list]]:
    """The Recommendation as table cells: optimizer, B, lr, interval, basis, extrapolated,
    and the caveats (a list of sentences)."""
    out = []
    for r in rec:
        ext = f"yes, {r['extrapolation_factor']:.3g}×" if r.get("extrapolated") else "no"
        out.append(
            (
                r["optimizer"],
                f"{r['batch_size']:g}",
                _lr(r["lr"]),
                _interval(r.get("lo"), r.get("hi"), r["lr"]),
                r["basis"],
                ext,
                list(r.get("caveats") or []),
            )
        )
    return out


def explain_estimate(parts: Sequence[Part]) -> str:
    """What the one-step direct estimate says next to the Recommendation (it does not set it)."""
    p = next((p for p in parts if p.key == "estimate" and p.status == "ok"), None)
    cps = (p.summary.get("checkpoints") if p else None) or []
    if not cps:
        return ""
    c = cps[-1]
    bn = c.get("b_noise_thm3")
    bs = c.get("b_simple")
    txt = (
        f"The direct estimate (estimate part, step {c.get('step')}) measures the one-step "
        f"optimum: Theorem 3's B_noise = {fmt(bn)}"
    )
    if isinstance(bn, (int, float)) and bn < 1:
        txt += " (below one example: outside the laws' regime)"
    txt += f", B_simple = {fmt(bs)}. It explains where the one-step optimum peaks; it is not "
    txt += "the training optimum and sets no learning rate here."
    return txt


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


def _md_rec(rec: Sequence[Mapping[str, Any]], note: str, parts: Sequence[Part]) -> list[str]:
    md = ["## Recommendation", ""]
    if rec:
        md += [
            "The learning rate to use at each batch size, from the measured training optimum.",
            "",
            "| optimizer | batch size | lr | interval | basis | extrapolated |",
            "|---|---|---|---|---|---|",
        ]
        for *cells, cav in rec_rows(rec):
            cells[4] += "".join(f"<br>⚠ {c}" for c in cav)
            md.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        md.append("")
    if note:
        md += [note, ""]
    ex = explain_estimate(parts)
    if ex:
        md += [ex, ""]
    return md


def render_markdown(
    parts: Sequence[Part],
    root: Path,
    title: str,
    env: Mapping,
    rec: Sequence[Mapping[str, Any]] = (),
    note: str = "",
) -> str:
    md = [f"# {title}", "", *_md_rec(rec, note, parts), "## Verdicts", ""]
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
            md += ["<details><summary>all values of summary.json (raw keys)</summary>", ""]
            md += ["| key | value |", "|---|---|"] + [f"| {k} | {fmt(v)} |" for k, v in items]
            md += ["", "</details>", ""]
        md += [f"![{fig.stem}]({rel}/{fig.name})\n" for fig in _figures(p.folder)]
    md += ["## Environment", "", "```json", json.dumps(env, indent=2, default=str), "```", ""]
    return "\n".join(md)


def render_html(
    parts: Sequence[Part],
    title: str,
    env: Mapping,
    rec: Sequence[Mapping[str, Any]] = (),
    note: str = "",
) -> str:
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
        "padding:6px;overflow-x:auto}#recommendation td.lr{font-weight:bold;font-size:1.1em}"
        "#recommendation td.basis{font-size:.85em;max-width:520px}"
        "#recommendation{background:#f5fbff}ul.caveats{margin:3px 0 0 0;padding-left:1.1em;"
        "color:#8a4b00}ul.caveats li{margin:1px 0}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<h2>Recommendation</h2>",
    ]
    if rec:
        out += [
            "<p>The learning rate to use at each batch size, from the measured training "
            "optimum.</p>",
            "<table id='recommendation'><tr><th>optimizer</th><th>batch size</th><th>lr</th>"
            "<th>interval</th><th>basis</th><th>extrapolated</th></tr>",
        ]
        for o, b, lr, iv, basis, ext, cav in rec_rows(rec):
            notes = "".join(f"<li>{esc(c)}</li>" for c in cav)
            notes = f"<ul class='caveats'>{notes}</ul>" if notes else ""
            out.append(
                f"<tr><td>{esc(o)}</td><td>{esc(b)}</td><td class='lr'>{esc(lr)}</td>"
                f"<td>{esc(iv)}</td><td class='basis'>{esc(basis)}{notes}</td>"
                f"<td>{esc(ext)}</td></tr>"
            )
        out.append("</table>")
        blob = json.dumps(jsonable(list(rec)))
        out.append(f"<script type='application/json' id='recommendation-data'>{esc(blob)}</script>")
    if note:
        out.append(f"<p>{esc(note)}</p>")
    ex = explain_estimate(parts)
    if ex:
        out.append(f"<p>{esc(ex)}</p>")
    out.append("<h2>Verdicts</h2><ul>")
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
            out.append("<details><summary>all values of summary.json (raw keys)</summary><table>")
            out += [f"<tr><td>{esc(k)}</td><td>{esc(fmt(v))}</td></tr>" for k, v in items]
            out.append("</table></details>")
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


#: The Recommendation's keys in headline.json (the issue's contract).
RECOMMENDATION_KEYS = ("optimizer", "batch_size", "lr", "lo", "hi", "basis", "extrapolated")


def environment(root: Path, parts: Sequence[Part]) -> dict[str, Any]:
    """The whole run's environment: the root's meta.json and each part's device and wall."""
    meta = root / "meta.json"
    env = dict(read_json(meta)) if meta.exists() else {}
    env["parts"] = {}
    for p in parts:
        pm = p.folder / "meta.json"
        m = read_json(pm) if pm.exists() else {}
        env["parts"][p.key] = {
            "status": p.status,
            "time": p.message,
            "device": m.get("device", "n/a"),
            "git_commit": m.get("git_commit", "n/a"),
        }
    return env


def write_report(
    parts: Sequence[Part],
    root: Path,
    title: str = "surgelab report",
    *,
    recommendation: Sequence[Mapping[str, Any]] = (),
    recommendation_note: str = "",
) -> dict:
    """Write report.md, report.html and headline.json into ``root``; return the headline.

    ``recommendation``: rows of :func:`validate.advise.recommend` (they lead the report and are
    headline.json's ``recommendation``, with the keys of :data:`RECOMMENDATION_KEYS` first).
    """
    root = Path(root)
    env = environment(root, parts)
    rec, note = list(recommendation), recommendation_note
    (root / "report.md").write_text(
        render_markdown(parts, root, title, env, rec, note), encoding="utf-8"
    )
    (root / "report.html").write_text(render_html(parts, title, env, rec, note), encoding="utf-8")
    headline = {
        "recommendation": [{**{k: r.get(k) for k in RECOMMENDATION_KEYS}, **r} for r in rec],
        "headline": headlines(parts),
        "verdicts": verdicts(parts),
    }
    (root / "headline.json").write_text(json.dumps(jsonable(headline), indent=2) + "\n")
    return headline
