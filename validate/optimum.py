"""Estimators of a sweep table: the optimal lr by two rules, S–E B_crit, law comparison.

Pure functions on the tidy points table (one dict per (batch_size, lr, seed, target) with the
fields of :func:`validate.engine.train_group`). Every estimate carries a bootstrap interval
whose resampling unit is the **seed**: the engine gives every lr of a seed the same batches
(common random numbers), so a seed's whole curve over lr is one draw, and resampling seeds
(with replacement, the same draw for every lr and batch size) keeps that pairing.

Per (target, batch size B):

* **Usable run.** For the ``further`` rule a run is usable when it reached the target, its
  further-steps copy did not diverge and its ``loss_reduction`` is finite; for the ``steps``
  rule when it reached the target. An lr *competes* at B when at least ``min_ok_frac`` of its
  seeds there are usable; its curve value is then the mean over its usable seeds.
* **Curves.** ``further``: y(lr) = mean loss reduction over the further steps (the paper's
  rule, larger is better). ``steps``: y(lr) = −log(mean steps to reach the target) (fewest
  steps is best; the log makes the curve scale-free).
* **Optimum lr*.** The grid argmax of y over the lrs tried at B, refined by a local
  quadratic in log lr through the argmax and its neighbours (:func:`local_peak`; with the
  default half-width 1 this is :func:`theory.stats.refined_argmax`), the vertex clipped to the
  span of the argmax's two neighbours. An lr that does not compete (diverged, never reached)
  counts as worse than every competing one, so an argmax next to it is interior.
* **Censoring.** An argmax at the first / last lr tried at B is censored ``"low"`` /
  ``"high"``: the optimum may lie off the grid, the estimate is the edge (a bound, not an
  optimum). Censored optima are flagged in every table and **kept out of the law fits**
  (ε_max, fit errors, the leave-one-out folds); B_crit uses their S (below, ``censored_s``);
  :func:`validate.sweep.run_sweep` extends the grid past them.
* **Interval for log lr*.** Percentile bootstrap over seeds (:func:`theory.stats.
  bootstrap_interval`, refit on each resample) at the *expanded* level of
  :func:`expanded_level`: with n seeds the plain percentile interval is too narrow by about
  the factor z/(t_{n−1}·√(n/(n−1))) (it ignores the t-distribution and the bootstrap's
  1/n variance), so the nominal level is raised to make the interval as wide as a t-interval
  would be (Hesterberg 2015, "expanded percentile"). NaN with fewer than
  :data:`MIN_BOOT_SEEDS` seeds. **Grid-resolution floor**: when the interior lr* is a grid
  point (no interpolation: a neighbour does not compete, the curve is not concave there, or
  the vertex was clipped at a neighbour) every resample can return that same grid point and
  the seed bootstrap collapses to a point, though the grid cannot place the optimum closer
  than its cell; the interval is then widened to at least half a grid step (in log lr) to
  each side of lr* (:func:`grid_cell`). **Fixed-width floor under adaptive seeds**
  (``seed_log_width`` W and ``max_seeds`` given, :mod:`validate.sweep`): a batch size the rule
  stopped before ``max_seeds`` stopped *because* its interval looked narrower than W, which
  picks draws whose seed spread happens to be small (optional stopping): measured on
  synthetic sweeps, such intervals held the true optimum in 0.75 of the draws that stopped at
  the first look. Its interval is therefore at least W wide, centred on ln lr* (the fixed width
  the rule aims for, as in Stein's two-stage design), which restores coverage near nominal
  (the slow test in tests/test_validate_estimators.py). ``floor`` in the table names what
  widened an interval: ``"grid"``, ``"width"``, both, or "". The fall's interval (below) is
  widened the same way: to at least the range of f the two optima's floors allow.

Per target:

* **S–E B_crit** (the paper's B_noise estimate, Eq. 22, :func:`theory.efficiency.
  fit_b_noise`): S(B) = mean steps to the target at the optimum lr* of rule ``s_rule``
  (default ``further``: log mean steps interpolated linearly in log lr between the grid
  neighbours of lr*; ``steps``: the steps rule's refined minimum), E = B·S, over the batch
  sizes with an optimum — a censored one included, S read at the edge lr (``censored_s``;
  S varies slowly with lr near the optimum, so an edge biases S far less than lr*, and
  dropping those batch sizes would often leave too few to fit; ``n_censored`` counts them);
  1/S = −B_crit/E + 1/S_min. Interval: bootstrap over seeds
  AND batch sizes (each resample draws seeds, refits every S(B), then draws the batch sizes
  with replacement and refits), expanded at n = min(seeds, batch sizes).
* **Leave-one-batch-size-out law comparison.** Folds = the batch sizes with an interior
  ``further`` optimum (>= 3). In a fold, B_i's log lr* is predicted from the other folds:
  theory laws by the paper's route (B_crit refit from the others' (S, E), ε_max by Eq. 23/24
  from the others' lr*), baselines from the nearest other batch size
  (:func:`theory.laws.baseline_lr`). A fold whose B_crit refit is not positive is dropped for
  every law (paired folds); when the full-data B_crit is invalid nothing is ranked.
  ``err`` = RMS of the natural-log errors over the folds. Intervals: bootstrap over seeds and
  over folds (batch sizes); ``diff`` = err(law) − err(best baseline) with its interval from
  the same resamples (paired). **Verdict**: the best theory law against the best baseline; a
  winner is named only when the diff interval excludes 0; otherwise "not separable at this
  scale" with n_needed = ⌈n_seeds · (z·sd_seeds/|diff|)²⌉ seeds, sd_seeds the seed-only
  bootstrap SD of diff and z the two-sided normal quantile of ``level`` (the SD of a mean
  over seeds shrinks as 1/√n). When n_needed <= n_seeds, seeds are not what is missing: the
  spread over batch sizes is, and the verdict says so.
* **The fall** (paper's ``further`` rule, :func:`fall_point`): among the batch sizes with an
  interior optimum (censored ones are bounds: listed, never used as points), B_peak is the one
  with the largest lr* and B_last the largest; when B_last > B_peak the fall factor is
  f = lr*(B_peak)/lr*(B_last). Interval: seed bootstrap of log f with B_peak and B_last held
  at their point-estimate values, expanded at n seeds, widened to at least what the two
  optima's floors allow (an unrefined grid optimum: its cell). That interval is
  *conditional on the choice* of the pair, and choosing B_peak as the argmax of noisy lr* on
  the same data biases f upward (a winner's curse), so a fall is claimed only when the
  interval's lower end exceeds 1 and the text says "no fall resolved" otherwise. A fall the
  grid's top edge hides (a batch size censored "high" at an lr above the whole interval of a
  larger batch size's lr*) is named in the text (:func:`suggested_fall`), not estimated. Even so,
  on a flat lr* (no fall; 4 batch sizes, 6 seeds, heavy noise) 3 of 30 draws claimed one
  while this was written, and a known 8× fall was covered in 35 of 40 draws (the slow test
  in tests/test_validate_estimators.py).

Degenerate inputs never raise: what cannot be computed is NaN and a ``reason`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from theory import laws
from theory.efficiency import fit_b_noise
from theory.stats import Peak, bootstrap_interval, refined_argmax

NAN = float("nan")

#: The two best-lr rules: the paper's (largest mean loss reduction over the further steps) and
#: fewest mean steps to reach the target.
RULES: tuple[str, ...] = ("further", "steps")

#: Fewest seeds for a seed bootstrap (with 2 seeds a resample takes only 3 distinct values).
MIN_BOOT_SEEDS = 5

#: Default two-sided coverage of every interval.
LEVEL = 0.95

#: Fewest interior batch sizes for a leave-one-out comparison (2 to fit, 1 to predict).
MIN_FOLDS = 3

THEORY: tuple[str, ...] = laws.THEORY
BASELINES: tuple[str, ...] = laws.BASELINES


# ----------------------------------------------------------------------------- the table


def _num(v: Any) -> float:
    if v is None or v == "":
        return NAN
    try:
        return float(v)
    except (TypeError, ValueError):
        return NAN


def _flag(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v)


class Cube:
    """One target's points as dense arrays over (batch size, lr, seed); NaN where absent.

    ``tried[i, j]``: lr j was run at batch size i (by any seed). ``usable``: the further rule's
    usable runs; ``reached``: reached the target.
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]], target: float) -> None:
        rows = [r for r in rows if float(r["target"]) == target]
        self.target = float(target)
        self.B = np.array(sorted({int(r["batch_size"]) for r in rows}), dtype=np.float64)
        self.lrs = np.array(sorted({float(r["lr"]) for r in rows}), dtype=np.float64)
        self.seeds = np.array(sorted({int(r["seed"]) for r in rows}), dtype=np.int64)
        bi = {int(b): i for i, b in enumerate(self.B)}
        li = {float(v): i for i, v in enumerate(self.lrs)}
        si = {int(v): i for i, v in enumerate(self.seeds)}
        shape = (self.B.size, self.lrs.size, self.seeds.size)
        self.present = np.zeros(shape, dtype=bool)
        self.usable = np.zeros(shape, dtype=bool)
        self.reached = np.zeros(shape, dtype=bool)
        self.reduction = np.full(shape, np.nan)
        self.steps = np.full(shape, np.nan)
        for r in rows:
            k = (bi[int(r["batch_size"])], li[float(r["lr"])], si[int(r["seed"])])
            self.present[k] = True
            red, st = _num(r.get("loss_reduction")), _num(r.get("steps"))
            reached = _flag(r.get("reached")) and math.isfinite(st)
            self.reached[k] = reached
            if reached:
                self.steps[k] = st
            if reached and math.isfinite(red) and not _flag(r.get("further_diverged")):
                self.usable[k] = True
                self.reduction[k] = red
        self.tried = self.present.any(-1)

    @property
    def n_seeds(self) -> int:
        return int(self.seeds.size)


def _mean_where(ok: NDArray[np.bool_], v: NDArray[np.float64]) -> NDArray[np.float64]:
    n = ok.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, v, 0.0).sum(-1) / np.maximum(n, 1), np.nan)


def curves(
    cube: Cube,
    rule: str,
    seed_idx: NDArray[np.int64] | None = None,
    *,
    min_ok_frac: float = 0.5,
) -> NDArray[np.float64]:
    """The rule's curve y(B, lr) on the seeds ``seed_idx`` (all if None); NaN = not competing.

    ``further``: mean loss reduction over usable seeds; ``steps``: −log mean steps over the
    seeds that reached the target. An lr competes when >= ``min_ok_frac`` of its seeds at
    that batch size are usable (repeated seeds of a resample count with their multiplicity).

    Examples:
      >>> rows = [dict(batch_size=4, lr=lr, seed=0, target=1.0, reached=True, steps=s,
      ...              loss_reduction=r) for lr, s, r in ((1e-3, 20, 0.1), (2e-3, 10, 0.3))]
      >>> curves(Cube(rows, 1.0), "further").round(3).tolist()
      [[0.1, 0.3]]
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    sl = (Ellipsis, seed_idx) if seed_idx is not None else (Ellipsis,)
    present = cube.present[sl]
    ok = cube.usable[sl] if rule == "further" else cube.reached[sl]
    n_present = present.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n_present > 0, ok.sum(-1) / np.maximum(n_present, 1), 0.0)
    compete = (frac >= min_ok_frac) & (ok.sum(-1) > 0)
    if rule == "further":
        y = _mean_where(ok, cube.reduction[sl])
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = -np.log(_mean_where(ok, cube.steps[sl]))
    return np.where(compete, y, np.nan)


def local_peak(x: Sequence[float], y: Sequence[float], *, half_width: int = 1) -> Peak | None:
    """Maximiser of y over an ascending lr grid, refined by a local quadratic in log x.

    The grid argmax, then a least-squares parabola in log x through the finite points within
    ``half_width`` grid steps of it (>= 3 needed), its vertex clipped to the span of the
    argmax's two neighbours; at a grid edge the edge point, ``censored`` "low" / "high".
    ``half_width`` 1 is :func:`theory.stats.refined_argmax`. None when y has no finite value.

    Examples:
      >>> t = np.log([1.0, 2.0, 4.0, 8.0, 16.0])
      >>> y = -(t - np.log(3.0)) ** 2
      >>> round(local_peak(np.exp(t), y, half_width=2).x, 9)
      3.0
      >>> local_peak([1.0, 2.0], [1.0, 0.0]).censored
      'low'
    """
    xs, v = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not np.any(np.isfinite(v)):
        return None
    if half_width < 1:
        raise ValueError(f"half_width must be >= 1; got {half_width=}")
    p = refined_argmax(xs, v, log=True)
    if half_width == 1 or p.censored:
        return p
    i = p.index
    j = np.arange(max(0, i - half_width), min(xs.size, i + half_width + 1))
    j = j[np.isfinite(v[j])]
    if j.size < 3 or not (np.isfinite(v[i - 1]) and np.isfinite(v[i + 1])):
        return p
    t = np.log(xs)
    a2, a1, a0 = np.polyfit(t[j], v[j], 2)
    if not a2 < 0:
        return Peak(float(xs[i]), float(v[i]), i, "")
    tv = float(np.clip(-a1 / (2 * a2), t[i - 1], t[i + 1]))
    return Peak(float(np.exp(tv)), float(a2 * tv**2 + a1 * tv + a0), i, "")


def grid_cell(x: Sequence[float], lr: float) -> tuple[float, float] | None:
    """The grid cell of an unrefined interior optimum: half a log step to each side of it.

    ``(√(x[k−1]·x[k]), √(x[k]·x[k+1]))`` when ``lr`` is the interior grid point x[k] of the
    ascending grid ``x``, else None (an interpolated optimum, or an edge).

    Examples:
      >>> [round(v, 6) for v in grid_cell([1.0, 4.0, 16.0], 4.0)]
      [2.0, 8.0]
      >>> grid_cell([1.0, 4.0, 16.0], 3.0) is None, grid_cell([1.0, 4.0, 16.0], 16.0) is None
      (True, True)
    """
    xs = np.asarray(x, dtype=np.float64)
    k = np.flatnonzero(np.isclose(xs, lr, rtol=1e-12, atol=0.0))
    if k.size != 1 or not 0 < int(k[0]) < xs.size - 1:
        return None
    k0 = int(k[0])
    return math.sqrt(xs[k0 - 1] * xs[k0]), math.sqrt(xs[k0] * xs[k0 + 1])


def expanded_level(level: float, n: int) -> float:
    """The percentile level that makes a bootstrap interval as wide as a t-interval of n.

    2Φ(√(n/(n−1))·t_{n−1}((1+level)/2)) − 1 (Hesterberg's expanded percentile interval):
    corrects the plain percentile interval's under-coverage with few resampling units.

    Examples:
      >>> round(expanded_level(0.95, 10), 4), round(expanded_level(0.95, 1000), 4)
      (0.9829, 0.9504)
    """
    from scipy import stats as st

    if n < 2:
        return NAN
    q = math.sqrt(n / (n - 1)) * st.t.ppf((1 + level) / 2, n - 1)
    return float(min(2 * st.norm.cdf(q) - 1, 1 - 1e-9))


# ----------------------------------------------------------------------------- one resample


@dataclass
class Draw:
    """The estimates of one target on one set of seeds (all seeds, or a resample).

    ``lr[rule]``, ``value[rule]``, ``censored[rule]``: per batch size the optimum lr* (NaN if
    no lr competes), the curve there and "low" / "high" / "" (edge of the lrs tried) or
    "none" (no optimum). ``S``: steps to the target at the ``s_rule`` optimum (NaN if none).
    """

    lr: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    value: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    censored: dict[str, list[str]] = field(default_factory=dict)
    S: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    s_ok: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))


def _interp_steps(x: NDArray[np.float64], ls: NDArray[np.float64], lr: float, j: int) -> float:
    """log mean steps at ``lr`` (near grid index ``j``), linear in log lr between neighbours."""
    k = j + 1 if lr > x[j] else j - 1
    if 0 <= k < x.size and np.isfinite(ls[k]) and lr != x[j]:
        w = (math.log(lr) - math.log(x[j])) / (math.log(x[k]) - math.log(x[j]))
        return float(ls[j] + w * (ls[k] - ls[j]))
    return float(ls[j])


def draw(
    cube: Cube,
    seed_idx: NDArray[np.int64] | None = None,
    *,
    min_ok_frac: float = 0.5,
    half_width: int = 1,
    s_rule: str = "further",
    censored_s: bool = True,
) -> Draw:
    """Both rules' optima and S(B) on the seeds ``seed_idx`` (module docstring)."""
    d = Draw()
    ys = {rule: curves(cube, rule, seed_idx, min_ok_frac=min_ok_frac) for rule in RULES}
    nB = cube.B.size
    peaks: dict[str, list[Peak | None]] = {}
    for rule in RULES:
        lr, val, cen, pk = np.full(nB, np.nan), np.full(nB, np.nan), [], []
        for i in range(nB):
            tried = cube.tried[i]
            p = local_peak(cube.lrs[tried], ys[rule][i, tried], half_width=half_width)
            pk.append(p)
            if p is None:
                cen.append("none")
                continue
            lr[i], val[i] = p.x, p.y
            cen.append(p.censored)
        d.lr[rule], d.value[rule], d.censored[rule], peaks[rule] = lr, val, cen, pk
    S = np.full(nB, np.nan)
    ls = -ys["steps"]  # log mean steps
    for i in range(nB):
        p = peaks[s_rule][i]
        if p is None or (p.censored and not censored_s):
            continue
        if s_rule == "steps":
            S[i] = math.exp(-p.y)
        else:
            x, li = cube.lrs[cube.tried[i]], ls[i, cube.tried[i]]
            if np.isfinite(li[p.index]):
                S[i] = math.exp(_interp_steps(x, li, p.x, p.index))
    d.S = S
    d.s_ok = np.isfinite(S) & (S > 0)
    return d


# ----------------------------------------------------------------------------- B_crit


def fit_b_crit(B: NDArray[np.float64], S: NDArray[np.float64]) -> tuple[float, float, str | None]:
    """S–E fit (Eq. 22) on (B, S) points: ``(b_crit, s_min, reason)``, NaN with a reason.

    Examples:
      >>> B = np.array([4.0, 16.0, 64.0])
      >>> b, s, why = fit_b_crit(B, 100 * (1 + 20 / B))
      >>> round(b, 6), round(s, 6), why
      (20.0, 100.0, None)
    """
    ok = np.isfinite(S) & (S > 0)
    if np.unique(B[ok]).size < 2:
        return NAN, NAN, f"only {int(np.unique(B[ok]).size)} batch size(s) with an S to fit"
    b, s = B[ok], S[ok]
    try:
        b_crit, s_min = fit_b_noise(s, b * s)
    except ValueError as e:
        return NAN, NAN, f"S-E fit failed: {e}"
    x, y = 1.0 / (b * s), 1.0 / s
    zero = 1024 * np.finfo(np.float64).eps * float(np.max(y)) / max(float(np.ptp(x)), 1e-300)
    if math.isfinite(b_crit) and abs(b_crit) <= zero:
        return (
            NAN,
            s_min,
            (
                f"fitted B_crit = {b_crit:.3g} is zero to rounding (steps to the target do not "
                "change with batch size)"
            ),
        )
    if not (b_crit > 0 and math.isfinite(b_crit)):
        return (
            NAN,
            s_min,
            (
                f"fitted B_crit = {b_crit:.4g} is not positive (steps to the target do not fall "
                "with batch size)"
            ),
        )
    return float(b_crit), float(s_min), None


# ----------------------------------------------------------------------------- leave-one-out


def loo_errors(
    B: NDArray[np.float64],
    lr: NDArray[np.float64],
    lr_ok: NDArray[np.bool_],
    S: NDArray[np.float64],
    s_ok: NDArray[np.bool_],
    law_fit: str = "se",
) -> tuple[NDArray[np.float64], NDArray[np.float64], str | None]:
    """Leave-one-batch-size-out errors: ``(errors (law × fold), fold batch sizes, reason)``.

    Rows follow ``THEORY + BASELINES``; an error is log(predicted lr*) − log(lr*) at the
    held-out batch size (module docstring). Folds are the ``lr_ok`` batch sizes; a fold whose
    B_crit refit fails is dropped; no folds when the full-data B_crit fails.
    ``law_fit="free"``: no S–E fit (S and ``s_ok`` are ignored); each theory law's B_noise and
    ε_max are fitted to the other folds' lr* (:func:`theory.laws.fit_profile`), as in a branch where
    every run takes the same number of steps.

    Examples:
      >>> B = np.array([4.0, 16.0, 64.0]); lr = 1e-3 * np.sqrt(B / 4)
      >>> ok = np.ones(3, bool); S = 100 * (1 + 40 / B)
      >>> e, folds, why = loo_errors(B, lr, ok, S, ok)
      >>> float(np.abs(e[len(THEORY) + 1]).max()) < 1e-12, folds.tolist()  # sqrt_rule
      (True, [4.0, 16.0, 64.0])
    """
    names = (*THEORY, *BASELINES)
    empty = np.zeros((len(names), 0))
    idx = np.flatnonzero(lr_ok & np.isfinite(lr) & (lr > 0))
    if idx.size < MIN_FOLDS:
        return (
            empty,
            np.zeros(0),
            (
                f"leave-one-out needs >= {MIN_FOLDS} batch sizes with an interior optimum; have "
                f"{idx.size}"
            ),
        )
    if law_fit not in ("se", "free"):
        raise ValueError(f"law_fit must be 'se' or 'free'; got {law_fit!r}")
    if law_fit == "free":
        cols = []
        for i in idx:
            keep = idx[idx != i]
            col = [
                math.log(float(laws.fit_profile(law, B[keep], lr[keep]).predict(B[i])))
                - math.log(lr[i])
                for law in THEORY
            ]
            col += [
                math.log(float(laws.baseline_lr(law, B[i], B[keep], lr[keep]))) - math.log(lr[i])
                for law in BASELINES
            ]
            cols.append(col)
        return np.array(cols, dtype=np.float64).T, B[idx].astype(np.float64), None
    sk = s_ok & np.isfinite(S) & (S > 0)
    _, _, why = fit_b_crit(B[sk], S[sk])
    if why is not None:
        return empty, np.zeros(0), f"no law comparison: {why}"
    cols, folds = [], []
    for i in idx:
        keep = idx[idx != i]
        sk_i = sk.copy()
        sk_i[i] = False
        bc, _, bad = fit_b_crit(B[sk_i], S[sk_i])
        if bad is not None:
            continue
        col = []
        for law in THEORY:
            eps = laws.eps_max_given_b_noise(law, B[keep], lr[keep], bc)
            col.append(math.log(float(laws.law_lr(law, B[i], eps, bc))) - math.log(lr[i]))
        for law in BASELINES:
            pred = float(laws.baseline_lr(law, B[i], B[keep], lr[keep]))
            col.append(math.log(pred) - math.log(lr[i]))
        cols.append(col)
        folds.append(B[i])
    if not cols:
        return empty, np.zeros(0), "no leave-one-out fold gave a positive B_crit refit"
    return np.array(cols, dtype=np.float64).T, np.array(folds), None


def _rms(e: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    return np.sqrt(np.mean(e**2, axis=axis)) if e.shape[axis] else np.full(e.shape[0], np.nan)


# ----------------------------------------------------------------------------- the fall


def fall_point(
    B: Sequence[float], lr: Sequence[float], censored: Sequence[str]
) -> tuple[int | None, int | None, str | None]:
    """Indices of B_peak and B_last for the fall (module docstring): ``(i_peak, i_last, why)``.

    Only interior optima count (``censored`` "" and a finite positive lr*); B_peak has the
    largest lr*, B_last the largest batch size (``B`` ascending). ``i_last == i_peak`` when
    lr* is largest at the largest interior batch size (no fall seen); ``(None, None, why)``
    with fewer than 2 interior optima.

    Examples:
      >>> fall_point([4, 8, 16, 32], [1.0, 3.0, 2.0, 9.0], ["", "", "", "high"])
      (1, 2, None)
      >>> fall_point([4, 8], [1.0, 3.0], ["", ""])
      (1, 1, None)
      >>> fall_point([4, 8], [1.0, 3.0], ["low", ""])[2]
      '1 batch size(s) with an interior optimum (2 needed)'
    """
    b = np.asarray(B, dtype=np.float64)
    y = np.asarray(lr, dtype=np.float64)
    ok = np.array([c == "" for c in censored], dtype=bool) & np.isfinite(y) & (y > 0)
    idx = np.flatnonzero(ok)
    if idx.size < 2:
        return None, None, f"{idx.size} batch size(s) with an interior optimum (2 needed)"
    i_peak = int(idx[np.argmax(y[idx])])
    i_last = int(idx[np.argmax(b[idx])])
    return i_peak, i_last, None


def suggested_fall(best: Sequence[Mapping[str, Any]]) -> str:
    """A fall the grid's top edge hides: ``"B_c>B"`` or "".

    B_c is the smallest batch size whose best lr is the largest it tried (censored "high":
    its lr* is at least about that lr) while a larger batch size B has an interior optimum
    whose interval lies wholly below that lr: the optimum then falls from B_c to B by more
    than the ratio, but by how much the grid cannot say (B_c is kept out of the fall's
    estimate). ``best``: one rule's rows (``batch_size, lr, hi, censored``), any order.

    Examples:
      >>> rows = [dict(batch_size=256, lr=0.05, hi=0.05, censored="high"),
      ...         dict(batch_size=512, lr=0.015, hi=0.02, censored="")]
      >>> suggested_fall(rows), suggested_fall([{**rows[0], "censored": ""}, rows[1]])
      ('256>512', '')
    """
    rows = sorted(best, key=lambda r: r["batch_size"])
    for i, c in enumerate(rows):
        if c["censored"] != "high" or not c["lr"] > 0:
            continue
        for r in rows[i + 1 :]:
            if r["censored"] == "" and math.isfinite(r["hi"]) and r["hi"] < c["lr"]:
                return f"{int(c['batch_size'])}>{int(r['batch_size'])}"
    return ""


def _fall_text(target: float, fall: Mapping[str, Any], why: str | None, no_iv: str) -> str:
    t = f"target {target:g}"
    a, b, f, lo, hi = (fall[k] for k in ("b_peak", "b_last", "factor", "lo", "hi"))
    if why is not None:
        text = f"{t}: no fall estimate: {why}"
    elif b == a:
        text = (
            f"{t}: no fall seen for B ≤ {b:g} (lr* largest at the largest batch size with an "
            "interior optimum)"
        )
    elif fall["falls"]:
        text = f"{t}: the optimum lr* falls from B = {a:g} to B = {b:g} by a factor {f:.3g} "
        text += f"[{lo:.3g}, {hi:.3g}]"
    else:
        if math.isfinite(lo):
            iv = f"[{lo:.3g}, {hi:.3g}]"
            why_not = "interval includes 1" if hi >= 1 else "interval below 1"
        else:
            iv, why_not = "[no interval]", no_iv
        text = f"{t}: no fall resolved: lr*(B = {a:g}) / lr*(B = {b:g}) = {f:.3g} {iv} ({why_not})"
    if fall["censored"]:
        cen = ", ".join(f"{c.split(':')[0]} ({c.split(':')[1]})" for c in fall["censored"])
        text += f"; censored at B = {cen}"
    if fall.get("suggested"):
        bc, b2 = fall["suggested"].split(">")
        text += (
            f"; but at B = {bc} the best lr is the largest tried, above the whole lr* interval "
            f"at B = {b2}: a fall past B = {bc} that the grid does not resolve (widen it there)"
        )
    return text


# ----------------------------------------------------------------------------- one target


@dataclass
class TargetAnalysis:
    """All tables of one target (see :func:`analyse_target`)."""

    target: float
    best: list[dict[str, Any]]
    b_crit: dict[str, Any]
    loo: list[dict[str, Any]]
    verdict: dict[str, Any]
    point: Draw
    cube: Cube
    loo_errors: NDArray[np.float64]
    loo_folds: NDArray[np.float64]
    fall: dict[str, Any] = field(default_factory=dict)


def analyse_target(
    rows: Iterable[Mapping[str, Any]],
    target: float,
    *,
    n_boot: int = 200,
    level: float = LEVEL,
    seed: int = 0,
    min_ok_frac: float = 0.5,
    half_width: int = 1,
    s_rule: str = "further",
    censored_s: bool = True,
    law_fit: str = "se",
    seed_log_width: float | None = None,
    max_seeds: int | None = None,
) -> TargetAnalysis:
    """Every estimator of the module docstring at one target, with its intervals.

    Args:
      rows: the points table.
      target: the target loss (rows of other targets are ignored).
      n_boot: bootstrap resamples: 0 (no intervals) or >= 10.
      level: two-sided coverage of the intervals.
      seed: seed of the bootstrap draws.
      min_ok_frac: share of an lr's seeds that must be usable for it to compete.
      half_width: grid points either side of the argmax in the local quadratic.
      s_rule: the optimum S(B) is read at for B_crit (``further`` or ``steps``).
      censored_s: use S at a censored optimum (the edge lr) in the B_crit fit.
      law_fit: how the leave-one-out folds predict with the theory laws: ``"se"`` (the
        paper's route through the S–E B_crit) or ``"free"`` (B_noise and ε_max fitted to the
        other folds' lr*; :func:`loo_errors`).
      seed_log_width, max_seeds: the adaptive-seed rule the rows were sampled under
        (:func:`validate.sweep.next_seeds`); both or neither. A batch size with fewer than
        ``max_seeds`` seeds gets an lr* interval at least ``seed_log_width`` wide in ln lr.

    Returns:
      :class:`TargetAnalysis`: ``best`` (rows ``target, batch_size, rule, lr, lo, hi,
      censored`` + ``grid_lr`` (grid argmax), ``value``, ``n_seeds``, ``p_edge`` (share of
      resamples whose optimum is on an edge), ``floor`` ("grid" / "width" / "grid,width" / "":
      what widened the interval), ``S``, ``E``), ``b_crit`` (``target, value, lo,
      hi`` + ``s_min``, ``lo_seeds``/``hi_seeds`` (seeds alone), ``n_batch_sizes``,
      ``n_censored``, ``reason``), ``loo`` (per law ``target, law, err, lo, hi`` + ``diff``,
      ``diff_lo``, ``diff_hi`` against ``best_baseline``, ``n_folds``), ``verdict``, and
      ``fall`` (paper's rule: ``target, b_peak, b_last, factor, lo, hi, falls`` (lo > 1),
      ``censored`` (list of "B:edge"), ``suggested`` (:func:`suggested_fall`), ``text``; NaN
      where undefined).
    """
    if not (n_boot == 0 or n_boot >= 10):
        raise ValueError(f"n_boot must be 0 (no intervals) or >= 10; got {n_boot=}")
    if not 0 < min_ok_frac <= 1:
        raise ValueError(f"min_ok_frac must lie in (0, 1]; got {min_ok_frac=}")
    if s_rule not in RULES:
        raise ValueError(f"s_rule must be one of {RULES}; got {s_rule!r}")
    if (seed_log_width is None) != (max_seeds is None) or (
        seed_log_width is not None and not seed_log_width > 0
    ):
        raise ValueError(
            "seed_log_width (> 0) and max_seeds go together (the adaptive-seed rule); "
            f"got {seed_log_width=}, {max_seeds=}"
        )
    cube = Cube(rows, target)
    kw = dict(min_ok_frac=min_ok_frac, half_width=half_width, s_rule=s_rule, censored_s=censored_s)
    point = draw(cube, None, **kw)
    B = cube.B
    n = cube.n_seeds
    boot = n_boot > 0 and n >= MIN_BOOT_SEEDS
    names = (*THEORY, *BASELINES)

    cache: dict[bytes, Draw] = {}

    def at(idx: NDArray[np.int64]) -> Draw:  # one analysis per resample, shared by all stats
        key = idx.tobytes()
        if key not in cache:
            cache[key] = draw(cube, idx, **kw)
        return cache[key]

    def units_rng(idx: NDArray[np.int64], salt: int) -> np.random.Generator:
        # the batch-size / fold resample that goes with a seed resample (deterministic in it)
        return np.random.default_rng([seed, salt, *idx.tolist()])

    def interval(stat, m: int) -> tuple[float, float, int]:
        if not boot:
            return NAN, NAN, 0
        return bootstrap_interval(stat, n, n_boot=n_boot, level=expanded_level(level, m), seed=seed)

    # --- best lr per (rule, batch size)
    best = []
    # per batch size, ln lr* − ln(lowest) and ln(highest) − ln lr* the floors allow
    reach: dict[int, tuple[float, float]] = {}
    for rule in RULES:
        for i, b in enumerate(B):
            lr = float(point.lr[rule][i])
            lo = hi = NAN
            p_edge = NAN
            # a batch size is resampled over its own seeds: with adaptive seeds (validate.sweep)
            # batch sizes hold different numbers of them
            own = np.flatnonzero(cube.present[i].any(0))
            if boot and math.isfinite(lr) and own.size >= MIN_BOOT_SEEDS:

                def log_lr(idx, rule=rule, i=i, own=own):
                    v = at(own[idx]).lr[rule][i]
                    return math.log(v) if math.isfinite(v) else NAN

                lo, hi, _ = bootstrap_interval(
                    log_lr,
                    own.size,
                    n_boot=n_boot,
                    level=expanded_level(level, own.size),
                    seed=seed,
                )
                lo, hi = (
                    math.exp(lo) if math.isfinite(lo) else NAN,
                    (math.exp(hi) if math.isfinite(hi) else NAN),
                )
                edges = [
                    at(own[ix]).censored[rule][i] in ("low", "high")
                    for ix in _draws(own.size, n_boot, seed)
                ]
                p_edge = float(np.mean(edges))
            tried = cube.tried[i]
            y = curves(cube, rule, None, min_ok_frac=min_ok_frac)[i, tried]
            grid = float(cube.lrs[tried][int(np.nanargmax(y))]) if np.any(np.isfinite(y)) else NAN
            cen = point.censored[rule][i]
            floors = []
            if cen == "" and math.isfinite(lo) and math.isfinite(hi):  # module docstring
                cell = grid_cell(cube.lrs[tried], lr)
                if cell is not None and (lo > cell[0] or hi < cell[1]):
                    lo, hi = min(lo, cell[0]), max(hi, cell[1])
                    floors.append("grid")
                stopped = max_seeds is not None and own.size < max_seeds
                half = seed_log_width / 2 if stopped else 0.0
                if stopped and math.log(hi / lo) < seed_log_width * (1 - 1e-12):
                    lo, hi = min(lo, lr * math.exp(-half)), max(hi, lr * math.exp(half))
                    floors.append("width")
                if rule == "further":  # what the floors allow around lr*, for the fall's interval
                    reach[i] = (
                        max(math.log(lr / cell[0]) if cell else 0.0, half),
                        max(math.log(cell[1] / lr) if cell else 0.0, half),
                    )
            value = float(point.value[rule][i])
            row = {
                "target": cube.target,
                "batch_size": int(b),
                "rule": rule,
                "lr": lr,
                "lo": lo,
                "hi": hi,
                "censored": "" if cen == "none" else cen,
                "grid_lr": grid,
                "value": value
                if rule == "further"
                else math.exp(-value)
                if math.isfinite(value)
                else NAN,
                "n_seeds": int(cube.present[i].any(0).sum()),
                "p_edge": p_edge,
                "floor": ",".join(floors),
                "S": float(point.S[i]) if rule == s_rule else NAN,
                "E": float(b * point.S[i]) if rule == s_rule else NAN,
            }
            best.append(row)

    # --- B_crit
    if law_fit == "free":  # no steps-to-target to fit (e.g. branches of equal length)
        bc, s_min, why = NAN, NAN, "no S–E fit with law_fit='free'"
    else:
        bc, s_min, why = fit_b_crit(B[point.s_ok], point.S[point.s_ok])
    n_fit = int(point.s_ok.sum())

    def bc_seeds(idx):
        d = at(idx)
        return fit_b_crit(B[d.s_ok], d.S[d.s_ok])[0]

    def bc_both(idx):
        d = at(idx)
        k = np.flatnonzero(d.s_ok)
        if k.size < 2:
            return NAN
        k = units_rng(idx, 1).choice(k, k.size)
        return fit_b_crit(B[k], d.S[k])[0]

    lo_s = hi_s = lo_b = hi_b = NAN
    if why is None:
        lo_s, hi_s, _ = interval(bc_seeds, n)
        lo_b, hi_b, _ = interval(bc_both, min(n, n_fit))
    n_cens = sum(c in ("low", "high") for c in point.censored[s_rule])
    b_crit = {
        "target": cube.target,
        "value": bc,
        "lo": lo_b,
        "hi": hi_b,
        "s_min": s_min,
        "lo_seeds": lo_s,
        "hi_seeds": hi_s,
        "n_batch_sizes": n_fit,
        "n_censored": int(n_cens),
        "reason": why,
    }

    # --- leave-one-batch-size-out
    def lr_ok(d: Draw) -> NDArray[np.bool_]:
        cen = np.array([c == "" for c in d.censored["further"]], dtype=bool)  # bool when empty
        return cen & np.isfinite(d.lr["further"])

    E0, folds0, loo_why = loo_errors(
        B, point.lr["further"], lr_ok(point), point.S, point.s_ok, law_fit
    )
    err = _rms(E0) if E0.shape[1] else np.full(len(names), np.nan)
    nt = len(THEORY)
    base_err = err[nt:]
    kb = int(np.nanargmin(base_err)) if np.any(np.isfinite(base_err)) else None
    best_base = BASELINES[kb] if kb is not None else None
    draws_cache: dict[bytes, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}

    def loo_of(idx):  # (err per law on the resampled seeds, and with folds resampled too)
        key = idx.tobytes()
        if key not in draws_cache:
            d = at(idx)
            Ed, _, bad = loo_errors(B, d.lr["further"], lr_ok(d), d.S, d.s_ok, law_fit)
            if bad is not None or Ed.shape[1] == 0:
                nanv = np.full(len(names), np.nan)
                draws_cache[key] = (nanv, nanv)
            else:
                f = units_rng(idx, 2).integers(0, Ed.shape[1], Ed.shape[1])
                draws_cache[key] = (_rms(Ed), _rms(Ed[:, f]))
        return draws_cache[key]

    m_loo = min(n, max(int(folds0.size), 2))
    loo = []
    for k, law in enumerate(names):
        lo = hi = dlo = dhi = NAN
        diff = float(err[k] - err[nt + kb]) if kb is not None else NAN
        if loo_why is None:
            lo, hi, _ = interval(lambda ix, k=k: float(loo_of(ix)[1][k]), m_loo)
            if kb is not None:
                dlo, dhi, _ = interval(
                    lambda ix, k=k: float(loo_of(ix)[1][k] - loo_of(ix)[1][nt + kb]), m_loo
                )
        loo.append(
            {
                "target": cube.target,
                "law": law,
                "err": float(err[k]),
                "lo": lo,
                "hi": hi,
                "diff": diff,
                "diff_lo": dlo,
                "diff_hi": dhi,
                "best_baseline": best_base or "",
                "n_folds": int(folds0.size),
            }
        )
    # --- the verdict: best theory law against the best baseline
    verdict: dict[str, Any] = {"target": cube.target, "winner": None, "separable": False}
    th_err = err[:nt]
    if loo_why is not None or kb is None or not np.any(np.isfinite(th_err)):
        verdict["text"] = f"no law comparison at target {cube.target:g}: {loo_why or 'no fold'}"
        verdict["n_seeds_needed"] = None
    else:
        kt = int(np.nanargmin(th_err))
        law, row = THEORY[kt], loo[kt]
        diff, dlo, dhi = row["diff"], row["diff_lo"], row["diff_hi"]
        iv = f"[{dlo:.3g}, {dhi:.3g}]" if math.isfinite(dlo) else "[no interval]"
        base = best_base
        n_need = None
        if boot:
            ds = [loo_of(ix)[0][kt] - loo_of(ix)[0][nt + kb] for ix in _draws(n, n_boot, seed)]
            ds = np.array([v for v in ds if math.isfinite(v)])
            if ds.size >= 2 and diff != 0:
                from scipy.stats import norm

                z = float(norm.ppf((1 + level) / 2))
                n_need = math.ceil(n * (z * float(np.std(ds, ddof=1)) / abs(diff)) ** 2)
        verdict.update(
            theory_law=law,
            baseline=base,
            diff=diff,
            diff_lo=dlo,
            diff_hi=dhi,
            n_seeds=n,
            n_seeds_needed=n_need,
        )
        head = (
            f"target {cube.target:g}: leave-one-batch-size-out log-lr RMS error, best law "
            f"{law} {err[kt]:.3g} vs best baseline {base} {err[nt + kb]:.3g}: "
            f"difference {diff:+.3g} {iv}"
        )
        if math.isfinite(dlo) and (dhi < 0 or dlo > 0):
            winner = law if dhi < 0 else base
            verdict.update(winner=winner, separable=True)
            verdict["text"] = f"{head}; {winner} wins ({folds0.size} folds, {n} seeds)"
        else:
            if n_need is None:
                more = "no interval (too few seeds to bootstrap)" if not boot else "no estimate"
            elif n_need <= n:
                more = (
                    "more seeds alone would not separate them: the spread over batch sizes "
                    "dominates (measure more batch sizes)"
                )
            else:
                more = f"about {n_need} seeds would separate them (now {n})"
            verdict["text"] = f"{head}; not separable at this scale: {more}"
    # --- the fall of lr* past its peak (paper's rule; interval conditional on the pair)
    cen_f = point.censored["further"]
    i_pk, i_ls, fall_why = fall_point(B, point.lr["further"], cen_f)
    fall: dict[str, Any] = {
        "target": cube.target,
        "b_peak": NAN if i_pk is None else float(B[i_pk]),
        "b_last": NAN if i_ls is None else float(B[i_ls]),
        "factor": NAN,
        "lo": NAN,
        "hi": NAN,
        "falls": False,
        "censored": [f"{int(b)}:{c}" for b, c in zip(B, cen_f) if c in ("low", "high")],
    }
    if i_pk is not None and i_ls is not None and i_ls != i_pk:
        lr_f = point.lr["further"]
        fall["factor"] = float(lr_f[i_pk] / lr_f[i_ls])

        def log_fall(idx):
            v = at(idx).lr["further"]
            ok = v[i_pk] > 0 and v[i_ls] > 0  # False for NaN (no optimum in this resample)
            return float(np.log(v[i_pk]) - np.log(v[i_ls])) if ok else NAN

        lo, hi, _ = interval(log_fall, n)
        if math.isfinite(lo) and math.isfinite(hi):
            # the floors of the two optima (module docstring): the union with the range of f
            # they allow around the point estimate
            lf = math.log(fall["factor"])
            (dl_p, dh_p), (dl_l, dh_l) = reach.get(i_pk, (0.0, 0.0)), reach.get(i_ls, (0.0, 0.0))
            lo, hi = min(lo, lf - dl_p - dh_l), max(hi, lf + dh_p + dl_l)
            fall["lo"], fall["hi"] = math.exp(lo), math.exp(hi)
            fall["falls"] = bool(fall["lo"] > 1)
    if n_boot == 0:
        no_iv = "no bootstrap asked for"
    elif n < MIN_BOOT_SEEDS:
        no_iv = f"{n} seeds, {MIN_BOOT_SEEDS} needed for one"
    else:
        no_iv = "too few resamples had an optimum at both batch sizes"
    fall["suggested"] = suggested_fall([r for r in best if r["rule"] == "further"])
    fall["text"] = _fall_text(cube.target, fall, fall_why, no_iv)
    return TargetAnalysis(cube.target, best, b_crit, loo, verdict, point, cube, E0, folds0, fall)


def _draws(n: int, n_boot: int, seed: int) -> list[NDArray[np.int64]]:
    """The seed resamples :func:`theory.stats.bootstrap_interval` draws with this seed."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(n_boot)]


# ----------------------------------------------------------------------------- the sweep


def targets_of(rows: Iterable[Mapping[str, Any]]) -> list[float]:
    """The distinct targets in the table, descending (training order)."""
    return sorted({float(r["target"]) for r in rows}, reverse=True)


def edges_to_extend(
    rows: Sequence[Mapping[str, Any]],
    *,
    rules: Sequence[str] = ("further",),
    min_ok_frac: float = 0.5,
) -> dict[int, set[str]]:
    """Per batch size, the grid edges ("low", "high") where a rule's optimum is censored at
    some target (point estimates on all seeds): where :func:`validate.sweep.run_sweep`
    extends the lr grid.

    Examples:
      >>> rows = [dict(batch_size=4, lr=lr, seed=0, target=1.0, reached=True, steps=10,
      ...              loss_reduction=lr) for lr in (1e-3, 2e-3, 4e-3)]
      >>> edges_to_extend(rows)
      {4: {'high'}}
    """
    out: dict[int, set[str]] = {}
    for _cube, _rule, i, p in _point_peaks(rows, rules, min_ok_frac):
        if p is not None and p.censored:
            out.setdefault(int(_cube.B[i]), set()).add(p.censored)
    return out


def _point_peaks(
    rows: Sequence[Mapping[str, Any]], rules: Sequence[str], min_ok_frac: float
) -> Iterator[tuple[Cube, str, int, Peak | None]]:
    """``(cube, rule, batch-size index, optimum on all seeds)`` per target, rule, batch size."""
    for t in targets_of(rows):
        cube = Cube(rows, t)
        for rule in rules:
            y = curves(cube, rule, None, min_ok_frac=min_ok_frac)
            for i in range(cube.B.size):
                tried = cube.tried[i]
                yield cube, rule, i, local_peak(cube.lrs[tried], y[i, tried])


def log_widths(
    rows: Sequence[Mapping[str, Any]],
    *,
    rules: Sequence[str] = ("further",),
    n_boot: int = 200,
    level: float = LEVEL,
    seed: int = 0,
    min_ok_frac: float = 0.5,
) -> dict[int, float]:
    """Per batch size, how unsure its optimum is: the widest ln(hi / lo) of the seed-bootstrap
    interval of lr* over the targets and ``rules`` where that optimum is interior (the rule
    :func:`validate.sweep.run_sweep` adds seeds by).

    Each batch size is resampled over its own seeds (those with a run there), at the expanded
    level (:func:`expanded_level`) of that many seeds; ``inf`` where it has fewer than 2 seeds or
    no finite interval. A batch size whose optima are all censored or absent is left out (the
    grid extension's business, not more seeds').

    Examples:
      >>> rows = [dict(batch_size=4, lr=lr, seed=s, target=1.0, reached=True, steps=10,
      ...              loss_reduction=-(math.log(lr) + 6.2) ** 2 + 0.01 * s * (lr > 2e-3))
      ...         for lr in (1e-3, 2e-3, 4e-3) for s in range(4)]
      >>> w = log_widths(rows)
      >>> list(w), bool(0 <= w[4] < 1)
      ([4], True)
    """
    out: dict[int, float] = {}
    for cube, rule, i, p in _point_peaks(rows, rules, min_ok_frac):
        if p is None or p.censored:
            continue
        own = np.flatnonzero(cube.present[i].any(0))
        w = math.inf
        if own.size >= 2 and n_boot:

            def stat(
                idx: NDArray[np.int64],
                c: Cube = cube,
                rule: str = rule,
                i: int = i,
                own: NDArray[np.int64] = own,
            ) -> float:
                tried = c.tried[i]
                y = curves(c, rule, own[idx], min_ok_frac=min_ok_frac)[i, tried]
                q = local_peak(c.lrs[tried], y)
                return math.log(q.x) if q is not None else NAN

            lo, hi, _ = bootstrap_interval(
                stat, own.size, n_boot=n_boot, level=expanded_level(level, own.size), seed=seed
            )
            if math.isfinite(lo) and math.isfinite(hi):
                w = hi - lo
        b = int(cube.B[i])
        out[b] = max(out.get(b, 0.0), w)
    return out
