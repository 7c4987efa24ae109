"""``surgelab simulate <command>``: quadratic models simulated exactly, checked against theory.

Commands (each writes a run folder: config.json, meta.json, tidy CSV tables, summary.json,
figures drawn from the tables):

  surge        one-step Monte Carlo ε_opt vs Theorems 2-4 and the SGD law      (surge.csv)
  assumptions  correlated noise and finite datasets: how far the MC optimum moves (assumptions.csv)
  train        multi-step SGD / sign / Adam grid on the quadratic; S-E fits, heatmap (runs.csv ...)
  momentum     best lr vs B after K steps from Adam's steady state and over a whole run, vs Su
               (β1 = 0.9 vs β1 = 0 on a diagonal Hessian)                      (momentum.csv)
  bench        vectorised multi-step grid vs a per-run Python loop                 (bench.json)

Defaults are small (each finishes in about a minute or less on 2 CPU cores); flags scale up.
Every size is bounded up front by what the machine can hold. ``train`` is resumable: rerun
with the same ``--out`` and flags, and finished batch sizes are skipped
(:mod:`surgelab.chunks`).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from surgelab.cli import Command, Stage
from surgelab.cmd_nqm import NQM
from surgelab.config import Config, ConfigError, opt
from surgelab.limits import check_memory, check_work
from surgelab.rundir import RunDir

#: the most elementary updates (sample·coordinate·batch size·column, or run·step·coordinate·
#: column) one command may plan: ~3 hours of numba on two cores, seconds on a GPU
MAX_WORK = 1e13

#: ``train``: dense H with condition number 100 needs many steps to reach each target at every
#: batch size (used when --problem-kw is not given)
TRAIN_PRESET_KW: dict[str, dict[str, float]] = {"dense": {"cond": 100.0, "signal": 4.0}}


# ---------------------------------------------------------------------------------------------
# the problem every command but bench simulates


def parse_kw(text: str) -> dict[str, float | int]:
    """``"cond=100,signal=4"`` → {"cond": 100, "signal": 4.0} (a preset's keyword arguments).

    Raises:
      ConfigError: naming ``--problem-kw``.
    """
    out: dict[str, float | int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            raise ConfigError("problem_kw", f"expects key=value pairs, e.g. cond=100; got {part!r}")
        try:
            f = float(v)
        except ValueError:
            raise ConfigError(
                "problem_kw", f"value of {k.strip()!r} must be a number; got {v!r}"
            ) from None
        if not math.isfinite(f):
            raise ConfigError("problem_kw", f"value of {k.strip()!r} must be finite; got {v!r}")
        out[k.strip().replace("-", "_")] = int(f) if f.is_integer() and "." not in v else f
    return out


@functools.lru_cache(maxsize=4)
def _build(name: str, seed: int, kw: tuple[tuple[str, Any], ...]):
    from simulate import problems

    return problems.make(name, seed, **dict(kw))


@dataclass(frozen=True)
class ProblemConfig(Config):
    """The quadratic problem: a named preset, its keywords, dimension and seed."""

    problem: Literal[
        "surge", "dense", "diagonal", "negative-soff", "correlated", "finite", "nqm"
    ] = opt("surge", "the quadratic preset (simulate.problems.PRESETS)")
    problem_kw: str | None = opt(
        None, "preset keyword arguments, e.g. 'cond=100,signal=4' (none: the command's own)"
    )
    d: int | None = opt(None, "dimension (none: the preset's default)", lo=2)
    seed: int = opt(0, "seed of the problem and of the Monte Carlo draws", lo=0, hi=2**63)

    def preset_kw(self) -> dict[str, Any]:
        """The keywords the preset is built with (after --problem-kw and --d)."""
        from simulate import problems

        if self.problem_kw is None:
            kw = dict(self.default_kw().get(self.problem, {}))
        else:
            kw = parse_kw(self.problem_kw)
        params = inspect.signature(problems.PRESETS[self.problem]).parameters
        unknown = sorted(set(kw) - set(params) | ({"seed"} & set(kw)))
        if unknown:
            allowed = ", ".join(p for p in params if p != "seed")
            raise ConfigError(
                "problem_kw",
                f"has key(s) {', '.join(unknown)} that preset {self.problem!r} does not take; "
                f"it takes {allowed}",
            )
        if self.d is not None:
            kw["d"] = self.d
        return kw

    def default_kw(self) -> dict[str, dict[str, Any]]:
        return {}

    def diagonal_ok(self) -> frozenset[str]:
        """Presets this command handles in O(d) memory (no dense d × d matrix)."""
        return frozenset()

    def dimension(self) -> int:
        from simulate import problems

        kw = self.preset_kw()
        if "d" in kw:
            return int(kw["d"])
        return int(inspect.signature(problems.PRESETS[self.problem]).parameters["d"].default)

    def n_examples(self) -> int:
        """N of a finite-dataset preset (0 for Gaussian noise)."""
        from simulate import problems

        if self.problem != "finite":
            return 0
        kw = self.preset_kw()
        default = inspect.signature(problems.finite).parameters["n_examples"].default
        return int(kw.get("n_examples", default))

    def build(self):
        """The problem (built once per config; a bad keyword is a ConfigError)."""
        kw = self.preset_kw()
        try:
            return _build(self.problem, self.seed, tuple(sorted(kw.items())))
        except (TypeError, ValueError) as exc:
            name = "d" if self.d is not None and str(exc).startswith("d ") else "problem_kw"
            raise ConfigError(name, f"does not fit preset {self.problem!r}: {exc}") from None

    def check(self) -> None:
        d = self.dimension()
        if d < 2:
            raise ConfigError("problem_kw", f"sets d={d}; it must be >= 2")
        n_ex = self.n_examples()
        # the dense d x d Hessian (and a few d x d temporaries of the closed forms); a finite
        # dataset's N x d examples
        per_d = d if self.problem in self.diagonal_ok() else d * d
        check_memory(8.0 * per_d * 6, "d", f"the d={d} problem")
        check_memory(8.0 * n_ex * d * 3, "problem_kw", f"the N={n_ex} examples of d={d}")
        self.build()


def _check_cuda(backend: str) -> None:
    if backend == "cuda":
        from kernels import _backend

        ok, why = _backend.cuda_status()
        if not ok:
            raise ConfigError("backend", f"cuda is not usable here: {why}; use --backend auto")


def _batch_grid(lo: float, hi: float, n: int):
    from simulate.surge import default_batch_sizes

    return default_batch_sizes(lo, hi, n)


# ---------------------------------------------------------------------------------------------
# configs


@dataclass(frozen=True)
class SurgeConfig(ProblemConfig):
    n_samples: int = opt(20000, "Monte Carlo samples per batch size", lo=2, hi=2**62)
    b_min: float = opt(1.0, "smallest batch size of the grid", lo=1)
    b_max: float = opt(8192.0, "largest batch size (capped at N for a finite dataset)", lo=1)
    n_batch: int = opt(25, "log-spaced batch sizes (rounded; >= 3 to locate a peak)", lo=3)
    backend: Literal["auto", "reference", "numba", "cuda"] = opt(
        "auto", "kernel backend (auto: cuda if usable, else numba)"
    )

    def check(self) -> None:
        if not self.b_min < self.b_max:
            raise ConfigError("b_max", f"({self.b_max:g}) must exceed --b-min ({self.b_min:g})")
        if self.n_batch > 10_000:
            raise ConfigError("n_batch", f"must be <= 10000; got {self.n_batch}")
        _check_cuda(self.backend)
        super().check()
        b = self.batch_sizes()
        if b.size < 3:
            raise ConfigError(
                "b_max",
                f"with --b-min {self.b_min:g} and --n-batch {self.n_batch} gives {b.size} "
                f"distinct batch size(s) up to {b[-1]:g}; the peak needs >= 3: widen --b-min … "
                f"--b-max",
            )
        _bound_one_step(self.build(), b.size, self.n_samples, self.backend, "n_samples")

    def batch_sizes(self):
        b_max = self.b_max
        n_ex = self.n_examples()
        if n_ex:
            b_max = min(b_max, n_ex)
        return _batch_grid(self.b_min, max(b_max, self.b_min), self.n_batch)


def _bound_one_step(prob, n_batch: int, n_samples: int, backend: str, arg: str) -> None:
    """Work and memory of one-step moments (sign and sgd) on ``prob``."""
    d = prob.d
    if prob.examples is not None:
        n_ex = prob.examples.shape[0]
        # per sample and B: the batch mean (N·d) and v H v with the dense H (d²), twice
        check_work(2.0 * n_samples * n_batch * (n_ex * d + d * d), MAX_WORK, arg, "flops")
        check_memory(32.0 * n_samples * n_batch + 8.0 * n_batch * n_ex * 4, arg, "the samples")
        return
    check_work(2.0 * n_samples * d * n_batch * (prob.rank + 1), MAX_WORK, arg, "sample updates")
    if backend == "reference":  # it keeps the per-sample values (n, nB) of both updates
        check_memory(32.0 * n_samples * n_batch, arg, "the per-sample values")


@dataclass(frozen=True)
class AssumptionsConfig(Config):
    rhos: tuple[float, ...] = opt(
        (0.1, 0.3, 0.6), "noise correlations of the correlated cases, in [0, 1)", lo=0
    )
    n_examples: tuple[int, ...] = opt(
        (256, 1024), "dataset sizes N of the finite-dataset cases (batch sizes 1 … N)", lo=3
    )
    d: int = opt(64, "dimension of the surge problem every case derives from", lo=2)
    seed: int = opt(0, "seed of the problems and of the Monte Carlo draws", lo=0, hi=2**63)
    n_samples: int = opt(20000, "Monte Carlo samples per batch size (correlated cases)", lo=2)
    n_samples_finite: int = opt(1000, "batches drawn per batch size (finite cases)", lo=2)
    b_max: float = opt(8192.0, "largest batch size of the correlated cases", lo=3)
    n_batch: int = opt(22, "log-spaced batch sizes per case (>= 3 to locate a peak)", lo=3)
    backend: Literal["auto", "reference", "numba", "cuda"] = opt(
        "auto", "kernel backend (auto: cuda if usable, else numba)"
    )

    def check(self) -> None:
        if not self.rhos and not self.n_examples:
            raise ConfigError("rhos", "and --n-examples are both empty: give at least one case")
        bad = [r for r in self.rhos if not r < 1]
        if bad:
            raise ConfigError("rhos", f"must lie in [0, 1); got {','.join(map(str, bad))}")
        if self.n_batch > 10_000:
            raise ConfigError("n_batch", f"must be <= 10000; got {self.n_batch}")
        _check_cuda(self.backend)
        d, n_max = self.d, max(self.n_examples, default=0)
        check_memory(8.0 * d * d * 6, "d", f"the d={d} problems")
        check_memory(8.0 * n_max * d * 3, "n_examples", f"the N={n_max} examples of d={d}")
        if self.rhos:
            check_work(
                len(self.rhos) * 2.0 * self.n_samples * d * self.n_batch * 3,
                MAX_WORK,
                "n_samples",
                "sample updates",
            )
        for n in self.n_examples:
            check_work(
                2.0 * self.n_samples_finite * self.n_batch * (n * d + d * d),
                MAX_WORK,
                "n_samples_finite",
                "flops",
            )
            check_memory(
                32.0 * self.n_samples_finite * self.n_batch + 32.0 * self.n_batch * n,
                "n_samples_finite",
                "the samples",
            )
        if self.rhos and _batch_grid(1, self.b_max, self.n_batch).size < 3:
            raise ConfigError("b_max", f"({self.b_max:g}) gives fewer than 3 batch sizes")


@dataclass(frozen=True)
class TrainGridConfig(ProblemConfig):
    problem: Literal[
        "surge", "dense", "diagonal", "negative-soff", "correlated", "finite", "nqm"
    ] = opt("dense", "the quadratic preset (simulate.problems.PRESETS)")
    optimizer: Literal["sgd", "sign", "adam"] = opt(
        "sign", "sign = Adam(β1=β2=0), the update the surge theory covers"
    )
    beta1: float = opt(0.9, "Adam's β1 (adam only)", lo=0)
    beta2: float = opt(0.999, "Adam's β2 (adam only)", lo=0)
    adam_eps: float = opt(1e-12, "Adam's ε (tiny: β=0 Adam is exactly sign-SGD)", lo=0)
    batch: tuple[float, ...] = opt(
        tuple(float(2**k) for k in range(2, 13)),
        "batch sizes, ascending (one resumable chunk each)",
        lo=0,
        lo_open=True,
        ascending=True,
        nonempty=True,
    )
    lr_min: float = opt(1e-4, "smallest learning rate of the log grid", lo=0, lo_open=True)
    lr_max: float = opt(1e-2, "largest learning rate of the log grid", lo=0, lo_open=True)
    n_lr: int = opt(13, "learning rates (>= 2 for the heatmap)", lo=2, hi=10_000)
    seeds: int = opt(4, "replicates per (batch size, lr) cell", lo=1)
    start_scale: float = opt(1.0, "x0 = scale · H⁻¹μ (start further out)", lo=0, lo_open=True)
    targets: tuple[float, ...] = opt(
        (0.3, 0.1, 0.03), "target losses as fractions of L0, strictly descending", nonempty=True
    )
    further_steps: int = opt(10, "steps after each target before the loss reduction", lo=0)
    max_steps: int = opt(3000, "step budget per run", lo=1)
    noise: Literal["constant", "scaled"] = opt(
        "constant", "per-example noise constant (McCandlish) or ∝ √(L/L0)"
    )
    dtype: Literal["float64", "float32"] = opt("float64", "precision of the positions")

    def default_kw(self) -> dict[str, dict[str, Any]]:
        return TRAIN_PRESET_KW

    def diagonal_ok(self) -> frozenset[str]:
        return frozenset({"diagonal", "nqm"})

    def check(self) -> None:
        if len(self.batch) < 2:
            raise ConfigError(
                "batch",
                f"needs at least two batch sizes, e.g. 8,32,128; got "
                f"{','.join(map(str, self.batch))}",
            )
        for name in ("beta1", "beta2"):
            if not getattr(self, name) < 1:
                raise ConfigError(name, f"must lie in [0, 1); got {getattr(self, name)}")
        if not self.lr_min < self.lr_max:
            raise ConfigError("lr_max", f"({self.lr_max:g}) must exceed --lr-min ({self.lr_min:g})")
        t = self.targets
        if any(not 0 < v < 1 for v in t) or any(a <= b for a, b in itertools.pairwise(t)):
            raise ConfigError(
                "targets",
                f"must be fractions of L0 in (0, 1), strictly descending; got "
                f"{','.join(map(str, t))}",
            )
        super().check()
        _bound_training(
            self.build(),
            len(self.batch),
            self.n_lr * self.seeds,
            len(self.targets),
            self.max_steps + self.further_steps,
            keep_positions=True,
        )

    def train_config(self):
        from simulate.train import TrainConfig

        return TrainConfig(
            optimizer=self.optimizer,
            targets=self.targets,
            max_steps=self.max_steps,
            beta1=self.beta1,
            beta2=self.beta2,
            adam_eps=self.adam_eps,
            further_steps=self.further_steps,
            noise=self.noise,
            dtype=self.dtype,
            start_scale=self.start_scale,
        )

    def lrs(self):
        import numpy as np

        return np.geomspace(self.lr_min, self.lr_max, self.n_lr)


def _bound_training(
    prob,
    n_chunks: int,
    runs_per_chunk: int,
    n_targets: int,
    steps: int,
    *,
    keep_positions: bool,
    arg_runs: str = "seeds",
) -> None:
    """Memory and work of a training grid: R runs of d coordinates per chunk."""
    d = prob.d
    per_chunk = 8.0 * 10 * runs_per_chunk * d + 8.0 * d * (prob.rank + prob.noise_rank)
    kept = 4.0 * 2 * n_chunks * runs_per_chunk * n_targets * d if keep_positions else 0.0
    check_memory(per_chunk + kept, arg_runs, "the runs' positions")
    check_work(
        float(n_chunks) * runs_per_chunk * steps * d * (prob.rank + prob.noise_rank + 2),
        MAX_WORK,
        "max_steps",
        "run·step·coordinate updates",
    )


@dataclass(frozen=True)
class MomentumConfig(ProblemConfig):
    problem: Literal["surge", "dense", "diagonal", "negative-soff", "correlated", "finite"] = opt(
        "diagonal", "the quadratic preset (simulate.problems.PRESETS)"
    )
    betas: tuple[float, ...] = opt(
        (0.0, 0.999, 0.9, 0.999),
        "flat list of Adam (β1, β2) pairs; (0, 0) is sign-SGD",
        lo=0,
        nonempty=True,
    )
    batch: tuple[float, ...] | None = opt(
        None,
        "batch sizes, ascending (none: B_simple·2^k, k = -8…3, spanning Su's threshold)",
        lo=0,
        lo_open=True,
        ascending=True,
        nonempty=True,
    )
    lr_min: float = opt(1e-4, "smallest learning rate of the log grid", lo=0, lo_open=True)
    lr_max: float = opt(0.3, "largest learning rate of the log grid", lo=0, lo_open=True)
    n_lr: int = opt(21, "learning rates (>= 3: the best lr needs neighbours)", lo=3, hi=10_000)
    horizons: tuple[int, ...] = opt(
        (1, 10, 30, 100),
        "steps K after Adam's steady state at which the best lr is measured",
        lo=1,
        hi=100_000,
        ascending=True,
        nonempty=True,
    )
    branch_seeds: int = opt(256, "steady-state branches per (batch size, β) (noise draws)", lo=2)
    whole: bool = opt(True, "also measure the whole run (steps to --target from the start)")
    seeds: int = opt(3, "whole-run replicates per (batch size, lr) cell", lo=1)
    target: float = opt(
        0.01, "whole-run target loss as a fraction of L0, in (0, 1)", lo=0, lo_open=True
    )
    max_steps: int = opt(3000, "whole-run step budget per run", lo=1)

    def batch_sizes(self):
        from simulate.momentum import default_batch_sizes

        return self.batch if self.batch is not None else tuple(default_batch_sizes(self.build()))

    def check(self) -> None:
        if len(self.betas) % 2:
            raise ConfigError(
                "betas",
                f"must be a flat list of (beta1, beta2) pairs, e.g. 0,0,0.9,0.999; "
                f"got {','.join(map(str, self.betas))}",
            )
        if any(not b < 1 for b in self.betas):
            raise ConfigError("betas", f"must lie in [0, 1); got {','.join(map(str, self.betas))}")
        if not self.target < 1:
            raise ConfigError("target", f"must be a fraction of L0 in (0, 1); got {self.target}")
        if self.batch is not None and len(self.batch) < 2:
            raise ConfigError(
                "batch",
                f"needs at least two batch sizes, e.g. 256,4096; got "
                f"{','.join(map(str, self.batch))}",
            )
        if not self.lr_min < self.lr_max:
            raise ConfigError("lr_max", f"({self.lr_max:g}) must exceed --lr-min ({self.lr_min:g})")
        super().check()
        n_cfg = len(self.betas) // 2
        n_b = len(self.batch) if self.batch is not None else 12
        d = self.dimension()
        check_memory(
            8.0 * 5 * min(self.branch_seeds, 256) * self.n_lr * d, "n_lr", "the branches' states"
        )
        check_work(
            float(n_cfg) * n_b * self.branch_seeds * self.n_lr * max(self.horizons) * d * 20,
            MAX_WORK,
            "branch_seeds",
            "branch·lr·step·coordinate updates",
        )
        if self.whole:
            _bound_training(
                self.build(),
                n_cfg * n_b,
                self.n_lr * self.seeds,
                1,
                self.max_steps,
                keep_positions=False,
            )


@dataclass(frozen=True)
class SimBenchConfig(Config):
    d: int = opt(1000, "dimension of the surge problem", lo=2)
    n_lr: int = opt(10, "learning rates of the grid", lo=1, hi=10_000)
    n_batch_sizes: int = opt(12, "batch sizes 1, 2, 4, … of the grid", lo=1, hi=60)
    seeds: int = opt(10, "replicates per cell", lo=1)
    loop_subset: int = opt(24, "runs the per-run loop is timed on (scaled to all)", lo=1)
    optimizer: Literal["sgd", "sign", "adam"] = opt("sign", "update rule")
    max_steps: int = opt(1000, "step budget per run", lo=1)
    dtype: Literal["float64", "float32"] = opt("float32", "precision of the positions")
    seed: int = opt(0, "seed of the problem and the runs", lo=0, hi=2**63)

    def check(self) -> None:
        runs = self.n_lr * self.n_batch_sizes * self.seeds
        check_memory(8.0 * 12 * runs * self.d, "d", f"{runs} runs of d={self.d}")
        check_work(
            (runs + self.loop_subset) * float(self.max_steps) * self.d * 3,
            MAX_WORK,
            "max_steps",
            "run·step·coordinate updates",
        )


# ---------------------------------------------------------------------------------------------
# headline and verdicts (from the summary's own values: one computation, two views)


def _g(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def surge_report(s: dict) -> tuple[list[dict], list[str]]:
    """``summary["headline"]`` and ``summary["verdicts"]`` of ``simulate surge``."""
    headline = [
        {"key": "b_noise_theory", "label": "Theorem 3's B_noise", "value": s["b_noise_theory"]},
        {
            "key": "b_peak_exact",
            "label": "peak batch size, Theorem 2 (exact)",
            "value": s["b_peak_exact"],
        },
        {"key": "b_peak_mc", "label": "measured peak (Monte Carlo)", "value": s["b_peak_mc"]},
        {"key": "eps_max_theory", "label": "ε_max of Theorem 3", "value": s["eps_max_theory"]},
        {
            "key": "eps_peak_mc",
            "label": "ε at the measured peak (Monte Carlo)",
            "value": s["eps_peak_mc"],
        },
        {"key": "sgd_b_noise", "label": "SGD B_noise (tr(HΣ)/GᵀHG)", "value": s["sgd_b_noise"]},
        {"key": "b_simple", "label": "B_simple (tr Σ/|G|²)", "value": s["b_simple"]},
    ]
    edge = "" if s["peak_interior"] else " (at the edge of the grid)"
    verdicts = [
        f"peak predicted at B = {_g(s['b_peak_exact'])} (Theorem 2), measured at "
        f"B = {_g(s['b_peak_mc'])} (Monte Carlo){edge}; Theorem 3's B_noise = "
        f"{_g(s['b_noise_theory'])}",
        (
            f"surge detected: the Monte Carlo optimal lr peaks inside the grid and falls "
            f"{_g(s['eps_peak_minus_last_over_se'])} SE by the largest batch size"
            if s["surge_detected"]
            else "no surge detected: the Monte Carlo optimal lr does not peak and fall by "
            "5 SE inside the grid"
        ),
        f"sign-update Monte Carlo optimum within {s['max_rel_err_mc_vs_exact']:.2%} of "
        f"Theorem 2 at every batch size (max |z| = {_g(s['max_abs_z_mc_vs_exact'])})",
        f"SGD Monte Carlo optimum within {s['max_rel_err_sgd_mc_vs_law']:.2%} of McCandlish's "
        f"law (max |z| = {_g(s['max_abs_z_sgd_mc_vs_law'])})",
    ]
    return headline, verdicts


def train_report(s: dict) -> tuple[list[dict], list[str]]:
    """``summary["headline"]`` and ``summary["verdicts"]`` of ``simulate train``."""
    headline = [
        {
            "key": "b_noise_fit_per_target",
            "index": k,
            "label": f"S–E B_crit (steps–examples fit, Eq. 22) at loss {_g(t)}·L0",
            "value": v,
        }
        for k, (t, v) in enumerate(zip(s["targets_frac"], s["b_noise_fit_per_target"]))
    ]
    headline.append(
        {
            "key": "eps_max_adam",
            "label": "ε_max of the Adam/sign surge-curve fit (Eq. 23)",
            "value": s["eps_max_adam"],
        }
    )
    fits = ", ".join(
        f"{_g(v)} at {_g(t)}·L0" for t, v in zip(s["targets_frac"], s["b_noise_fit_per_target"])
    )
    grows = "grows" if s["b_noise_grows_as_loss_falls"] else "does not grow steadily"
    verdicts = [f"S–E B_crit (steps–examples fit) {grows} as the loss falls: {fits}"]
    shape = s["best_lr_steps_shape_per_target"][0] if s["best_lr_steps_shape_per_target"] else {}
    if shape:
        where = f"best lr per batch size (target {_g(s['targets_frac'][0])}·L0)"
        if shape["last_over_max_best_lr"] >= 1:
            verdicts.append(f"{where} is largest at the largest batch size: no fall")
        else:
            verdicts.append(
                f"{where} is largest at B = {_g(shape['b_at_max_best_lr'])}; at the largest B "
                f"it is {_g(shape['last_over_max_best_lr'])}× that"
                + (
                    "; it falls (a surge)"
                    if shape["falls"]
                    else "; no fall beyond half a grid cell"
                )
            )
    verdicts.append(
        f"{s['n_runs']} runs ({s['optimizer']}, {s['noise']} noise): {s['n_diverged']} diverged, "
        f"{s['n_not_reached_first_target']} did not reach the first target"
    )
    return headline, verdicts


# ---------------------------------------------------------------------------------------------
# commands


def _done(run: RunDir) -> bool:
    if run.finished:
        print(f"{run.path} already holds this finished run; nothing to do")
        return True
    return False


def _finish(run: RunDir, summary: dict[str, Any]) -> int:
    """Write the summary and the done marker, print the verdicts and where the run is."""
    run.finish(summary)
    for v in summary.get("verdicts", []):
        print(v)
    print(f"wrote {run.path}")
    return 0


def cmd_surge(cfg: SurgeConfig, run: RunDir | None) -> int:
    from simulate import plots
    from simulate.surge import run_surge

    assert run is not None
    if _done(run):
        return 0
    prob = cfg.build()
    b = cfg.batch_sizes()
    rows, summary = run_surge(prob, b, cfg.n_samples, cfg.seed, cfg.backend)
    summary["batch_sizes"] = b
    summary["problem_notes"] = prob.notes
    summary["headline"], summary["verdicts"] = surge_report(summary)
    run.write_table("surge.csv", rows)
    run.save_figure(plots.plot_surge(run.read_table("surge.csv")), "surge.png")
    return _finish(run, summary)


def cmd_assumptions(cfg: AssumptionsConfig, run: RunDir | None) -> int:
    from simulate import plots
    from simulate.assumptions import run_assumptions
    from surgelab.progress import bar

    assert run is not None
    if _done(run):
        return 0
    with bar(len(cfg.rhos) + len(cfg.n_examples), "cases") as b:
        rows, summary = run_assumptions(
            cfg.rhos,
            cfg.n_examples,
            d=cfg.d,
            n_samples=cfg.n_samples,
            n_samples_finite=cfg.n_samples_finite,
            seed=cfg.seed,
            backend=cfg.backend,
            b_max=cfg.b_max,
            n_batch=cfg.n_batch,
            progress=b.update,
        )
    run.write_table("assumptions.csv", rows)
    table = run.read_table("assumptions.csv")
    run.save_figure(plots.plot_assumptions(table), "assumptions.png")
    for case in dict.fromkeys(r["case"] for r in table):
        sub = [r for r in table if r["case"] == case]
        name = case.replace(" ", "_").replace("=", "")
        run.save_figure(plots.plot_surge(sub), f"surge_{name}.png")
    run.finish(summary)
    for case, c in summary["cases"].items():
        print(
            f"{case}: Monte Carlo peak at B = {_g(c['b_peak_mc'])} vs Theorem 2's "
            f"{_g(c['b_peak_exact'])}; max rel. error vs Theorem 2 "
            f"{c['max_rel_err_mc_vs_exact']:.2%}"
        )
    print(f"wrote {run.path}")
    return 0


def cmd_train(cfg: TrainGridConfig, run: RunDir | None) -> int:
    from simulate import plots
    from simulate.train import analyse, run_grid
    from surgelab.chunks import ChunkStore
    from surgelab.progress import bar

    assert run is not None
    if _done(run):
        return 0
    prob = cfg.build()
    tcfg = cfg.train_config()
    lrs = cfg.lrs()
    spec = {
        "problem": cfg.problem,
        "problem_kw": cfg.preset_kw(),
        "d": prob.d,
        "problem_mu": prob.mu,
        "seed": cfg.seed,
        "batch_sizes": cfg.batch,
        "lrs": lrs,
        "n_seeds": cfg.seeds,
        "train": asdict(tcfg),
    }
    store = ChunkStore(run.path, spec)
    done = store.finished(asdict(tcfg))
    with bar(len(cfg.batch), "batch sizes", initial=len(done)) as b:

        def on_chunk(j, res):
            store.save(j, res)
            b.update(1)

        res = run_grid(
            prob, cfg.batch, lrs, cfg.seeds, tcfg, cfg.seed, done=done, on_chunk=on_chunk
        )
    cells, best, fits, summary = analyse(prob, res, tcfg)
    summary["chunks_reused"] = sorted(done)
    summary["lrs"] = lrs
    summary["headline"], summary["verdicts"] = train_report(summary)
    run.write_table("runs.csv", res.rows())
    run.write_table("cells.csv", cells)
    run.write_table("best.csv", best)
    run.write_table("fits.csv", fits)
    c, bt, f = (run.read_table(n) for n in ("cells.csv", "best.csv", "fits.csv"))
    run.save_figure(plots.plot_heatmap(c, bt, 0, "reduction_mean"), "heatmap.png")
    run.save_figure(plots.plot_heatmap(c, bt, 0, "steps_mean"), "heatmap_steps.png")
    run.save_figure(plots.plot_se_fit(bt, f), "se_fit.png")
    run.save_figure(plots.plot_bnoise_targets(f), "bnoise_targets.png")
    run.finish(summary)
    if done:
        print(f"reused {len(done)} finished batch size(s) from {store.dir}")
    for v in summary["verdicts"]:
        print(v)
    print(f"wrote {run.path}")
    return 0


def momentum_report(s: dict) -> tuple[list[dict], list[str]]:
    """``summary["headline"]`` and ``summary["verdicts"]`` of ``simulate momentum``.

    Says what each quantity is: K = 1 is the one-step optimum in Adam's steady state (Su's
    analysis); larger K and the whole run are long-horizon optima.
    """
    headline = [{"key": "b_simple", "label": "B_simple (tr Σ/|G|²)", "value": s["b_simple"]}]
    verdicts = []
    for key, c in s["configs"].items():
        hz = [h for h in c if h.startswith("horizon=")]
        ks = [h.split("=", 1)[1] for h in hz]
        label = f"β1={c['beta1']:g}, β2={c['beta2']:g}"
        if math.isfinite(c["su_fall_threshold"]):
            headline.append(
                {
                    "key": f"configs.{key}.su_fall_threshold",
                    "label": f"Su's one-step peak B* = (1−β1)/(3β1−1)·B_simple ({label})",
                    "value": c["su_fall_threshold"],
                }
            )
        parts = []
        if "k1_max_rel_dev_from_su" in c:
            pk = c["k1_peak_b"]
            parts.append(
                f"K = 1 (one-step optimum in the steady state) matches Su's per-coordinate "
                f"formula within {c['k1_max_rel_dev_from_su']:.1%} at every uncensored B (Su "
                f"inside the 90% interval at {c['k1_su_inside_interval']} of {len(c['B'])}); "
                + (
                    f"peak of Su's curve at B = {_g(c['su_peak_b'])}, measured at B = {_g(pk)}"
                    if math.isfinite(c["su_peak_b"]) or math.isfinite(pk)
                    else "neither Su's curve nor the measured K = 1 curve peaks inside the grid"
                )
                + (
                    f" (mean-field B* = {_g(c['su_fall_threshold'])})"
                    if math.isfinite(c["su_fall_threshold"])
                    else " (Su: no fall for β1 ≤ 1/3)"
                )
            )
        for k in ks:
            h = c[f"horizon={k}"]
            what = f"K = {k}"
            if k == "whole":
                ok = [b for b, y in zip(c["B"], h["lr_best"], strict=True) if math.isfinite(y)]
                reach = f"target reached at B ≥ {_g(min(ok))}" if ok else "target never reached"
                what = f"whole run (steps to target; {reach})"
            cens = f", {h['n_censored']} censored" if h["n_censored"] else ""
            if h["falls"]:
                parts.append(
                    f"{what}: best lr falls x{h['factor']:.2f} from B = {_g(h['b_from'])} to "
                    f"B = {_g(h['b_to'])}{cens}"
                )
            else:
                parts.append(f"{what}: no fall (largest x{h['factor']:.2f}){cens}")
        verdicts.append(f"{label}: " + "; ".join(parts))
    r = s.get("ratio_momentum_over_beta0") or {}
    if r:
        ks = [k for k in r if k not in ("B", "su_one_step")]

        def one(k: str) -> str:
            v = r[k]
            iv = f" [{v['lo']:.3g}, {v['hi']:.3g}]" if math.isfinite(v["lo"]) else ""
            return f"{'whole run' if k == 'whole' else 'K = ' + k}: {v['value']:.3g}{iv}"

        verdicts.append(
            f"best lr of β1=0.9 over β1=0 at B = {_g(r['B'])} (Su's one-step value "
            f"{r['su_one_step']:.3g}): "
            + ", ".join(one(k) for k in ks)
            + " — Su's one-step advantage fades with the horizon (successive momentum noises are "
            "correlated); the whole run is the long-horizon limit"
        )
        headline.append(
            {
                "key": "ratio_momentum_over_beta0",
                "label": "best lr β1=0.9 / β1=0 per horizon (90% bootstrap interval)",
                "value": {k: r[k]["value"] for k in ks},
            }
        )
    return headline, verdicts


def cmd_momentum(cfg: MomentumConfig, run: RunDir | None) -> int:
    import numpy as np

    from simulate import plots
    from simulate.momentum import run_momentum
    from surgelab.progress import bar

    assert run is not None
    if _done(run):
        return 0
    prob = cfg.build()
    betas = [tuple(b) for b in np.asarray(cfg.betas, dtype=float).reshape(-1, 2)]
    lrs = np.geomspace(cfg.lr_min, cfg.lr_max, cfg.n_lr)
    bs = cfg.batch_sizes()
    with bar(len(betas) * len(bs) * (2 if cfg.whole else 1), "batch sizes") as b:
        rows, summary = run_momentum(
            prob,
            bs,
            lrs,
            cfg.seeds,
            betas,
            target=cfg.target,
            max_steps=cfg.max_steps,
            horizons=cfg.horizons,
            branch_seeds=cfg.branch_seeds,
            whole=cfg.whole,
            seed=cfg.seed,
            on_chunk=lambda *_: b.update(1),
        )
    summary["lrs"] = lrs
    summary["headline"], summary["verdicts"] = momentum_report(summary)
    run.write_table("momentum.csv", rows)
    run.save_figure(plots.plot_momentum(run.read_table("momentum.csv")), "momentum.png")
    return _finish(run, summary)


def cmd_bench(cfg: SimBenchConfig, run: RunDir | None) -> int:
    from simulate.bench import bench_grid

    assert run is not None
    if _done(run):
        return 0
    res = bench_grid(
        d=cfg.d,
        n_lr=cfg.n_lr,
        n_batch=cfg.n_batch_sizes,
        n_seeds=cfg.seeds,
        loop_subset=cfg.loop_subset,
        optimizer=cfg.optimizer,
        max_steps=cfg.max_steps,
        seed=cfg.seed,
        dtype=cfg.dtype,
    )
    run.write_json("bench.json", res)
    run.finish(res)
    print(
        f"{res['n_runs']} runs: vectorised {res['vectorised_s']:.2f} s, per-run loop "
        f"~{res['loop_estimated_full_s']:.1f} s (estimated): x{res['speedup_vs_loop']:.1f}"
    )
    print(f"wrote {run.path}")
    return 0


STAGE = Stage(
    "simulate",
    "quadratic models: one-step and multi-step Monte Carlo vs theory "
    "(surge, assumptions, train, momentum, bench)",
    {
        "surge": Command(
            "surge",
            "one-step Monte Carlo vs Theorems 2-4 and the SGD law",
            SurgeConfig,
            cmd_surge,
        ),
        "assumptions": Command(
            "assumptions",
            "correlated noise / finite datasets vs Theorem 2",
            AssumptionsConfig,
            cmd_assumptions,
        ),
        "train": Command(
            "train",
            "multi-step grid; S-E fits; heatmap (resumable)",
            TrainGridConfig,
            cmd_train,
        ),
        "momentum": Command(
            "momentum",
            "best lr vs B after K steps from Adam's steady state and a whole run, vs Su",
            MomentumConfig,
            cmd_momentum,
        ),
        "bench": Command(
            "bench",
            "vectorised grid vs per-run loop (bench.json)",
            SimBenchConfig,
            cmd_bench,
        ),
        "nqm": NQM,
    },
)
