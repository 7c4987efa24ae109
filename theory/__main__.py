"""``python -m theory``: re-derive every closed form and check it (``check``), or write the
derivations as a Markdown/LaTeX document (``tex``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from theory import rundir
from theory.rundir import out_dir_arg


def _seed(s: str) -> int:
    """argparse type of ``--seed``: a non-negative integer."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer; got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer; got {v}")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m theory",
        description="Derive the scaling laws with sympy and check the "
        "numeric functions against the derivations.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="re-derive every result and check it numerically")
    c.add_argument("--seed", type=_seed, default=0, help="seed of the random check points")
    c.add_argument("--only", nargs="+", metavar="NAME", help="check only these derivations")
    c.add_argument(
        "--out",
        type=out_dir_arg,
        default=None,
        help="write a run folder here (config, meta, table, summary.json)",
    )
    t = sub.add_parser("tex", help="write derivations.md (Markdown with LaTeX)")
    t.add_argument(
        "--out", type=out_dir_arg, required=True, help="folder to write derivations.md into"
    )
    return p


def _check(args: argparse.Namespace) -> int:
    from theory import derive

    names = args.only or list(derive.REGISTRY)
    unknown = [n for n in names if n not in derive.REGISTRY]
    if unknown:
        print(
            f"python -m theory check: error: argument --only: unknown derivation(s) "
            f"{', '.join(unknown)}; choose from "
            f"{', '.join(derive.REGISTRY)}",
            file=sys.stderr,
        )
        return 2
    rows = []
    t0 = time.perf_counter()
    for n in names:
        t = time.perf_counter()
        r = derive.check(n, seed=args.seed)
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
    wall = time.perf_counter() - t0
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
    n_fail = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows) - n_fail}/{len(rows)} ok in {wall:.1f} s")
    if args.out is not None:
        path = rundir.start_run("theory", "check", {"seed": args.seed, "only": names}, out=args.out)
        rundir.write_table(path / "checks.csv", rows)
        rundir.write_json(
            path / "summary.json",
            {
                "n_results": len(rows),
                "n_failed": n_fail,
                "ok": n_fail == 0,
                "worst_deviation": max(r["max_deviation"] for r in rows),
                "seconds": round(wall, 3),
            },
        )
        print(f"wrote {path}")
    return 1 if n_fail else 0


def _tex(args: argparse.Namespace) -> int:
    from theory import derive

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "derivations.md"
    path.write_text(derive.to_markdown(derive.derive_all()), encoding="utf-8")
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m theory`` and ``surgelab theory``; returns the exit status."""
    args = _parser().parse_args(argv)
    return _check(args) if args.command == "check" else _tex(args)


if __name__ == "__main__":
    sys.exit(main())
