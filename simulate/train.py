"""Multi-step training on the noisy quadratic, vectorised over runs (batch size, lr, seed).

Model. With x = θ − θ*, the loss is L = ½ xᵀ H x (H = diag(h) + U Uᵀ) and a batch of B examples
gives the stochastic gradient

    g = H x + s(x) · σ ⊙ z / √B,        z ~ N(0, I_d),

with ``noise="constant"``: s = 1 (the per-example noise does not depend on the position, as in
McCandlish et al.'s model; the true gradient shrinks as the loss falls, so the noise scale
B_noise *grows* along the trajectory — the paper's second conclusion), or ``noise="scaled"``:
s = √(L/L0) (noise variance proportional to the loss; with H ∝ I the noise scale then stays
constant, which makes the steps–examples law checkable, see
:func:`expected_steps_isotropic`). The start point solves H x0 = μ, so the first gradient equals
the problem's μ and the one-step theory at step 0 is the problem's; ``start_scale`` = a starts
at a·H⁻¹μ instead (first gradient aμ, noise unchanged: B_noise at the start is the problem's
divided by a², and the loss fraction 1/a² is where the gradient is back to μ's size).

Updates (ε the learning rate):
``sgd``  x ← x − ε g;   ``sign``  x ← x − ε sign(g) (Adam with β1 = β2 = 0, ε_Adam = 0);
``adam`` m ← β1 m + (1−β1) g, v ← β2 v + (1−β2) g², x ← x − ε m̂/(√v̂ + ε_Adam) (bias-corrected).

Protocol (the paper's): each run trains until its loss first falls to each target
(``targets``, fractions of L0, descending), recording the steps S and examples E = B·S, then keeps
going ``further_steps`` steps and records the loss reduction after each target. A run stops once
its last target's reduction is recorded, when it diverges (non-finite loss or L > blowup·L0:
recorded, never raised) or at ``max_steps`` (targets not reached are recorded as such).

All runs advance together as one (R, d) array program; finished runs are dropped from the arrays
(compaction), so batch sizes that need few steps stop costing anything.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from numpy.typing import NDArray

from simulate.problems import Problem
from theory import efficiency, sign
from theory._checks import as_batch_sizes, as_vector

OPTIMIZERS = ("sgd", "sign", "adam")
NOISES = ("constant", "scaled")


@dataclass(frozen=True)
class TrainConfig:
    """Flat configuration of one grid (typed scalars; the *why* beside each).

    ``optimizer``, ``targets`` and ``max_steps`` have no default: they define the experiment,
    and the command that runs it (``surgelab simulate train`` / ``momentum`` / ``bench``)
    chooses them. The rest are the optimisers' conventional constants.
    """

    optimizer: str  # sign = Adam(β1=β2=0): the update the surge theory covers
    targets: tuple[float, ...]  # fractions of L0, descending
    max_steps: int  # budget per run; runs short of a target are "not reached"
    beta1: float = 0.9  # Adam only
    beta2: float = 0.999  # Adam only
    adam_eps: float = 1e-12  # Adam only; tiny so that β=0 Adam is exactly sign-SGD
    further_steps: int = 10  # the paper's protocol (CNN: 10 further steps)
    noise: str = "constant"  # constant per-example noise, or ∝ √(L/L0) ("scaled")
    blowup: float = 1e3  # L > blowup·L0 counts as diverged
    keep_positions: bool = True  # store x at each target (one-step theory along the path)
    dtype: str = "float64"  # float32 halves memory traffic (bench); losses in float64
    start_scale: float = 1.0  # x0 = start_scale·H⁻¹μ: start further out, gradient ×scale

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer=}")
        if self.noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}; got {self.noise=}")
        t = tuple(float(v) for v in self.targets)
        if not t or any(not 0 < v < 1 for v in t) or any(a <= b for a, b in itertools.pairwise(t)):
            raise ValueError(
                f"targets must be fractions of L0 in (0, 1), strictly descending; "
                f"got targets={self.targets!r}"
            )
        object.__setattr__(self, "targets", t)
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {name}={v!r}")
        if not self.adam_eps >= 0:
            raise ValueError(f"adam_eps must be >= 0; got {self.adam_eps=}")
        for name in ("further_steps", "max_steps"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < (0 if name == "further_steps" else 1):
                raise ValueError(
                    f"{name} must be a non-negative integer (max_steps >= 1); got {name}={v!r}"
                )
        if not self.start_scale > 0:
            raise ValueError(f"start_scale must be > 0; got {self.start_scale=}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32'; got {self.dtype=}")
        if not self.blowup > 1:
            raise ValueError(f"blowup must be > 1; got {self.blowup=}")


@dataclass
class GridResult:
    """Per-run records of one grid (arrays over runs r and targets k).

    ``steps[r, k]`` is −1 when target k was not reached; ``loss_after[r, k]`` is NaN when the
    run stopped (diverged / budget) before ``further_steps`` more steps. ``x_reach[r, k]`` is the
    position at which target k was first reached (NaN if never), float32.
    """

    B: NDArray[np.float64]
    lr: NDArray[np.float64]
    seed: NDArray[np.int64]
    targets: NDArray[np.float64]  # absolute losses
    loss0: float
    steps: NDArray[np.int64]
    loss_at: NDArray[np.float64]
    loss_after: NDArray[np.float64]
    diverged: NDArray[np.bool_]
    steps_run: NDArray[np.int64]
    final_loss: NDArray[np.float64]
    x_reach: NDArray[np.float32] | None = None
    config: dict = field(default_factory=dict)

    @property
    def reached(self) -> NDArray[np.bool_]:
        return self.steps >= 0

    @property
    def reduction(self) -> NDArray[np.float64]:
        """Loss reduction over the ``further_steps`` steps after each target (the protocol)."""
        return self.loss_at - self.loss_after

    def rows(self) -> list[dict]:
        """Tidy table: one row per (B, lr, seed, target)."""
        out = []
        for r in range(self.B.size):
            for k, tgt in enumerate(self.targets):
                s = int(self.steps[r, k])
                out.append(
                    {
                        "B": float(self.B[r]),
                        "lr": float(self.lr[r]),
                        "seed": int(self.seed[r]),
                        "target_index": k,
                        "target": float(tgt),
                        "target_frac": tgt / self.loss0,
                        "reached": s >= 0,
                        "diverged": bool(self.diverged[r]),
                        "steps": s if s >= 0 else None,
                        "examples": float(self.B[r]) * s if s >= 0 else None,
                        "loss_at_target": _f(self.loss_at[r, k]),
                        "loss_after": _f(self.loss_after[r, k]),
                        "reduction": _f(self.loss_at[r, k] - self.loss_after[r, k]),
                        "steps_run": int(self.steps_run[r]),
                        "final_loss": _f(self.final_loss[r]),
                    }
                )
        return out

    @staticmethod
    def concat(parts: Sequence[GridResult]) -> GridResult:
        if not parts:
            raise ValueError("parts must not be empty")
        cat = {
            f: np.concatenate([getattr(p, f) for p in parts])
            for f in (
                "B",
                "lr",
                "seed",
                "steps",
                "loss_at",
                "loss_after",
                "diverged",
                "steps_run",
                "final_loss",
            )
        }
        xr = (
            np.concatenate([p.x_reach for p in parts])
            if all(p.x_reach is not None for p in parts)
            else None
        )
        return GridResult(
            targets=parts[0].targets,
            loss0=parts[0].loss0,
            x_reach=xr,
            config=parts[0].config,
            **cat,
        )


def _f(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


class _Cast:
    """The problem's h, U, W in a lower precision, for :func:`run_runs` with float32."""

    def __init__(self, problem: Problem, dt: np.dtype) -> None:
        self.h, self.U, self.W = (a.astype(dt) for a in (problem.h, problem.U, problem.W))

    def hvp(self, x: NDArray) -> NDArray:
        out = x * self.h
        if self.U.shape[1]:
            out = out + (x @ self.U) @ self.U.T
        return out


def start_point(problem: Problem) -> NDArray[np.float64]:
    """x0 = H⁻¹ μ: the first true gradient H x0 equals the problem's μ (O(d) when H is diagonal)."""
    if problem.U.shape[1] == 0 and np.all(problem.h > 0):
        return problem.mu / problem.h
    return np.linalg.solve(problem.H, problem.mu)


def run_runs(
    problem: Problem,
    B: NDArray,
    lr: NDArray,
    seed_index: NDArray,
    config: TrainConfig,
    rng_key: Sequence[int],
    progress: Callable[[int], None] | None = None,
) -> GridResult:
    """Train R runs (one array program) from x0; run r has batch size B[r] and rate lr[r].

    Args:
      problem: the quadratic.  B, lr, seed_index: (R,) per-run batch size, learning rate and
      replicate label.  config: :class:`TrainConfig`.  rng_key: entropy for
      ``np.random.default_rng`` (e.g. ``[seed, chunk]``): the same key gives the same runs.
      progress: called with the number of steps just taken (for a progress bar).

    Returns:
      :class:`GridResult`.
    """
    B = np.asarray(B, dtype=np.float64)
    lr = np.asarray(lr, dtype=np.float64)
    seed_index = np.asarray(seed_index, dtype=np.int64)
    R = B.size
    if lr.shape != (R,) or seed_index.shape != (R,):
        raise ValueError(
            f"B, lr and seed_index must have the same (R,) shape; "
            f"got {B.shape}, {lr.shape}, {seed_index.shape}"
        )
    as_batch_sizes(B, "B")
    as_vector(lr, "lr", positive=True)
    rng = np.random.default_rng(list(rng_key))
    cfg = config
    x0 = cfg.start_scale * start_point(problem)
    L0 = float(0.5 * x0 @ problem.hvp(x0))
    targets = np.asarray(cfg.targets) * L0
    T, d, K = targets.size, problem.d, cfg.further_steps

    steps = np.full((R, T), -1, dtype=np.int64)
    loss_at = np.full((R, T), np.nan)
    loss_after = np.full((R, T), np.nan)
    diverged = np.zeros(R, dtype=bool)
    steps_run = np.zeros(R, dtype=np.int64)
    final_loss = np.full(R, np.nan)
    x_reach = np.full((R, T, d), np.nan, dtype=np.float32) if cfg.keep_positions else None

    act = np.arange(R)
    dt = np.dtype(cfg.dtype)
    x = np.tile(x0, (R, 1)).astype(dt)
    noise_std = (problem.sigma[None, :] / np.sqrt(B)[:, None]).astype(dt)
    hp = problem if dt == np.float64 else _Cast(problem, dt)
    has_w = problem.W.shape[1] > 0
    adam = cfg.optimizer == "adam"
    if adam:
        m = np.zeros_like(x)
        v = np.zeros_like(x)
    a_lr = lr[:, None].astype(dt)
    for t in range(cfg.max_steps + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            Hx = hp.hvp(x)
            loss = 0.5 * np.einsum("rd,rd->r", x, Hx, dtype=np.float64)
        bad = ~np.isfinite(loss) | (loss > cfg.blowup * L0)
        st = steps[act]
        new = (st < 0) & (loss[:, None] <= targets[None, :]) & ~bad[:, None]
        if new.any():
            rr, kk = np.nonzero(new)
            steps[act[rr], kk] = t
            loss_at[act[rr], kk] = loss[rr]
            if x_reach is not None:
                x_reach[act[rr], kk] = x[rr]
            st = steps[act]
        after = (st >= 0) & (t - st == K)
        if after.any():
            rr, kk = np.nonzero(after)
            loss_after[act[rr], kk] = loss[rr]
        done = bad | ((st[:, -1] >= 0) & (t - st[:, -1] >= K)) | (t == cfg.max_steps)
        if done.any():
            gone = act[done]
            diverged[gone] = bad[done]
            steps_run[gone] = t
            final_loss[gone] = loss[done]
            keep = ~done
            act, x, Hx, loss = act[keep], x[keep], Hx[keep], loss[keep]
            noise_std, a_lr = noise_std[keep], a_lr[keep]
            if adam:
                m, v = m[keep], v[keep]
        if act.size == 0 or t == cfg.max_steps:
            break
        z = rng.standard_normal(x.shape, dtype=dt)
        scale = (
            noise_std
            if cfg.noise == "constant"
            else noise_std * np.sqrt(loss / L0).astype(dt)[:, None]
        )
        g = Hx + scale * z
        if has_w:
            zw = rng.standard_normal((x.shape[0], problem.W.shape[1]), dtype=dt)
            w_scale = 1.0 / np.sqrt(B[act])[:, None]
            if cfg.noise == "scaled":
                w_scale = w_scale * np.sqrt(loss / L0)[:, None]
            g = g + (zw * w_scale.astype(dt)) @ hp.W.T
        if cfg.optimizer == "sgd":
            upd = g
        elif cfg.optimizer == "sign":
            upd = np.sign(g)
        else:
            m = cfg.beta1 * m + (1.0 - cfg.beta1) * g
            v = cfg.beta2 * v + (1.0 - cfg.beta2) * g * g
            mh = m / (1.0 - cfg.beta1 ** (t + 1))
            vh = v / (1.0 - cfg.beta2 ** (t + 1))
            upd = mh / (np.sqrt(vh) + cfg.adam_eps)
        with np.errstate(over="ignore", invalid="ignore"):
            x = x - a_lr * upd
        if progress is not None:
            progress(1)
    return GridResult(
        B=B,
        lr=lr,
        seed=seed_index,
        targets=targets,
        loss0=L0,
        steps=steps,
        loss_at=loss_at,
        loss_after=loss_after,
        diverged=diverged,
        steps_run=steps_run,
        final_loss=final_loss,
        x_reach=x_reach,
        config=asdict(cfg),
    )


def grid_runs(batch_sizes: Iterable[float], lrs: Iterable[float], n_seeds: int):
    """The (B, lr, seed) product as three flat (R,) arrays, B slowest."""
    b = np.atleast_1d(as_batch_sizes(list(batch_sizes), "batch_sizes"))
    e = as_vector(list(lrs), "lrs", positive=True)
    if not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer; got n_seeds={n_seeds!r}")
    BB, EE, SS = np.meshgrid(b, e, np.arange(n_seeds), indexing="ij")
    return BB.ravel(), EE.ravel(), SS.ravel().astype(np.int64)


def run_grid(
    problem: Problem,
    batch_sizes: Iterable[float],
    lrs: Iterable[float],
    n_seeds: int,
    config: TrainConfig,
    seed: int = 0,
    *,
    chunk_by_batch: bool = True,
    done: dict[int, GridResult] | None = None,
    on_chunk: Callable[[int, GridResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> GridResult:
    """The full (B, lr, seed) grid, one chunk per batch size (or one chunk for everything).

    Chunk j uses the random stream ``default_rng([seed, j])``, so a chunk's result does not
    depend on which other chunks ran: ``done`` (chunk index → result, e.g. read back from an
    interrupted run folder) are reused as they are, and ``on_chunk(j, result)`` is called after
    each newly computed chunk (where the caller stores it). Pure: no I/O here.
    """
    b = np.atleast_1d(as_batch_sizes(list(batch_sizes), "batch_sizes"))
    lr_list = list(lrs)
    done = {} if done is None else done
    groups = [[bb] for bb in b] if chunk_by_batch else [list(b)]
    parts = []
    for j, grp in enumerate(groups):
        if j in done:
            parts.append(done[j])
            continue
        Bs, Es, Ss = grid_runs(grp, lr_list, n_seeds)
        res = run_runs(problem, Bs, Es, Ss, config, [seed, j], progress=progress)
        if on_chunk is not None:
            on_chunk(j, res)
        parts.append(res)
    return GridResult.concat(parts)


# ---------------------------------------------------------------- analysis (pure, on results)


def per_cell(res: GridResult, k: int) -> dict[str, NDArray]:
    """Seed-averaged statistics per (B, lr) cell for target k.

    ``steps`` is the mean over seeds if *every* seed reached the target (else NaN);
    ``reduction`` the mean over seeds that recorded one; ``diverged`` the fraction diverged.
    """
    Bu, lu = np.unique(res.B), np.unique(res.lr)
    shape = (Bu.size, lu.size)
    out = {
        "B": Bu,
        "lr": lu,
        "steps": np.full(shape, np.nan),
        "steps_se": np.full(shape, np.nan),
        "reduction": np.full(shape, np.nan),
        "reduction_se": np.full(shape, np.nan),
        "diverged": np.zeros(shape),
        "reached": np.zeros(shape),
    }
    ib = np.searchsorted(Bu, res.B)
    il = np.searchsorted(lu, res.lr)
    for i in range(Bu.size):
        for j in range(lu.size):
            sel = (ib == i) & (il == j)
            if not sel.any():
                continue
            s = res.steps[sel, k]
            red = res.reduction[sel, k]
            out["diverged"][i, j] = res.diverged[sel].mean()
            out["reached"][i, j] = (s >= 0).mean()
            if np.all(s >= 0):
                out["steps"][i, j] = s.mean()
                out["steps_se"][i, j] = s.std(ddof=1) / math.sqrt(s.size) if s.size > 1 else 0.0
            ok = np.isfinite(red)
            if ok.any():
                out["reduction"][i, j] = red[ok].mean()
                out["reduction_se"][i, j] = (
                    red[ok].std(ddof=1) / math.sqrt(ok.sum()) if ok.sum() > 1 else 0.0
                )
    return out


def best_lrs(res: GridResult, k: int, by: str = "steps") -> dict[str, NDArray]:
    """Best learning rate per batch size for target k.

    ``by="steps"``: the lr minimising the seed-mean steps to the target (for the S–E fit);
    ``by="reduction"``: the lr maximising the loss reduction after it (the paper's protocol).
    NaN where no lr qualifies.
    """
    if by not in ("steps", "reduction"):
        raise ValueError(f"by must be 'steps' or 'reduction'; got {by=}")
    c = per_cell(res, k)
    val = c["steps"] if by == "steps" else -c["reduction"]
    nb = c["B"].size
    best = np.full(nb, np.nan)
    S = np.full(nb, np.nan)
    red = np.full(nb, np.nan)
    for i in range(nb):
        if np.all(np.isnan(val[i])):
            continue
        j = int(np.nanargmin(val[i]))
        best[i], S[i], red[i] = c["lr"][j], c["steps"][i, j], c["reduction"][i, j]
    return {"B": c["B"], "lr": best, "steps": S, "examples": c["B"] * S, "reduction": red}


def fit_targets(res: GridResult) -> list[dict]:
    """Eq. 22 fit per target at each batch size's step-minimising lr: B_noise and S_min."""
    fits = []
    for k in range(res.targets.size):
        bl = best_lrs(res, k, "steps")
        ok = np.isfinite(bl["steps"])
        row = {
            "target_index": k,
            "target": float(res.targets[k]),
            "target_frac": float(res.targets[k] / res.loss0),
            "n_points": int(ok.sum()),
            "b_noise_fit": math.nan,
            "s_min_fit": math.nan,
        }
        if ok.sum() >= 2:
            bn, sm = efficiency.fit_b_noise(bl["steps"][ok], bl["examples"][ok])
            row.update(b_noise_fit=bn, s_min_fit=sm)
        fits.append(row)
    return fits


def one_step_along(problem: Problem, res: GridResult, config: TrainConfig) -> list[dict]:
    """One-step noise scales where each target is reached, from the mean trajectory.

    For target k and each batch size B: x̄_B = mean over seeds of the position where the runs at
    B's step-minimising lr first reached the target (the seed average removes the noise-driven
    part of x); the true gradient there is G = H x̄_B. From it: the SGD noise scale
    tr(HΣ)/GᵀHG (McCandlish), B_simple = tr Σ/|G|², and Theorem 3's B_noise for sign updates
    (theory.sign.surge_params with μ = G; inf where S_off ≤ 0), with Σ scaled by L/L0 for
    ``noise="scaled"``. Reported: the median over batch sizes of each.
    """
    if res.x_reach is None:
        raise ValueError("res has no positions: run with TrainConfig(keep_positions=True)")
    # a diagonal problem (no U, W, examples) in O(d): never build the dense d × d matrices
    diagonal = problem.U.shape[1] == 0 and problem.W.shape[1] == 0 and problem.examples is None
    H = None if diagonal else problem.H
    var0 = problem.sigma**2 if diagonal else np.diag(problem.Sigma)
    tr_h_sig0 = float(np.sum(problem.h * var0)) if diagonal else float(np.sum(H * problem.Sigma))
    out = []
    for k in range(res.targets.size):
        bl = best_lrs(res, k, "steps")
        scale = float(res.targets[k] / res.loss0) if config.noise == "scaled" else 1.0
        var = var0 * scale
        vals: dict[str, list[float]] = {"sgd": [], "simple": [], "sign": []}
        for b, e in zip(bl["B"], bl["lr"]):
            if not np.isfinite(e):
                continue
            sel = (res.B == b) & (res.lr == e) & (res.steps[:, k] >= 0)
            G = problem.hvp(np.mean(res.x_reach[sel, k].astype(np.float64), axis=0))
            vals["sgd"].append(tr_h_sig0 * scale / float(G @ problem.hvp(G)))
            vals["simple"].append(float(np.sum(var)) / float(G @ G))
            if not np.all(G != 0):
                vals["sign"].append(math.inf)
            elif diagonal:  # S_off = 0: no peak (Theorem 3)
                sd = np.sqrt(var)
                vals["sign"].append(
                    sign.surge_params_from_stats(
                        float(problem.h.sum()), 0.0, float(np.sum(G**2 / sd))
                    )[1]
                )
            else:
                vals["sign"].append(sign.surge_params(G, np.sqrt(var), H)[1])
        med = {n: float(np.median(v)) if v else math.nan for n, v in vals.items()}
        out.append(
            {
                "target_index": k,
                "target_frac": float(res.targets[k] / res.loss0),
                "b_noise_sgd_1step": med["sgd"],
                "b_simple_1step": med["simple"],
                "b_noise_sign_1step": med["sign"],
            }
        )
    return out


def surge_fit(bl: dict[str, NDArray], b_noise: float) -> dict[str, float]:
    """ε_max of the Adam surge curve (Eq. 23) and the SGD-form curves α = 1, ½ (Eq. 24)."""
    ok = np.isfinite(bl["lr"])
    if ok.sum() < 1 or not (np.isfinite(b_noise) and b_noise > 0):
        return {"eps_max_adam": math.nan, "eps_max_sgd1": math.nan, "eps_max_sgd05": math.nan}
    b, e = bl["B"][ok], bl["lr"][ok]
    return {
        "eps_max_adam": efficiency.eps_max_adam(b, e, b_noise),
        "eps_max_sgd1": efficiency.eps_max_sgd(b, e, b_noise, 1.0),
        "eps_max_sgd05": efficiency.eps_max_sgd(b, e, b_noise, 0.5),
    }


def expected_steps_isotropic(problem: Problem, B: float, lr: float, target_frac: float) -> float:
    """Steps to reach L ≤ target·L0 for SGD on H = hI with ``noise="scaled"``, in expectation.

    With Σ(x) = diag(σ²)·L/L0 and H = hI, E|x_{t+1}|² = ρ E|x_t|² exactly, where
    ρ(ε, B) = (1 − εh)² + ε² h² B_simple / B (B_simple = tr Σ0/|G0|²), so the expected loss is
    L0 ρ^t and S = ⌈log(1/target) / log(1/ρ)⌉. ρ is minimised at ε = (1/h)/(1 + B_simple/B):
    McCandlish's law, here exact for the whole trajectory.
    """
    h = problem.h
    if problem.U.shape[1] or problem.W.shape[1] or np.ptp(h) != 0:
        raise ValueError("problem must be isotropic (H = hI, no U, no W) for this closed form")
    hh = float(h[0])
    bs = float(np.sum(problem.sigma**2) / (problem.mu @ problem.mu))
    rho = (1.0 - lr * hh) ** 2 + lr**2 * hh**2 * bs / B
    if rho >= 1.0:
        return math.inf
    return float(math.ceil(math.log(1.0 / target_frac) / math.log(1.0 / rho) - 1e-12))


def analyse(
    problem: Problem, res: GridResult, config: TrainConfig, protocol_target: int = 0
) -> tuple[list[dict], list[dict], list[dict], dict]:
    """Everything ``simulate train`` reports, as tables (plots read only these).

    Returns:
      ``(cells, best, fits, summary)``:
      ``cells`` one row per (target, B, lr): seed-mean steps, reduction, fractions diverged /
      reached;  ``best`` one row per (target, B): step-minimising lr (for the S–E fit) and
      reduction-maximising lr (the paper's protocol), with the fitted curves evaluated there
      (Adam surge curve, Eq. 13 with ε_max from Eq. 23; SGD forms α = 1, ½, Eq. 24);
      ``fits`` one row per target: Eq. 22 fit B_noise, S_min, and the one-step noise scales
      along the mean trajectory;  ``summary`` the headline numbers.
    """
    cells, best, fits = [], [], []
    fit_rows = fit_targets(res)
    one = (
        one_step_along(problem, res, config) if res.x_reach is not None else [{} for _ in fit_rows]
    )
    for k, fr in enumerate(fit_rows):
        c = per_cell(res, k)
        for i, bb in enumerate(c["B"]):
            for j, e in enumerate(c["lr"]):
                cells.append(
                    {
                        "target_index": k,
                        "target_frac": fr["target_frac"],
                        "B": float(bb),
                        "lr": float(e),
                        "steps_mean": _f(c["steps"][i, j]),
                        "steps_se": _f(c["steps_se"][i, j]),
                        "reduction_mean": _f(c["reduction"][i, j]),
                        "reduction_se": _f(c["reduction_se"][i, j]),
                        "fraction_reached": float(c["reached"][i, j]),
                        "fraction_diverged": float(c["diverged"][i, j]),
                    }
                )
        bs, br = best_lrs(res, k, "steps"), best_lrs(res, k, "reduction")
        bn = fr["b_noise_fit"]
        curves = surge_fit(br, bn)
        for i, bb in enumerate(bs["B"]):
            row = {
                "target_index": k,
                "target_frac": fr["target_frac"],
                "B": float(bb),
                "lr_best_steps": _f(bs["lr"][i]),
                "steps_best": _f(bs["steps"][i]),
                "examples_best": _f(bs["examples"][i]),
                "lr_best_reduction": _f(br["lr"][i]),
                "reduction_best": _f(br["reduction"][i]),
                "lr_fit_adam": math.nan,
                "lr_fit_sgd1": math.nan,
                "lr_fit_sgd05": math.nan,
            }
            if math.isfinite(curves["eps_max_adam"]):
                row["lr_fit_adam"] = float(sign.surge_lr(bb, curves["eps_max_adam"], bn))
                row["lr_fit_sgd1"] = float(
                    efficiency.sgd_form_lr(bb, curves["eps_max_sgd1"], bn, 1.0)
                )
                row["lr_fit_sgd05"] = float(
                    efficiency.sgd_form_lr(bb, curves["eps_max_sgd05"], bn, 0.5)
                )
            best.append({kk: _f(v) if isinstance(v, float) else v for kk, v in row.items()})
        fits.append({**fr, **{kk: v for kk, v in one[k].items() if kk not in fr}, **curves})
    f0 = fits[protocol_target]
    bfin = [f["b_noise_fit"] for f in fits]
    ok = [v for v in bfin if math.isfinite(v) and v > 0]
    peaks = []
    lu = np.unique(res.lr)
    q = float(np.exp(np.mean(np.diff(np.log(lu))))) if lu.size > 1 else math.inf
    for k in range(res.targets.size):
        bl = best_lrs(res, k, "steps")
        has = np.isfinite(bl["lr"])
        if has.sum() >= 3:
            i = int(np.nanargmax(bl["lr"]))
            last = int(np.nonzero(has)[0][-1])
            ratio = float(bl["lr"][last] / bl["lr"][i])
            interior = bool(int(np.nonzero(has)[0][0]) < i < last)
            # a fall: the largest batch's best lr at least half a grid cell below the maximum
            peaks.append(
                {
                    "b_at_max_best_lr": float(bl["B"][i]),
                    "last_over_max_best_lr": ratio,
                    "falls": bool(interior and ratio < 1.0 / math.sqrt(q)),
                }
            )
        else:
            peaks.append({})
    summary = {
        "problem": problem.name,
        "d": problem.d,
        "optimizer": config.optimizer,
        "best_lr_steps_shape_per_target": peaks,
        "noise": config.noise,
        "n_runs": int(res.B.size),
        "n_diverged": int(res.diverged.sum()),
        "n_not_reached_first_target": int((res.steps[:, 0] < 0).sum() - res.diverged.sum()),
        "targets_frac": [f["target_frac"] for f in fits],
        "b_noise_fit_per_target": bfin,
        "s_min_fit_per_target": [f["s_min_fit"] for f in fits],
        "b_noise_sgd_1step_per_target": [f.get("b_noise_sgd_1step", math.nan) for f in fits],
        "b_noise_sign_1step_per_target": [f.get("b_noise_sign_1step", math.nan) for f in fits],
        "b_noise_grows_as_loss_falls": bool(
            len(ok) == len(bfin) and len(ok) >= 2 and all(a < b for a, b in itertools.pairwise(ok))
        ),
        "protocol_target_frac": f0["target_frac"],
        "eps_max_adam": f0["eps_max_adam"],
        "eps_max_sgd1": f0["eps_max_sgd1"],
        "eps_max_sgd05": f0["eps_max_sgd05"],
        "start_theory": problem.theory(),
    }
    return cells, best, fits, summary
