"""The branched protocol: the best lr per batch size at a training state, per horizon.

The theory is local (Lemma 1, Theorems 2–5: the best lr for the *next step* at the current
parameters); the paper's protocol is global (every (B, lr) trains from scratch to a target,
then 10–50 further steps decide). The **horizon** K — how many steps the lr must serve —
links the two. This module measures that link on a real network:

1. :func:`reference_starts` trains one reference run (Adam at a reference batch size and lr)
   and yields its state (:class:`Start`: parameters, buffers and Adam moments) at chosen
   steps or held-in losses; :func:`start_from_state_dict` builds a :class:`Start` from a
   user's ``torch.save`` checkpoint instead, and :func:`check_start` names what does not
   match the workload's model.
2. :func:`branch_group` branches every (lr, seed) of one batch size from one start for
   ``max(horizons)`` Adam steps — all models as one stacked program (the batched engine's
   :class:`validate.engine._Stacked` / ``_Batched``) — and records the held-in loss before and
   after each horizon K. Every lr of a seed sees the same batches (**common random numbers**,
   a counter-based stream keyed by the seed and the start), so a branch is reproducible bit
   for bit and differences between lrs are not blurred by sampling noise.
3. :func:`analyse` estimates, per (start, horizon), the best lr per batch size with a
   seed-bootstrap interval and censoring (the sweep's estimators,
   :func:`validate.optimum.analyse_target`, with the loss reduction over the K steps as the
   paper's "further" rule), the peak batch size (the batch size of the largest lr*, with an
   interval) and the leave-one-batch-size-out comparison of the laws (fitted freely to the
   other batch sizes: there is no S–E fit in a branch) with the practitioners' baselines.

Adam state: ``adam_state="carry"`` starts every branch from the reference run's moments and
step count (what a practitioner who changes the batch size mid-run does); ``"reset"`` starts
from zero moments (then the first step of Adam is exactly a sign step: m̂/√v̂ = g/|g|).
With β = (0, 0) the update is a sign step at every step and the moments do not matter.

Reference: Li et al., NeurIPS 2024; Merrill et al. 2025 (branching checkpoints at k·B).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from validate.contract import Data, Workload
from validate.engine import (
    DIVERGE_FACTOR,
    EVAL_CHUNK,
    _adam_leaves,
    _Batched,
    _check_model,
    _init_model,
    _sample,
    _Stacked,
    stream_seed,
)

#: How a branch starts its Adam moments.
ADAM_STATES: tuple[str, ...] = ("carry", "reset")

#: Keys of every row :func:`branch_group` returns.
ROW_KEYS: tuple[str, ...] = (
    "checkpoint",
    "checkpoint_step",
    "checkpoint_loss",
    "horizon",
    "horizon_examples",
    "batch_size",
    "lr",
    "seed",
    "loss_before",
    "loss_after",
    "loss_reduction",
    "diverged",
    "adam_state",
)


@dataclass(frozen=True)
class Start:
    """A training state to branch from.

    Attributes:
      name: a label (``"step400"``, ``"loss1"``, ``"user"``); rows carry it.
      step: optimiser steps the state had taken (Adam's t when its moments are carried).
      loss: the held-in loss there (NaN when unknown; :func:`branch_group` measures it).
      params, buffers: the model's named parameters and buffers (CPU tensors).
      exp_avg, exp_avg_sq: Adam's first / second moments per parameter name, or None.
    """

    name: str
    step: int
    loss: float
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    exp_avg: dict[str, torch.Tensor] | None = None
    exp_avg_sq: dict[str, torch.Tensor] | None = None

    @property
    def has_moments(self) -> bool:
        return self.exp_avg is not None and self.exp_avg_sq is not None


def _snapshot(
    name: str,
    step: int,
    loss: float,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer | None,
) -> Start:
    params = {k: p.detach().cpu().clone() for k, p in model.named_parameters()}
    buffers = {k: b.detach().cpu().clone() for k, b in model.named_buffers()}
    m = v = None
    if opt is not None:
        m, v = {}, {}
        for k, p in model.named_parameters():
            s = opt.state.get(p, {})
            if "exp_avg" in s:
                m[k] = s["exp_avg"].detach().cpu().clone()
                v[k] = s["exp_avg_sq"].detach().cpu().clone()
        if not m:
            m = v = None
    return Start(name, int(step), float(loss), params, buffers, m, v)


@torch.no_grad()
def held_in_loss(workload: Workload, model: torch.nn.Module, data: Data, chunk: int = 512) -> float:
    """Mean loss of ``model`` on the held-in set ``data.x_eval`` (train mode off, float64 sum)."""
    was = model.training
    model.eval()
    tot, n = 0.0, int(data.x_eval.shape[0])
    for i in range(0, n, chunk):
        xc, yc = data.x_eval[i : i + chunk], data.y_eval[i : i + chunk]
        tot += float(workload.loss(model(xc), yc).double()) * int(xc.shape[0])
    model.train(was)
    return tot / n


def reference_starts(
    workload: Workload,
    data: Data,
    *,
    lr: float,
    batch_size: int,
    steps: Sequence[int] = (),
    losses: Sequence[float] = (),
    betas: tuple[float, float] = (0.9, 0.999),
    seed: int = 0,
    max_steps: int | None = None,
    eval_every: int | None = None,
    device: str = "cpu",
    on_step: Callable[[int], None] | None = None,
) -> Iterator[Start]:
    """Train the reference run (``torch.optim.Adam``) and yield its state at each request.

    Yields a :class:`Start` at every step of ``steps`` (``name`` "step<k>") and at the first
    evaluation (every ``eval_every`` steps) where the held-in loss is ≤ each level of
    ``losses`` (``name`` "loss<level>"), in training order. Batches are i.i.d. with
    replacement from the reference seed's stream (:func:`validate.engine.batch_indices`).
    Stops after the last request or at ``max_steps`` (default ``workload.max_steps``); a level
    not reached by then is not yielded.
    """
    if any(int(s) != s or s < 0 for s in steps):
        raise ValueError(f"start steps must be non-negative integers; got {list(steps)}")
    if any(not v > 0 for v in losses):
        raise ValueError(f"start loss levels must be positive; got {list(losses)}")
    if not steps and not losses:
        raise ValueError("give at least one start step or loss level")
    if not lr > 0 or int(batch_size) < 1:
        raise ValueError(f"the reference run needs lr > 0 and batch_size >= 1; got {lr=}")
    every = int(eval_every or workload.eval_every)
    limit = int(max_steps or workload.max_steps)
    model = _init_model(workload, seed, device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
    key = torch.tensor([stream_seed(seed)], dtype=torch.int64, device=device)
    gen = None
    if workload.batch_transform is not None:
        gen = [torch.Generator(device=device).manual_seed(stream_seed(seed))]
    want_steps = sorted({int(s) for s in steps})
    want_losses = sorted(set(float(v) for v in losses), reverse=True)
    last = max(want_steps, default=0)
    limit = max(last, limit if want_losses else 0)
    step = 0
    while True:
        cur = math.nan
        if want_steps and want_steps[0] == step:
            cur = held_in_loss(workload, model, data)
            while want_steps and want_steps[0] == step:
                yield _snapshot(f"step{want_steps.pop(0)}", step, cur, model, opt)
        if want_losses and step % every == 0:
            cur = cur if math.isfinite(cur) else held_in_loss(workload, model, data)
            while want_losses and cur <= want_losses[0]:
                yield _snapshot(f"loss{want_losses.pop(0):g}", step, cur, model, opt)
        if (not want_steps and not want_losses) or step >= limit:
            return
        x, y = _sample(data, key, step, int(batch_size), workload.batch_transform, gen)
        opt.zero_grad(set_to_none=True)
        workload.loss(model(x[0]), y[0]).backward()
        opt.step()
        step += 1
        if on_step is not None:
            on_step(step)


def check_start(workload: Workload, start: Start) -> None:
    """Raise ``ValueError`` naming what in ``start`` does not match the workload's model.

    Compares parameter and buffer names and shapes (and the moments' when present).
    """
    model = workload.make_model()
    want = {k: tuple(p.shape) for k, p in model.named_parameters()}
    have = {k: tuple(p.shape) for k, p in start.params.items()}
    problems = []
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    if missing:
        problems.append(f"missing parameters {missing[:4]}{' …' if len(missing) > 4 else ''}")
    if extra:
        problems.append(f"unexpected parameters {extra[:4]}{' …' if len(extra) > 4 else ''}")
    bad = [f"{k} {have[k]} vs {want[k]}" for k in want if k in have and have[k] != want[k]]
    if bad:
        problems.append(f"shapes differ: {'; '.join(bad[:3])}{' …' if len(bad) > 3 else ''}")
    bwant = {k: tuple(b.shape) for k, b in model.named_buffers()}
    bhave = {k: tuple(b.shape) for k, b in start.buffers.items()}
    if bwant != bhave:
        problems.append(f"buffers differ: {sorted(bhave)} vs the model's {sorted(bwant)}")
    for which, d in (("exp_avg", start.exp_avg), ("exp_avg_sq", start.exp_avg_sq)):
        if d is not None and {k: tuple(t.shape) for k, t in d.items()} != have:
            problems.append(f"the optimiser's {which} does not match the parameters")
    if problems:
        raise ValueError(
            f"the checkpoint does not match workload {workload.name!r}'s model: "
            + "; ".join(problems)
        )


def start_from_state_dict(
    workload: Workload,
    state: Mapping[str, Any],
    *,
    name: str = "user",
) -> Start:
    """A :class:`Start` from a user's checkpoint (the object ``torch.load`` returned).

    Accepts a model ``state_dict``, or a dict with ``"model"`` (a state dict) and optionally
    ``"optimizer"`` (a ``torch.optim.Adam`` state dict, whose moments are then carried) and
    ``"step"``. Raises ``ValueError`` naming what does not match the workload's model.
    """
    if not isinstance(state, Mapping):
        raise ValueError(
            f"a checkpoint must be a state dict (or {{'model': ..., 'optimizer': ...}}); got "
            f"{type(state).__name__}"
        )
    sd = state["model"] if "model" in state and isinstance(state["model"], Mapping) else state
    model = workload.make_model()
    pnames = [k for k, _ in model.named_parameters()]
    bnames = [k for k, _ in model.named_buffers()]
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    params = {k: tensors[k].detach().cpu().clone() for k in tensors if k not in bnames}
    buffers = {k: tensors[k].detach().cpu().clone() for k in bnames if k in tensors}
    step = int(state.get("step", 0)) if sd is not state else 0
    m = v = None
    opt = state.get("optimizer") if sd is not state else None
    if opt is not None:
        st, groups = opt.get("state", {}), opt.get("param_groups", [])
        ids = [i for g in groups for i in g.get("params", [])]
        if len(ids) != len(pnames):
            raise ValueError(
                f"the checkpoint's optimizer holds {len(ids)} parameters, the model "
                f"{len(pnames)}: save the state of an Adam over model.parameters()"
            )
        m, v = {}, {}
        for k, i in zip(pnames, ids):
            s = st.get(i, {})
            if "exp_avg" in s:
                m[k], v[k] = s["exp_avg"].detach().cpu().clone(), s["exp_avg_sq"].cpu().clone()
                step = step or int(float(s.get("step", 0)))
        if len(m) != len(pnames):
            m = v = None
    start = Start(name, step, math.nan, params, buffers, m, v)
    check_start(workload, start)
    return start


def _rep(t: torch.Tensor, n: int, device: str) -> torch.Tensor:
    return t.to(device).unsqueeze(0).expand(n, *t.shape).contiguous()


def branch_key(seed: int, start: Start) -> int:
    """The data-stream key of a seed's branches from ``start`` (independent across starts)."""
    salt = sum((i + 1) * ord(c) for i, c in enumerate(start.name)) + 7919 * start.step
    return int(
        np.random.SeedSequence([int(seed), 0xB4A7C4, salt]).generate_state(1, np.uint64)[0]
        % (2**63 - 1)
    )


def branch_group(
    workload: Workload,
    data: Data,
    start: Start,
    batch_size: int,
    lrs: Sequence[float],
    seeds: Sequence[int],
    horizons: Sequence[int],
    *,
    horizon_examples: Sequence[int] = (),
    betas: tuple[float, float] = (0.9, 0.999),
    adam_state: str = "carry",
    adam_eps: float = 1e-8,
    device: str = "cpu",
    diverge_factor: float = DIVERGE_FACTOR,
    eval_chunk: int = EVAL_CHUNK,
    model_chunk: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Branch every (lr, seed) of one batch size from ``start`` and measure each horizon.

    All models start from ``start``'s parameters (and, with ``adam_state="carry"``, its Adam
    moments and step count; ``"reset"``: zero moments, t = 0) and take ``max(horizons)`` Adam
    steps with their own lr; model (lr, seed) draws step k's batch from the seed's stream
    (:func:`branch_key`), the same for every lr. After each horizon K the held-in loss is
    evaluated. A loss that is not finite or above ``diverge_factor`` × the loss before marks
    the branch diverged at that horizon and later (its row's ``loss_reduction`` is NaN).
    ``horizon_examples``: horizons in training examples instead of steps: E is measured after
    ⌈E / B⌉ steps (at least 1), the same compute for every batch size.

    Returns:
      One dict per (horizon, lr, seed) with the keys :data:`ROW_KEYS`, steps horizons first:
      ``horizon`` = the steps taken, ``horizon_examples`` = E for an examples horizon (None for
      a steps horizon); ``loss_reduction`` = loss before − loss after (larger is better).
    """
    hs = sorted({int(h) for h in horizons})
    es = sorted({int(e) for e in horizon_examples})
    if (not hs and not es) or (hs and hs[0] < 1) or (es and es[0] < 1):
        raise ValueError(
            f"horizons must be positive step / example counts; got {list(horizons)}, "
            f"{list(horizon_examples)}"
        )
    if adam_state not in ADAM_STATES:
        raise ValueError(f"adam_state must be one of {ADAM_STATES}; got {adam_state!r}")
    # a state before the first step has zero moments: carrying them is resetting them
    if adam_state == "carry" and not start.has_moments and start.step > 0 and any(betas):
        raise ValueError(
            f"start {start.name!r} holds no Adam moments to carry; use adam_state='reset'"
        )
    lrs, seeds = [float(v) for v in lrs], [int(s) for s in seeds]
    if not lrs or any(not v > 0 for v in lrs) or not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"need positive lrs and distinct seeds; got {lrs=}, {seeds=}")
    B = int(batch_size)
    if B < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    b1, b2 = float(betas[0]), float(betas[1])
    models = [(lr, s) for lr in lrs for s in seeds]
    M = len(models)
    template = workload.make_model()
    _check_model(template)
    template.load_state_dict({**start.params, **start.buffers})
    template = template.to(device)
    names = [k for k, _ in template.named_parameters()]
    params = {k: _rep(start.params[k], M, device) for k in names}
    buffers = {k: _rep(b, M, device) for k, b in start.buffers.items()}
    dtype = next(iter(params.values())).dtype
    lr_t = torch.tensor([lr for lr, _ in models], device=device, dtype=dtype)
    st = _Stacked.from_dicts(params, buffers, lr_t)
    if adam_state == "carry" and start.has_moments:
        assert start.exp_avg is not None and start.exp_avg_sq is not None
        st.m.copy_(torch.cat([start.exp_avg[k].reshape(1, -1) for k in names], 1).to(st.m))
        st.v.copy_(torch.cat([start.exp_avg_sq[k].reshape(1, -1) for k in names], 1).to(st.v))
        st.t = int(start.step)
    eng = _Batched(workload, template.to("meta"), data.to(device), eval_chunk, model_chunk)
    uniq = sorted(set(seeds))
    keys = torch.tensor([branch_key(s, start) for s in uniq], dtype=torch.int64, device=device)
    gather = torch.tensor([uniq.index(s) for _, s in models], device=device)
    gens = None
    if workload.batch_transform is not None:
        gens = [torch.Generator(device=device).manual_seed(branch_key(s, start)) for s in uniq]
    before = float(eng.eval(st.select(torch.zeros(1, dtype=torch.long, device=device)))[0])
    dead = torch.zeros(M, dtype=torch.bool)
    labels = [(h, None) for h in hs] + [(max(1, -(-e // B)), e) for e in es]
    by_step: dict[int, list[tuple[int, int | None]]] = {}
    for h, e in labels:
        by_step.setdefault(h, []).append((h, e))
    out: dict[tuple[int, int | None], list[dict[str, Any]]] = {}
    k = 0
    for h in sorted(by_step):
        while k < h:
            x, y = _sample(eng.data, keys, k, B, workload.batch_transform, gens)
            if len(uniq) != M:
                x, y = x.index_select(0, gather), y.index_select(0, gather)
            _adam_leaves(st, eng.leaf_grads(st, x, y), b1, b2, float(adam_eps))
            k += 1
            if on_progress is not None:
                on_progress(1)
        after = eng.eval(st)
        dead |= ~torch.isfinite(after) | (after > diverge_factor * before)
        for label in by_step[h]:
            out[label] = [
                {
                    "checkpoint": start.name,
                    "checkpoint_step": int(start.step),
                    "checkpoint_loss": start.loss if math.isfinite(start.loss) else before,
                    "horizon": h,
                    "horizon_examples": label[1],
                    "batch_size": B,
                    "lr": lr,
                    "seed": s,
                    "loss_before": before,
                    "loss_after": float(after[i]),
                    "loss_reduction": float(before - after[i]) if not bool(dead[i]) else math.nan,
                    "diverged": bool(dead[i]),
                    "adam_state": adam_state,
                }
                for i, (lr, s) in enumerate(models)
            ]
    return [r for label in labels for r in out[label]]


# ----------------------------------------------------------------------------- analysis


def as_sweep_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Branch rows in the sweep table's form, one target (0.0) for :mod:`validate.optimum`.

    The loss reduction over the horizon plays the paper's "further" rule; every branch counts
    as having reached the target (``steps`` = the horizon), a diverged one as not usable.
    """
    return [
        {
            "batch_size": int(r["batch_size"]),
            "lr": float(r["lr"]),
            "seed": int(r["seed"]),
            "target": 0.0,
            "reached": True,
            "steps": int(r["horizon"]),
            "loss_reduction": r["loss_reduction"],
            "further_diverged": bool(r["diverged"]),
        }
        for r in rows
    ]


@dataclass
class GroupAnalysis:
    """The estimates of one (start, horizon): see :func:`analyse`."""

    checkpoint: str
    checkpoint_step: int
    checkpoint_loss: float
    horizon: int | None
    best: list[dict[str, Any]]
    peak: dict[str, Any]
    loo: list[dict[str, Any]]
    verdict: dict[str, Any]
    fall: dict[str, Any]
    horizon_examples: int | None = None

    @property
    def label(self) -> str:
        """``"K = 10"`` for a steps horizon, ``"E = 4096 examples"`` for an examples one."""
        if self.horizon_examples is not None:
            return f"E = {self.horizon_examples} examples"
        return f"K = {self.horizon}"


def peak_batch_size(
    B: np.ndarray, lr: np.ndarray, censored: Sequence[str]
) -> tuple[float, str, int]:
    """The batch size of the largest interior lr* (refined in log B), its censoring, and n.

    Censored optima (bounds) are left out. ``"low"`` / ``"high"``: the peak is the smallest /
    largest batch size with an interior optimum (it may lie beyond); ``"plateau"``: the largest
    lr* is shared by several batch sizes (the same grid lr), the first of them is returned. NaN
    with < 2 points.

    Examples:
      >>> B = np.array([1.0, 4.0, 16.0, 64.0])
      >>> x, cen, n = peak_batch_size(B, np.array([1.0, 2.0, 3.0, 1.5]), ["", "", "", ""])
      >>> 4.0 < x < 64.0, cen, n
      (True, '', 4)
      >>> peak_batch_size(B, np.array([1.0, 2.0, 3.0, 9.0]), ["", "", "", "high"])[1]
      'high'
      >>> peak_batch_size(B, np.array([1.0, 2.0, 3.0, 3.0]), ["", "", "", ""])[:2]
      (16.0, 'plateau')
    """
    from theory.stats import refined_argmax

    ok = np.array([c == "" for c in censored], dtype=bool) & np.isfinite(lr)
    if ok.sum() < 2:
        return math.nan, "none", int(ok.sum())
    top = np.isclose(lr[ok], lr[ok].max(), rtol=1e-9, atol=0.0)
    if top.sum() > 1:  # the same grid lr at several batch sizes: a plateau, not a peak
        return float(B[ok][top][0]), "plateau", int(ok.sum())
    p = refined_argmax(B[ok], lr[ok], log=True)
    return float(p.x), p.censored, int(ok.sum())


def _examples(r: Mapping[str, Any]) -> int | None:
    v = r.get("horizon_examples")
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return None
    return int(float(v))


def _untarget(d: Mapping[str, Any]) -> dict[str, Any]:
    """A dict of :func:`validate.optimum.analyse_target` without its (placeholder) target."""
    out = {k: v for k, v in d.items() if k != "target"}
    if isinstance(out.get("text"), str):
        out["text"] = out["text"].replace(" at target 0: ", ": ").replace("target 0: ", "")
    return out


def analyse(
    rows: Sequence[Mapping[str, Any]],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> list[GroupAnalysis]:
    """Per (start, horizon): best lr per batch size, the peak batch size, the law comparison.

    Best lr: :func:`validate.optimum.analyse_target` on :func:`as_sweep_rows` (grid argmax of
    the mean loss reduction refined by a local quadratic in log lr, censored at an edge of the
    lrs tried, seed-bootstrap interval at the expanded level). Peak: :func:`peak_batch_size`
    on the interior optima, with the same seed bootstrap for log B_peak. Law comparison:
    leave-one-batch-size-out with the theory laws fitted to the other batch sizes
    (``law_fit="free"``) against the baselines, paired intervals; the fall of lr* past the
    peak (``fall``) as in the sweep.
    """
    from theory.stats import bootstrap_interval
    from validate import optimum

    groups: dict[tuple[str, int, int], list[Mapping[str, Any]]] = {}
    for r in rows:
        e = _examples(r)
        # a steps horizon is one group per K; an examples horizon one per E (K varies with B)
        key = (str(r["checkpoint"]), 0 if e is None else 1, int(r["horizon"]) if e is None else e)
        groups.setdefault(key, []).append(r)
    out = []
    for (name, kind, hv), g in sorted(
        groups.items(), key=lambda kv: (kv[1][0]["checkpoint_step"], kv[0])
    ):
        ta = optimum.analyse_target(
            as_sweep_rows(g), 0.0, n_boot=n_boot, level=level, seed=seed, law_fit="free"
        )
        h, e = (hv, None) if kind == 0 else (None, hv)
        head = {
            "checkpoint": name,
            "checkpoint_step": int(g[0]["checkpoint_step"]),
            "horizon": h,
            "horizon_examples": e,
        }
        best = [
            {
                **head,
                **{k: b[k] for k in ("batch_size", "lr", "lo", "hi", "censored")},
                "grid_lr": b["grid_lr"],
                "value": b["value"],
                "n_seeds": b["n_seeds"],
                "p_edge": b["p_edge"],
                "floor": b["floor"],
            }
            for b in ta.best
            if b["rule"] == "further"
        ]
        cube, n = ta.cube, ta.cube.n_seeds
        x, cen, n_int = peak_batch_size(
            cube.B, ta.point.lr["further"], ta.point.censored["further"]
        )
        lo = hi = math.nan
        if math.isfinite(x) and n_boot and n >= optimum.MIN_BOOT_SEEDS:

            def log_peak(idx: np.ndarray, cube: optimum.Cube = cube) -> float:
                d = optimum.draw(cube, idx)
                v = peak_batch_size(cube.B, d.lr["further"], d.censored["further"])[0]
                return math.log(v) if math.isfinite(v) else math.nan

            lo, hi, _ = bootstrap_interval(
                log_peak, n, n_boot=n_boot, level=optimum.expanded_level(level, n), seed=seed
            )
            lo, hi = math.exp(lo), math.exp(hi)
        peak = {**head, "b_peak": x, "lo": lo, "hi": hi, "censored": cen, "n_interior": n_int}
        out.append(
            GroupAnalysis(
                name,
                int(g[0]["checkpoint_step"]),
                float(g[0]["checkpoint_loss"]),
                h,
                best,
                peak,
                [{**head, **_untarget(r)} for r in ta.loo],
                {**head, **_untarget(ta.verdict)},
                {**head, **_untarget(ta.fall)},
                e,
            )
        )
    return out
