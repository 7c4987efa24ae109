"""``surgelab theory check`` / ``surgelab theory tex``: the derivations, checked and written."""

from __future__ import annotations

import time
from dataclasses import dataclass

from surgelab.cli import Command, Stage
from surgelab.config import Config, ConfigError, opt
from surgelab.rundir import RunDir


@dataclass(frozen=True)
class CheckConfig(Config):
    seed: int = opt(0, "seed of the random points each derivation is checked at", lo=0)
    only: tuple[str, ...] = opt((), "check only these derivations (default: all)")

    def check(self) -> None:
        from theory.derive import REGISTRY

        unknown = [n for n in self.only if n not in REGISTRY]
        if unknown:
            raise ConfigError(
                "only",
                f"names unknown derivation(s) {', '.join(unknown)}; choose from "
                f"{', '.join(REGISTRY)}",
            )


@dataclass(frozen=True)
class TexConfig(Config):
    """No options: the document is determined by the code."""


def check_rows(cfg: CheckConfig, on_result=None) -> tuple[list[dict], dict]:
    """Run the checks; return the table (one row per derivation) and the summary."""
    from theory import derive

    names = list(cfg.only) or list(derive.REGISTRY)
    rows = []
    t0 = time.perf_counter()
    for n in names:
        t = time.perf_counter()
        r = derive.check(n, seed=cfg.seed)
        rows.append(
            {
                "result": r.name,
                "equation": r.equation,
                "status": "ok" if r.ok else "FAIL",
                "max_deviation": r.max_deviation,
                "tol": r.tol,
                "claims_failed": "; ".join(r.failed_claims),
                "n_claims": len(derive.derive(n).claims),
                "seconds": round(time.perf_counter() - t, 3),
            }
        )
        if on_result is not None:
            on_result(rows[-1])
    n_fail = sum(r["status"] != "ok" for r in rows)
    summary = {
        "n_results": len(rows),
        "n_failed": n_fail,
        "ok": n_fail == 0,
        "worst_deviation": max(r["max_deviation"] for r in rows),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    summary["headline"] = [
        {"key": "n_results", "label": "theory: derived results checked", "value": len(rows)},
        {"key": "n_failed", "label": "theory: results failing their check", "value": n_fail},
        {
            "key": "worst_deviation",
            "label": "theory: worst deviation, derived vs numeric function",
            "value": summary["worst_deviation"],
        },
    ]
    failed = ", ".join(r["result"] for r in rows if r["status"] != "ok")
    summary["verdicts"] = [
        f"Theory: {len(rows) - n_fail} of {len(rows)} derived results equal their numeric "
        f"functions (worst deviation {summary['worst_deviation']:.2g})"
        + (f"; failing: {failed}." if failed else ".")
    ]
    return rows, summary


def run_check(cfg: CheckConfig, run: RunDir | None) -> int:
    from surgelab.progress import bar

    with bar(len(cfg.only) or None, "derivations") as b:
        rows, summary = check_rows(cfg, on_result=lambda r: b.update(1))
    w = max(len(r["result"]) for r in rows)
    we = max(len(r["equation"]) for r in rows)
    print(f"{'result':<{w}}  {'equation':<{we}}  status  claims  max deviation  (tol)")
    for r in rows:
        print(
            f"{r['result']:<{w}}  {r['equation']:<{we}}  {r['status']:<6}  "
            f"{r['n_claims']:>6}  {r['max_deviation']:>13.2e}  ({r['tol']:.0e})"
        )
        if r["claims_failed"]:
            print(f"    failed claims: {r['claims_failed']}")
    print(
        f"{summary['n_results'] - summary['n_failed']}/{summary['n_results']} ok "
        f"in {summary['seconds']:.1f} s"
    )
    if run is not None:
        run.write_table("checks.csv", rows)
        run.finish(summary)
        print(f"wrote {run.path}")
    return 1 if summary["n_failed"] else 0


def run_tex(cfg: TexConfig, run: RunDir | None) -> int:
    from theory import derive

    assert run is not None
    path = run / "derivations.md"
    path.write_text(derive.to_markdown(derive.derive_all()), encoding="utf-8")
    run.finish({"file": "derivations.md"})
    print(f"wrote {path}")
    return 0


STAGE = Stage(
    "theory",
    "derive the closed forms with sympy and check them (check, tex)",
    {
        "check": Command(
            "check", "re-derive every result and check it numerically", CheckConfig, run_check
        ),
        "tex": Command(
            "tex", "write every derivation as Markdown + LaTeX (derivations.md)", TexConfig, run_tex
        ),
    },
)
