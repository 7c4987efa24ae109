"""The evaluation schedule of validate.engine (``eval_schedule="fixed" | "relative"``).

"fixed" must be the engine of before, bit for bit (checked against the engine as it was at
commit 71e512d, loaded from git); "relative" evaluates on a geometric subset of the fixed
grid, so its S is never below the fixed S and, where the loss stays below the target once
crossed, less than (1 + eval_rel)·S above it (:func:`validate.engine.eval_gap`). Runs on
synthetic-mlp in a few seconds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_models import _one_torch_thread, mlp  # noqa: F401 (fixtures)
from validate.engine import eval_gap, train_group, train_single
from validate.presets import get_preset
from validate.sweep import Unit, run_unit, sweep_key

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "71e512d83596eba8f425342c5e3a1e94266fcbca"  # engine.py before the schedule existed
LRS, SEEDS, B = (1e-3, 3e-3), (0, 1), 8
TARGETS = (1.6, 1.3, 1.1)
EE, REL = 2, 0.2  # a fine fixed grid and a coarse relative one: the bound has room to fail


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def _grid(ee: int, rel: float, stop: int) -> list[int]:
    """The relative schedule's evaluation steps, from its definition (independent of eval_gap):
    from t, the next is the smallest multiple of ee that is >= t + max(ee, floor(rel t))."""
    out, t = [0], 0
    while t < stop:
        want = t + max(ee, math.floor(rel * t))
        t = min(ee * math.ceil(want / ee), stop)
        out.append(t)
    return out


@pytest.fixture(scope="module")
def both(mlp):
    w, d = mlp
    kw = dict(targets=TARGETS, max_steps=800, eval_every=EE)
    fixed = train_group(w, d, B, LRS, SEEDS, **kw)
    rel = train_group(w, d, B, LRS, SEEDS, eval_schedule="relative", eval_rel=REL, **kw)
    return fixed, rel


def test_eval_gap_matches_its_definition():
    """eval_gap reproduces the hand-written grid, and "fixed" is the plain every-ee grid."""
    for ee, rel in ((1, 0.05), (5, 0.05), (10, 0.05), (2, 0.2), (7, 0.33)):
        g, t = [0], 0
        while t < 20000:
            t = min(t + eval_gap(t, ee, "relative", rel), 20000)
            g.append(t)
        assert g == _grid(ee, rel, 20000)
        assert all(s % ee == 0 for s in g[:-1])  # a subset of the fixed grid (+ the last step)
        assert eval_gap(1234, ee) == ee
    # hand values, e = 10, rel = 0.05: floor(0.05 t) <= 10 up to t = 219 (gap e); at 220 it is
    # 11 -> 20; at 410 floor(20.5) = 20 -> 20; at 1010 floor(50.5) = 50 -> 50
    got = [eval_gap(t, 10, "relative") for t in (0, 210, 219, 220, 410, 1010, 10000)]
    assert got == [10, 10, 10, 20, 20, 50, 500]


def test_relative_s_within_the_stated_bound(both):
    """For every run: S_fixed <= S_rel < (1 + rel)·S_fixed, S_rel on the relative grid; where
    S_rel == S_fixed the row (loss at target, the fork's further steps) is the fixed row."""
    fixed, rel = both
    grid = set(_grid(EE, REL, 800))
    assert len(fixed) == len(rel) == len(LRS) * len(SEEDS) * len(TARGETS)
    n_equal = 0
    for a, b in zip(fixed, rel, strict=True):
        assert (a["lr"], a["seed"], a["target"]) == (b["lr"], b["seed"], b["target"])
        assert a["reached"] and b["reached"], (a, b)  # these lrs reach every target
        sf, sr = a["steps"], b["steps"]
        assert sr in grid
        assert sf <= sr < (1 + REL) * sf, (a["lr"], a["seed"], a["target"], sf, sr)
        assert sr <= sf * (1 + REL) + EE  # the brief's looser form
        assert b["loss_at_target"] <= b["target"]
        if sr == sf:
            n_equal += 1
            for k in ("loss_at_target", "loss_after_further", "loss_reduction", "examples"):
                assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), k
    assert n_equal < len(fixed)  # the schedules did differ somewhere: the bound was exercised


def test_relative_s_never_below_fixed_even_when_the_loss_bounces(mlp):
    """At a noisy lr the loss can dip below a target and come back: the relative S may then
    land later than (1 + rel)·S_fixed (the guarantee is conditional), but never earlier."""
    w, d = mlp
    kw = dict(targets=TARGETS, max_steps=600, eval_every=EE)
    fixed = train_group(w, d, B, [1e-2], SEEDS, **kw)
    rel = train_group(w, d, B, [1e-2], SEEDS, eval_schedule="relative", eval_rel=REL, **kw)
    grid = set(_grid(EE, REL, 600))
    for a, b in zip(fixed, rel, strict=True):
        if a["reached"]:
            assert b["steps"] is None or (b["steps"] >= a["steps"] and b["steps"] in grid)


def _engine_before(tmp: Path):
    """validate/engine.py as it was at commit BEFORE, as a module (None: git cannot say)."""
    try:
        src = subprocess.run(
            ["git", "show", f"{BEFORE}:validate/engine.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    path = tmp / "engine_before.py"
    path.write_text(src)
    name = "_engine_before_eval_schedule"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(mod)
    return mod


def test_fixed_is_bit_identical_to_the_engine_before(mlp, tmp_path):
    """Default and explicit "fixed" give exactly the rows (steps, losses, forks) of the engine
    before the schedule existed, for the batched and the single-model trainers."""
    old = _engine_before(tmp_path)
    if old is None:
        pytest.skip(f"git cannot show commit {BEFORE}")
    w, d = mlp
    kw = dict(targets=TARGETS[:2], max_steps=250, eval_every=5)
    ref = _strip(old.train_group(w, d, B, LRS, SEEDS, **kw))
    assert _strip(train_group(w, d, B, LRS, SEEDS, **kw)) == ref
    assert _strip(train_group(w, d, B, LRS, SEEDS, eval_schedule="fixed", **kw)) == ref
    assert any(r["reached"] for r in ref)
    ref1 = _strip(old.train_single(w, d, B, LRS[:1], SEEDS[:1], **kw))
    assert _strip(train_single(w, d, B, LRS[:1], SEEDS[:1], eval_schedule="fixed", **kw)) == ref1


def test_number_of_evaluations_grows_like_log_s(mlp):
    """Evaluations to reach step T: fixed T/ee; relative ~ 1/rel + log(T·rel/ee)/log(1+rel),
    so quadrupling T adds about log 4 / log(1 + rel) evaluations instead of multiplying them."""
    w, d = mlp
    ee, rel = 2, 0.1

    def count(sched: str, T: int) -> int:
        n = [0]
        train_group(
            w,
            d,
            4,
            [1e-3],
            [0],
            targets=(1e-6,),  # never reached: the run goes to T
            max_steps=T,
            eval_every=ee,
            eval_schedule=sched,
            eval_rel=rel,
            on_progress=lambda k: n.__setitem__(0, n[0] + 1),
        )
        return n[0]

    assert count("fixed", 300) == 150
    got = {T: count("relative", T) for T in (300, 1200)}
    for T, n in got.items():
        assert n == len(_grid(ee, rel, T)) - 1  # one evaluation per grid step after 0
        assert n <= 1 / rel + math.log(T * rel / ee) / math.log(1 + rel) + 2
    assert got[300] < 150 / 2
    assert abs(got[1200] - got[300] - math.log(4) / math.log(1 + rel)) <= 3  # ≈ 14.5, not ×4


def test_resume_under_relative_gives_the_uninterrupted_rows(mlp):
    """A checkpoint is at an evaluation boundary, so the schedule resumes where it was."""
    w, d = mlp
    kw = dict(
        targets=TARGETS[:1], max_steps=250, eval_every=EE, eval_schedule="relative", eval_rel=REL
    )
    states = []
    full = train_group(w, d, B, LRS, SEEDS, checkpoint_every=0.0, on_checkpoint=states.append, **kw)
    assert len(states) >= 3
    for st in (states[len(states) // 2], states[-1]):
        assert _strip(train_group(w, d, B, LRS, SEEDS, resume=st, **kw)) == _strip(full)
    with pytest.raises(ValueError, match="another group"):  # a fixed run cannot resume it
        train_group(w, d, B, LRS, SEEDS, resume=states[1], **{**kw, "eval_schedule": "fixed"})


def test_bad_schedule_arguments_are_refused(mlp):
    w, d = mlp
    for bad in (dict(eval_schedule="log"), dict(eval_schedule="relative", eval_rel=0.0)):
        with pytest.raises(ValueError, match="eval_"):
            train_group(w, d, B, LRS, SEEDS, max_steps=5, **bad)
    with pytest.raises(ValueError, match="eval_rel"):
        train_single(w, d, B, LRS, SEEDS, max_steps=5, eval_rel=1.0)
    p = get_preset("tiny", "synthetic-mlp")
    with pytest.raises(ValueError, match="eval_schedule"):
        dataclasses.replace(p, eval_schedule="sometimes")
    with pytest.raises(ValueError, match="eval_rel"):
        dataclasses.replace(p, eval_schedule="relative", eval_rel=-0.1)


def test_schedule_enters_the_sweep_key_and_fixed_keys_are_unchanged():
    """A fixed preset's config has exactly the fields it had before the schedule existed; a
    relative one (and each eval_rel) gets its own key; no shipped preset is relative yet."""
    p = get_preset("tiny", "synthetic-mlp")
    assert set(p.config()) == {
        "name",
        "workload",
        "size",
        "batch_sizes",
        "lrs",
        "seeds",
        "betas",
        "targets",
        "further_steps",
        "max_steps",
        "eval_every",
        "seeds_per_unit",
    }
    r5 = dataclasses.replace(p, eval_schedule="relative")
    r10 = dataclasses.replace(p, eval_schedule="relative", eval_rel=0.1)
    fp = {"workload": "synthetic-mlp"}
    keys = [sweep_key(x, fp) for x in (p, r5, r10)]
    assert keys[0] != keys[1] != keys[2] != keys[0]
    assert keys[1]["grid"]["eval_schedule"] == "relative" and keys[1]["grid"]["eval_rel"] == 0.05
    assert len({x.config_hash() for x in (p, r5, r10)}) == 3
    # eval_rel is ignored by "fixed", so it must not split fixed keys
    assert dataclasses.replace(p, eval_rel=0.1).config() == p.config()
    # "relative" can miss a dip below the target at small B (the bound is conditional): the
    # paper presets keep the fixed schedule; the CPU-scale ones (issue 11) need the saving
    assert get_preset("paper-fmnist-small").eval_schedule == "fixed"
    for name in ("fmnist-small-cpu", "fmnist-wide-cpu", "eli5-gpt-cpu-adam", "eli5-gpt-cpu-sign"):
        assert get_preset(name).eval_schedule == "relative"
        assert get_preset(name).eval_rel == 0.05


def test_run_unit_passes_the_schedule_only_when_relative():
    """The sweep hands "relative" to the trainer; a fixed preset calls it exactly as before
    (so trainers that predate the option keep working)."""
    seen = []

    def trainer(*args, **kwargs):
        seen.append(kwargs)
        return []

    p = get_preset("tiny", "synthetic-mlp")
    unit = Unit("u", p.batch_sizes[0], p.lrs, p.seeds)
    run_unit(p, unit, trainer=trainer, checkpoint_every=None)
    run_unit(dataclasses.replace(p, eval_schedule="relative", eval_rel=0.1), unit, trainer=trainer)
    assert "eval_schedule" not in seen[0] and "eval_rel" not in seen[0]
    assert seen[1]["eval_schedule"] == "relative" and seen[1]["eval_rel"] == 0.1
