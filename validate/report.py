"""The main job's report: ``report.md`` and a self-contained ``report.html`` from saved files.

Everything shown is read from the parts' run folders (``summary.json``, ``meta.json``,
``config.json`` and the PNG figures they drew from their own tables); nothing is recomputed.
The headline numbers also go to ``headline.json`` and, verbatim, into a JSON block inside the
HTML so a test (or a reader) can check them against the parts' summaries.
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

from theory.rundir import read_json


@dataclass(frozen=True)
class Part:
    """One stage of the main job: where it ran, how to reproduce it, and how it ended."""

    key: str
    title: str
    folder: Path
    command: str
    status: str  # "ok", "failed", "skipped"
    message: str = ""
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Headline:
    """A number shown at the top of the report, with where it came from."""

    part: str
    key: str
    label: str
    value: Any


# (part key, summary key, label): the headline figures, when the part produced them.
HEADLINE_KEYS: tuple[tuple[str, str, str], ...] = (
    ("theory", "n_results", "theory check: derived results checked"),
    ("theory", "n_failed", "theory check: results failing"),
    ("theory", "worst_deviation", "theory check: worst deviation, derived vs numeric"),
    ("surge", "b_noise_theory", "quadratic: B_noise (Theorem 3)"),
    ("surge", "b_peak_exact", "quadratic: peak batch size (Theorem 2, exact)"),
    ("surge", "b_peak_mc", "quadratic: peak batch size (Monte Carlo)"),
    ("surge", "eps_max_theory", "quadratic: ε_max (Theorem 3)"),
    ("surge", "eps_peak_mc", "quadratic: ε at the peak (Monte Carlo)"),
    ("surge", "max_rel_err_mc_vs_exact", "quadratic: max rel. error MC vs Theorem 2"),
    ("surge", "surge_detected", "quadratic: surge detected"),
    ("surge", "max_rel_err_sgd_mc_vs_law", "quadratic: max rel. error MC vs SGD law"),
    ("train", "targets_frac", "quadratic multi-step: targets (fraction of initial loss)"),
    ("train", "b_noise_fit_per_target", "quadratic multi-step: B_noise from the S–E fit"),
    ("train", "b_noise_grows_as_loss_falls", "quadratic multi-step: B_noise grows as loss falls"),
    ("real", "b_noise", "real network: B_noise from the S–E fit"),
    ("real", "eps_max_adam", "real network: ε_max of the Adam surge law (Eq. 23)"),
    ("real", "fit_err_adam", "real network: RMS log-lr error, Adam surge law"),
    ("real", "fit_err_sgd", "real network: RMS log-lr error, SGD law (α = 1)"),
    ("real", "fit_err_sgd_sqrt", "real network: RMS log-lr error, α = 0.5"),
    ("real", "b_noise_by_target", "real network: B_noise per target"),
    ("estimate", "checkpoints.-1.step", "real network, direct: checkpoint (Adam steps)"),
    ("estimate", "checkpoints.-1.loss", "real network, direct: loss at the checkpoint"),
    ("estimate", "checkpoints.-1.b_noise_thm3", "real network, direct: B_noise (Theorem 3)"),
    ("estimate", "checkpoints.-1.b_simple", "real network, direct: B_simple"),
    ("estimate", "checkpoints.-1.b_noise_sgd_full", "real network, direct: SGD B_noise (full Σ)"),
    ("estimate", "checkpoints.-1.regime_bound_median", "real network, direct: median πσ²/(2μ²)"),
    (
        "estimate",
        "checkpoints.-1.ratio_sign_geomean",
        "real network, direct: Theorem 2 lr ÷ measured (geo-mean over B)",
    ),
    (
        "estimate",
        "checkpoints.-1.ratio_sgd_full_geomean",
        "real network, direct: SGD-law lr ÷ measured (geo-mean over B)",
    ),
    ("estimate", "b_simple_grows_as_loss_falls", "real network, direct: B_simple grows"),
)


def lookup(summary: Any, path: str) -> Any:
    """``summary["a"][-1]["b"]`` for the path ``"a.-1.b"``; KeyError / IndexError if absent."""
    cur = summary
    for part in path.split("."):
        if isinstance(cur, list):
            cur = cur[int(part)]
        else:
            cur = cur[part]
    return cur


def fmt(x: Any) -> str:
    """How every number appears in the report: 4 significant digits, exact ints, words as is."""
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    if x is None:  # NaN is written to JSON as null: "not resolved by this run"
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.4g}"
    return str(x)


def _is_shown(v: Any) -> bool:
    """Scalars, and short lists of scalars, are shown; nested structures stay in the JSON."""
    if isinstance(v, (list, tuple)):
        return len(v) <= 12 and all(
            not isinstance(x, (list, tuple, dict)) and _is_shown(x) for x in v
        )
    return isinstance(v, (int, float, str, bool)) or v is None


def _scalar_items(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in summary.items() if _is_shown(v)]


def headlines(parts: Sequence[Part]) -> list[Headline]:
    by_key = {p.key: p for p in parts}
    out = []
    for part, key, label in HEADLINE_KEYS:
        p = by_key.get(part)
        if p is None or p.status != "ok":
            continue
        try:
            v = lookup(p.summary, key)
        except (KeyError, IndexError, ValueError, TypeError):
            continue
        if _is_shown(v):
            out.append(Headline(part, key, label, v))
    return out


def verdicts(parts: Sequence[Part]) -> list[str]:
    """One line per law, built only from the parts' summaries."""
    s = {p.key: p.summary for p in parts if p.status == "ok"}
    lines = []
    if "theory" in s:
        t = s["theory"]
        lines.append(
            f"Theory: {fmt(t.get('n_results'))} derived results checked against their numeric "
            f"functions, {fmt(t.get('n_failed'))} failing (worst deviation "
            f"{fmt(t.get('worst_deviation'))})."
        )
    if "surge" in s:
        q = s["surge"]
        lines.append(
            f"Adam/sign surge (quadratic): peak predicted at B = {fmt(q.get('b_peak_exact'))} "
            f"(Theorem 2; Theorem 3's B_noise = {fmt(q.get('b_noise_theory'))}), measured at "
            f"B = {fmt(q.get('b_peak_mc'))} by Monte Carlo; surge detected: "
            f"{fmt(q.get('surge_detected'))}."
        )
        if "max_rel_err_sgd_mc_vs_law" in q:
            lines.append(
                f"SGD law (quadratic): Monte Carlo optimum within "
                f"{fmt(q['max_rel_err_sgd_mc_vs_law'])} (relative; max |z| = "
                f"{fmt(q.get('max_abs_z_sgd_mc_vs_law'))}) of McCandlish's law."
            )
    if "train" in s and "b_noise_fit_per_target" in s["train"]:
        tr = s["train"]
        lines.append(
            f"Steps–examples trade-off (quadratic, multi-step, {tr.get('optimizer')}): B_noise "
            f"fitted at {fmt(tr['b_noise_fit_per_target'])} for targets "
            f"{fmt(tr.get('targets_frac'))} of the initial loss; grows as the loss falls: "
            f"{fmt(tr.get('b_noise_grows_as_loss_falls'))}."
        )
    if "real" in s:
        r = s["real"]
        errs = {
            k: r.get(k)
            for k in ("fit_err_adam", "fit_err_sgd", "fit_err_sgd_sqrt")
            if isinstance(r.get(k), (int, float))
        }
        best = min(errs, key=errs.get) if errs else None
        names = {
            "fit_err_adam": "Adam surge law",
            "fit_err_sgd": "SGD law (α = 1)",
            "fit_err_sgd_sqrt": "square-root form (α = 0.5)",
        }
        pts = [q for q in r.get("best_lr") or [] if isinstance(q, dict) and q.get("lr")]
        peak = max(pts, key=lambda q: q["lr"])["batch_size"] if pts else None
        lines.append(
            f"Adam surge on the real network ({r.get('workload')}, target loss "
            f"{fmt(r.get('primary_target'))}): peak predicted at B = {fmt(r.get('b_noise'))} "
            f"(B_noise from the S–E fit), measured best learning rate largest at B = {fmt(peak)}."
        )
        lines.append(
            "Law comparison on the real network (RMS error in log learning rate): "
            + ", ".join(f"{names[k]} {fmt(v)}" for k, v in errs.items())
            + f"; best fit: {names.get(best, 'n/a')}."
        )
    if "estimate" in s and s["estimate"].get("checkpoints"):
        e = s["estimate"]
        c = e["checkpoints"][-1]
        lines.append(
            f"Direct estimate on the real network at step {fmt(c.get('step'))} (loss "
            f"{fmt(c.get('loss'))}): Theorem 3's B_noise = {fmt(c.get('b_noise_thm3'))}, SGD "
            f"B_noise (full Σ) = {fmt(c.get('b_noise_sgd_full'))}, B_simple = "
            f"{fmt(c.get('b_simple'))}; predicted ÷ measured best lr (geo-mean over B): sign "
            f"steps {fmt(c.get('ratio_sign_geomean'))}, SGD {fmt(c.get('ratio_sgd_full_geomean'))}"
            f"; B_simple grows as the loss falls: {fmt(e.get('b_simple_grows_as_loss_falls'))}."
        )
    return lines


def _figures(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def _env(parts: Sequence[Part]) -> Mapping[str, Any]:
    for p in parts:
        meta = p.folder / "meta.json"
        if meta.exists():
            return read_json(meta)
    return {}


def render_markdown(parts: Sequence[Part], root: Path, title: str) -> str:
    hl = headlines(parts)
    md = [f"# {title}", ""]
    md += ["## Verdicts", ""] + [f"- {v}" for v in verdicts(parts)] + [""]
    md += ["## Headline numbers", "", "| figure | value | source |", "|---|---|---|"]
    md += [f"| {h.label} | {fmt(h.value)} | `{h.part}/summary.json: {h.key}` |" for h in hl]
    md.append("")
    for p in parts:
        rel = p.folder.relative_to(root) if p.folder.is_relative_to(root) else p.folder
        md += [
            f"## {p.title}",
            "",
            f"Status: **{p.status}**" + (f" — {p.message}" if p.message else ""),
            "",
            "Reproduce:",
            "",
            "```",
            p.command,
            "```",
            "",
        ]
        items = _scalar_items(p.summary)
        if items:
            md += ["| key | value |", "|---|---|"] + [f"| {k} | {fmt(v)} |" for k, v in items]
            md.append("")
        for fig in _figures(p.folder):
            md += [f"![{fig.stem}]({rel}/{fig.name})", ""]
    env = _env(parts)
    md += ["## Environment", "", "```json", json.dumps(env, indent=2, default=str), "```", ""]
    return "\n".join(md)


def render_html(parts: Sequence[Part], title: str) -> str:
    hl = headlines(parts)
    esc = html.escape
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
        f"<tr><td>{esc(h.label)}</td><td class='value' data-part='{esc(h.part)}' "
        f"data-key='{esc(h.key)}'>{esc(fmt(h.value))}</td>"
        f"<td><code>{esc(h.part)}/summary.json: {esc(h.key)}</code></td></tr>"
        for h in hl
    ]
    out.append("</table>")
    blob = json.dumps([{"part": h.part, "key": h.key, "value": h.value} for h in hl])
    out.append(f"<script type='application/json' id='headline'>{esc(blob)}</script>")
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
        f"<pre>{esc(json.dumps(_env(parts), indent=2, default=str))}</pre>",
        "</body></html>",
    ]
    return "\n".join(out)


def write_report(parts: Sequence[Part], root: Path, title: str = "surgelab report") -> dict:
    """Write report.md, report.html and headline.json into ``root``; return the headline dict."""
    root = Path(root)
    (root / "report.md").write_text(render_markdown(parts, root, title))
    (root / "report.html").write_text(render_html(parts, title))
    hl = {f"{h.part}.{h.key}": h.value for h in headlines(parts)}
    (root / "headline.json").write_text(json.dumps(hl, indent=2) + "\n")
    return hl
