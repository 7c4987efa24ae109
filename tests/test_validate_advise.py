"""`surgelab advise` (validate.advise): fitting both laws to best-lr points and predicting."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tests.tolerances import LSQ_RTOL
from theory import sgd as sgd_law
from theory import sign as sign_law
from validate.advise import advise, fit_law, main, points_from_run, read_points_csv

B = np.array([4.0, 8, 16, 32, 64, 128, 256, 512, 1024])


def test_recovers_surge_law_parameters_and_prediction():
    """Noise-free points on the surge curve: (B_noise, ε_max) and ε_opt at a new B recovered to
    the solver's tolerance; the surge law fits better than SGD's."""
    lr = sign_law.surge_lr(B, 3e-3, 90.0)
    a = advise(300.0, (B, lr), n_boot=0)
    assert a.b_noise_adam == pytest.approx(90.0, rel=LSQ_RTOL)
    assert a.eps_max_adam == pytest.approx(3e-3, rel=LSQ_RTOL)
    assert a.lr_adam == pytest.approx(float(sign_law.surge_lr(300.0, 3e-3, 90.0)), rel=LSQ_RTOL)
    assert a.rms_adam < a.rms_sgd
    assert any("SMALLER Adam learning rate" in w for w in a.warnings)
    below = advise(40.0, (B, lr), n_boot=0)
    assert not below.warnings


def test_recovers_sgd_law_parameters():
    """Points on McCandlish's curve: the SGD fit recovers (B_noise, ε_max) and fits better."""
    lr = sgd_law.optimal_lr(B, 0.5, 120.0)
    f = fit_law("sgd", B, lr)
    assert f.b_noise == pytest.approx(120.0, rel=LSQ_RTOL)
    assert f.eps_max == pytest.approx(0.5, rel=LSQ_RTOL)
    assert f.rms < fit_law("adam", B, lr).rms


def test_bootstrap_interval_covers_the_truth_and_warns_on_extrapolation():
    """5% log-normal noise on the points: the 90% bootstrap interval holds the point estimate
    and (for this seed) the true value; a target past the measured range warns."""
    rng = np.random.default_rng(1)
    lr = sign_law.surge_lr(B, 1e-3, 60.0) * np.exp(0.05 * rng.standard_normal(B.size))
    a = advise(100.0, (B, lr), n_boot=200, seed=0)
    lo, hi = a.interval_adam
    assert lo <= a.lr_adam <= hi
    assert lo <= float(sign_law.surge_lr(100.0, 1e-3, 60.0)) <= hi
    assert math.isfinite(a.interval_sgd[0])
    far = advise(5000.0, (B, lr), n_boot=0)
    assert any("outside the measured range" in w for w in far.warnings)


def test_from_parameters():
    """Given (B_noise, ε_max) the predictions are the closed forms themselves."""
    a = advise(50.0, None, b_noise=100.0, eps_max=1e-3, b_noise_sgd=20.0, eps_max_sgd=0.1)
    assert a.lr_adam == pytest.approx(float(sign_law.surge_lr(50.0, 1e-3, 100.0)))
    assert a.lr_sgd == pytest.approx(float(sgd_law.optimal_lr(50.0, 0.1, 20.0)))
    assert not any("SMALLER" in w for w in a.warnings)


@pytest.mark.parametrize("bad, match", [
    (dict(points=([], [])), "no \\(batch_size, lr\\) points"),
    (dict(points=([0, 8], [1e-3, 2e-3])), "batch sizes must be positive"),
    (dict(points=([8, 8], [1e-3, 2e-3])), ">= 2 distinct batch sizes"),
    (dict(points=([8, 16], [1e-3, -2e-3])), "learning rates must be positive"),
    (dict(points=None), "give either points"),
    (dict(points=None, b_noise=-1.0, eps_max=1.0), "b_noise must be a positive"),
])
def test_bad_input_raises(bad, match):
    """Bad inputs raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        advise(32.0, **bad)
    with pytest.raises(ValueError, match="batch size must be positive"):
        advise(0.0, (B, sign_law.surge_lr(B, 1e-3, 60.0)))


def _csv(path, text):
    path.write_text(text)
    return str(path)


def test_cli_points_json(tmp_path, capsys):
    """--points FILE --json prints lr_adam, lr_sgd and the intervals for the target batch size."""
    lr = sign_law.surge_lr(B, 2e-3, 50.0)
    f = _csv(tmp_path / "p.csv", "batch_size,lr\n" + "".join(f"{b},{e}\n" for b, e in zip(B, lr)))
    assert main(["--points", f, "--batch-size", "200", "--json", "--n-boot", "30"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("lr_adam", "lr_sgd", "interval_adam", "interval_sgd", "b_noise_adam",
              "eps_max_adam", "warnings"):
        assert k in out
    assert out["lr_adam"] == pytest.approx(float(sign_law.surge_lr(200.0, 2e-3, 50.0)),
                                           rel=LSQ_RTOL)
    assert main(["--points", f, "--batch-size", "200"]) == 0
    assert "SMALLER Adam learning rate" in capsys.readouterr().out


def test_cli_bad_input_exits_2(tmp_path, capsys):
    """Empty CSV, missing columns, non-positive batch sizes, missing files: exit 2 + message."""
    cases = [
        (_csv(tmp_path / "empty.csv", "batch_size,lr\n"), "has no rows"),
        (_csv(tmp_path / "cols.csv", "bs,lr\n8,0.1\n16,0.2\n"), "must have columns"),
        (_csv(tmp_path / "neg.csv", "batch_size,lr\n-8,0.1\n16,0.2\n"), "must be positive"),
        (str(tmp_path / "missing.csv"), "does not exist"),
    ]
    for path, msg in cases:
        assert main(["--points", path, "--batch-size", "32"]) == 2
        assert msg in capsys.readouterr().err
    assert main(["--b-noise", "10", "--batch-size", "32"]) == 2
    assert "--eps-max" in capsys.readouterr().err
    assert main(["--batch-size", "32"]) == 2                   # no source: argparse usage error


def test_from_run_folders(tmp_path, capsys):
    """--from reads a sweep summary's best_lr list, or an estimate run's last checkpoint."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    lr = sign_law.surge_lr(B, 1e-3, 64.0)
    (sweep / "summary.json").write_text(json.dumps(
        {"b_noise": 64.0, "best_lr": [{"batch_size": b, "lr": e} for b, e in zip(B, lr)]}))
    pts, params, _ = points_from_run(sweep)
    assert pts is not None and np.allclose(pts[0], B) and params == {}
    assert main(["--from", str(sweep), "--batch-size", "64", "--json", "--n-boot", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["b_noise_adam"] == pytest.approx(64.0, rel=1e-4)
    est = tmp_path / "est"
    est.mkdir()
    (est / "summary.json").write_text(json.dumps({"checkpoints": [
        {"step": 0, "b_noise_thm3": 10.0, "eps_max_thm3": 0.01, "b_noise_sgd": 30.0,
         "eps_max_sgd": 1.0, "b_noise_sgd_full": 40.0, "eps_max_sgd_full": 2.0}]}))
    assert main(["--from", str(est), "--batch-size", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["b_noise_adam"] == 10.0 and out["b_noise_sgd"] == 40.0
    assert main(["--from", str(tmp_path / "nowhere"), "--batch-size", "20"]) == 2


def test_read_points_csv_skips_batch_sizes_without_a_best_lr(tmp_path):
    """A best_lr.csv row with an empty lr (target never reached) is skipped, not an error."""
    f = _csv(tmp_path / "b.csv", "batch_size,best_lr\n8,0.1\n16,\n32,0.3\n")
    b, e = read_points_csv(f)
    assert b.tolist() == [8.0, 32.0] and e.tolist() == [0.1, 0.3]


def test_python_dash_m_entry_point():
    """`python -m validate.advise` runs the same main()."""
    r = subprocess.run([sys.executable, "-m", "validate.advise", "--b-noise", "100", "--eps-max",
                        "1e-3", "--batch-size", "400", "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["lr_adam"] == pytest.approx(
        float(sign_law.surge_lr(400.0, 1e-3, 100.0)))


def test_from_points_table_uses_the_sweeps_best_lr_definition(tmp_path):
    """A folder with only points.csv advises the sweep's own best lrs (validate.fits): an lr
    where 1 of 4 seeds reached the target, with a large reduction, does not win, and the
    primary target is the lowest one with a valid B_noise fit, not merely the lowest."""
    from theory.rundir import write_table

    rows = []
    for t, s_of in ((2.0, {8: 100, 64: 30}), (1.0, {8: 100, 64: 100})):  # 1.0: no B_noise
        for b, steps in s_of.items():
            for seed in range(4):
                rows.append(dict(batch_size=b, lr=1e-3, seed=seed, target=t, reached=True,
                                 steps=steps, loss_reduction=0.1, further_diverged=False))
                ok = seed == 0 or t == 1.0  # at 1.0 every seed reaches: 5e-3 would win there
                rows.append(dict(batch_size=b, lr=5e-3, seed=seed, target=t, reached=ok,
                                 steps=steps if ok else None,
                                 loss_reduction=1.0 if ok else None, further_diverged=False))
    run = tmp_path / "sweep"
    run.mkdir()
    write_table(run / "points.csv", rows)
    (b, e), params, _ = points_from_run(run)
    assert b.tolist() == [8.0, 64.0] and e.tolist() == [1e-3, 1e-3] and params == {}
