"""The trainer callbacks (validate.callbacks) measure a known noise scale from pre-clip gradients.

The problem: linear regression y = w*·x + σε with x ~ N(0, I_d), ε ~ N(0, 1), loss ½(w·x − y)²,
held at w = w* + δ (learning rate 0, so every step sees the same parameters). The per-example
gradient is g = (x·δ − σε) x, so (Isserlis: E[(x·δ)² x xᵀ] = |δ|² I + 2 δδᵀ)

    G = E g = δ,   E g gᵀ = |δ|² I + 2 δδᵀ + σ² I,
    |G|² = |δ|²,   tr Σ = tr E g gᵀ − |G|² = (d + 1)|δ|² + d σ²,   B_simple = tr Σ/|G|².

With d = 4, |δ|² = 1, σ² = 1: |G|² = 1, tr Σ = 9, B_simple = 9. Examples are drawn i.i.d. (an
endless stream), which is what the two-batch estimator's unbiasedness assumes. With β = 0 the
history holds each step's unbiased estimates, so their means must match within 5 SE.

Clipping is ON with a threshold (0.1) far below |G_big| ≈ 1.1, so a callback that read clipped
gradients would see |G_big|² = 0.01 and estimate |G|² < 0 (caught); gradient accumulation is ON
(micro-batches of 8, 4 per step: B_small = 8, B_big = 32).
"""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch

from surgelab.monitor_log import COLUMNS, load_history, save_history
from tests.tolerances import mc_close
from theory.stats import ratio_se_paired
from validate.callbacks import HISTORY_COLUMNS, METRIC_KEYS

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the test extra installs lightning
    pl = None

D, SIGMA2 = 4, 1.0
G2_TRUE = 1.0  # |δ|² with δ = e₁
TR_TRUE = (D + 1) * G2_TRUE + D * SIGMA2  # 9
MICRO, ACCUM, STEPS = 8, 4, 250
CLIP = 0.1


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one torch thread is fastest on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def restore_environ():
    """ddp_spawn sets MASTER_PORT / LOCAL_RANK in this process: put the environment back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


class Stream(torch.utils.data.IterableDataset):
    """Endless i.i.d. (x, y) with y = w*·x + σε, w* = 0; seeded per rank."""

    def __init__(self, seed: int, as_dict: bool) -> None:
        self.seed, self.as_dict = seed, as_dict

    def __iter__(self):
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        g = torch.Generator().manual_seed(1000 * self.seed + rank)
        while True:
            x = torch.randn(256, D, generator=g)
            y = math.sqrt(SIGMA2) * torch.randn(256, generator=g)
            for i in range(256):
                yield {"x": x[i], "labels": y[i]} if self.as_dict else (x[i], y[i])


def _linear_at_delta() -> torch.nn.Linear:
    lin = torch.nn.Linear(D, 1, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, 0] = 1.0  # w = w* + e₁
    return lin


def _half_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (pred.squeeze(-1) - y).pow(2).mean()


def _assert_known_noise_scale(history: list[dict], steps: int) -> None:
    """β = 0: rows are per-step unbiased estimates; means of |G|², tr Σ and their ratio
    match the closed form within 5 SE."""
    assert [r["step"] for r in history] == list(range(1, steps + 1))
    g2 = np.array([r["grad_sq"] for r in history])
    tr = np.array([r["trace_sigma"] for r in history])
    n = len(g2)
    assert mc_close(g2.mean(), G2_TRUE, g2.std(ddof=1) / math.sqrt(n)), g2.mean()
    assert mc_close(tr.mean(), TR_TRUE, tr.std(ddof=1) / math.sqrt(n)), tr.mean()
    b_hat = tr.mean() / g2.mean()
    assert mc_close(b_hat, TR_TRUE / G2_TRUE, ratio_se_paired(tr, g2)), b_hat


# --------------------------------------------------------------------------- Lightning

if pl is not None:

    class LinRegModule(pl.LightningModule):
        def __init__(self, lr: float = 0.0) -> None:
            super().__init__()
            self.lin = _linear_at_delta()
            self.lr = lr

        def forward(self, x):
            return self.lin(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return _half_mse(self.lin(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    class CaptureLogger(pl.loggers.Logger):
        """Keeps every log_metrics call (the trainer's logger, in memory)."""

        def __init__(self) -> None:
            super().__init__()
            self.rows: list[tuple[int, dict]] = []

        @property
        def name(self):
            return "capture"

        @property
        def version(self):
            return 0

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def log_metrics(self, metrics, step=None):
            self.rows.append((step, dict(metrics)))

    class ClippedGradProbe(pl.Callback):
        """Norm of the gradient the optimizer stepped on (read before the next zero_grad)."""

        def __init__(self) -> None:
            self.norms: list[float] = []

        def on_before_zero_grad(self, trainer, pl_module, optimizer):
            if all(p.grad is not None for p in pl_module.parameters()):
                sq = sum(float(p.grad.double().pow(2).sum()) for p in pl_module.parameters())
                self.norms.append(math.sqrt(sq))


def _lightning_trainer(tmp_path, callbacks, **kw):
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        accumulate_grad_batches=ACCUM,
        gradient_clip_val=CLIP,
        logger=False,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    defaults.update(kw)
    return pl.Trainer(callbacks=callbacks, **defaults)


def _loader(seed: int, as_dict: bool = False):
    return torch.utils.data.DataLoader(Stream(seed, as_dict), batch_size=MICRO)


@pytest.mark.skipif(pl is None, reason="needs lightning (pip install 'surgelab[lightning]')")
def test_lightning_known_noise_scale_with_clipping_and_accumulation(tmp_path):
    """LightningNoiseScale with gradient_clip_val = 0.1 (it clips: the optimizer steps on
    |g| = 0.1) and accumulate_grad_batches = 4 recovers |G|² = 1, tr Σ = 9, B_simple = 9; the
    logger receives noise_scale/* equal to the history rows."""
    from validate.callbacks import LightningNoiseScale

    noise, clipped, logger = LightningNoiseScale(beta=0.0), ClippedGradProbe(), CaptureLogger()
    trainer = _lightning_trainer(tmp_path, [noise, clipped], logger=logger)
    trainer.fit(LinRegModule(), _loader(seed=1))
    _assert_known_noise_scale(noise.history, STEPS)
    # clipping was on and active while the callback measured: every step's optimizer gradient
    # had norm 0.1, while the measured |G_big|² ≈ |G|² + tr Σ/32 ≈ 1.3 (pre-clip)
    assert len(clipped.norms) >= STEPS - 1
    assert max(clipped.norms) == pytest.approx(CLIP, rel=1e-4)  # clip_grad_norm_'s 1e-6 eps
    logged = {step: m for step, m in logger.rows if METRIC_KEYS[0] in m}
    assert len(logged) >= STEPS - 1
    for row in noise.history[:-1]:
        m = logged[row["step"] - 1]  # Lightning logs at the step count before this step
        assert {k: m[k] for k in METRIC_KEYS} == pytest.approx(
            {k: row[c] for k, c in zip(METRIC_KEYS, HISTORY_COLUMNS[1:])}, rel=1e-6
        )


if pl is not None:

    class SaveHistory(pl.Callback):
        """Test helper: each DDP rank writes the noise callback's history (spawned processes
        do not send callbacks back)."""

        def __init__(self, out_dir: str) -> None:
            self.out_dir = out_dir

        def on_train_end(self, trainer, pl_module):
            noise = next(c for c in trainer.callbacks if hasattr(c, "history"))
            save_history(noise.history, f"{self.out_dir}/rank{trainer.global_rank}.jsonl")


@pytest.mark.skipif(pl is None, reason="needs lightning (pip install 'surgelab[lightning]')")
def test_lightning_ddp_two_gloo_ranks_known_noise_scale(tmp_path, monkeypatch, restore_environ):
    """Real DDP (ddp_spawn, 2 gloo processes on CPU) with clipping and accumulate_grad_batches = 2:
    the pair is (each rank's accumulated gradient, B = 16; the all-reduced one, B = 32). Both
    ranks record the same history, and it recovers |G|² = 1, tr Σ = 9, B_simple = 9. (Were the
    local gradient read after the all-reduce, tr Σ would be 0; after clipping, |G|² < 0.)"""
    from validate.callbacks import LightningNoiseScale

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    steps = 200
    trainer = _lightning_trainer(
        tmp_path,
        [LightningNoiseScale(beta=0.0), SaveHistory(str(tmp_path))],
        strategy="ddp_spawn",
        devices=2,
        accumulate_grad_batches=2,
        max_steps=steps,
    )
    trainer.fit(LinRegModule(), _loader(seed=4))
    h0, h1 = (load_history(tmp_path / f"rank{r}.jsonl") for r in (0, 1))
    assert h0 == h1
    _assert_known_noise_scale(h0, steps)


@pytest.mark.skipif(pl is None, reason="needs lightning (pip install 'surgelab[lightning]')")
def test_lightning_refuses_one_batch_size_per_step(tmp_path):
    """One device without accumulation has no second batch size: a ValueError naming the knob."""
    from validate.callbacks import LightningNoiseScale

    trainer = _lightning_trainer(
        tmp_path, [LightningNoiseScale()], accumulate_grad_batches=1, max_steps=1
    )
    with pytest.raises(ValueError, match="accumulate_grad_batches >= 2"):
        trainer.fit(LinRegModule(), _loader(seed=2))


# --------------------------------------------------------------------------- Hugging Face


class HFLinReg(torch.nn.Module):
    """A plain nn.Module the Trainer accepts: forward(**batch) returns {"loss": ...}."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = _linear_at_delta()

    def forward(self, x, labels):
        return {"loss": _half_mse(self.lin(x), labels)}


def _hf_trainer(tmp_path, callbacks, **kw):
    transformers = pytest.importorskip("transformers")
    args = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        max_steps=STEPS,
        per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=ACCUM,
        learning_rate=0.0,
        lr_scheduler_type="constant",
        optim="sgd",
        max_grad_norm=CLIP,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    args.update(kw)
    return transformers.Trainer(
        model=HFLinReg(),
        args=transformers.TrainingArguments(**args),
        train_dataset=Stream(seed=3, as_dict=True),
        callbacks=callbacks,
    )


def test_hf_known_noise_scale_with_clipping_and_accumulation(tmp_path, monkeypatch):
    """HFNoiseScale with max_grad_norm = 0.1 (it clips: the optimizer steps on |g| = 0.1 and the
    Trainer's own pre-clip grad_norm exceeds 0.1) and gradient_accumulation_steps = 4 recovers
    |G|² = 1, tr Σ = 9, B_simple = 9; trainer.log carries noise_scale/* on logging steps."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from validate.callbacks import HFNoiseScale

    class ClippedGradProbe(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.norms: list[float] = []

        def on_optimizer_step(self, args, state, control, model=None, **kwargs):
            sq = sum(float(p.grad.double().pow(2).sum()) for p in model.parameters())
            self.norms.append(math.sqrt(sq))

    noise, clipped = HFNoiseScale(beta=0.0), ClippedGradProbe()
    trainer = _hf_trainer(tmp_path, [noise, clipped])
    trainer.train()
    _assert_known_noise_scale(noise.history, STEPS)
    assert len(clipped.norms) == STEPS
    assert max(clipped.norms) == pytest.approx(CLIP, rel=1e-4)  # clip_grad_norm_'s 1e-6 eps
    logs = trainer.state.log_history
    assert min(e["grad_norm"] for e in logs if "grad_norm" in e) > CLIP  # pre-clip norms
    ours = [e for e in logs if METRIC_KEYS[0] in e]
    assert [e["step"] for e in ours] == list(range(10, STEPS + 1, 10))
    by_step = {r["step"]: r for r in noise.history}
    for e in ours:
        row = by_step[e["step"]]
        assert {k: e[k] for k in METRIC_KEYS} == pytest.approx(
            {k: row[c] for k, c in zip(METRIC_KEYS, HISTORY_COLUMNS[1:])}, rel=1e-12
        )
    # the Trainer's own logging still happens on its schedule
    assert [e["step"] for e in logs if "loss" in e] == list(range(10, STEPS + 1, 10))
    # the wrapper around accelerator.clip_grad_norm_ is gone after train()
    assert "clip_grad_norm_" not in vars(trainer.accelerator)
    # the saved monitor log reads back exactly (inf included: early |G|² averages can be < 0)
    for suffix in (".csv", ".jsonl"):
        path = save_history(noise.history, tmp_path / f"noise{suffix}")
        assert load_history(path) == noise.history


def _hf_ddp_worker(rank: int, port: int, out_dir: str, accum: int) -> None:
    """One torchrun-like rank: the Trainer (via accelerate) joins a 2-rank gloo group."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",
        HF_HUB_OFFLINE="1",
    )
    torch.set_num_threads(1)
    from validate.callbacks import HFNoiseScale

    noise = HFNoiseScale(beta=0.0)
    trainer = _hf_trainer(
        out_dir, [noise], ddp_backend="gloo", gradient_accumulation_steps=accum, max_steps=200
    )
    assert trainer.args.world_size == 2
    trainer.train()
    save_history(noise.history, f"{out_dir}/rank{rank}.jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("accum", [1, 2])
def test_hf_ddp_two_gloo_ranks_known_noise_scale(tmp_path, accum):
    """Real DDP under the Trainer (2 gloo processes, max_grad_norm = 0.1), with and without
    accumulation: each rank's accumulated gradient (B = 8·accum) against the all-reduced one
    (B = 16·accum); both ranks record the same history, which recovers |G|² = 1, tr Σ = 9.
    Slow (two processes import transformers): opt in with -m slow."""
    pytest.importorskip("transformers")
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_hf_ddp_worker, args=(port, str(tmp_path), accum), nprocs=2, join=True)
    h0, h1 = (load_history(tmp_path / f"rank{r}.jsonl") for r in (0, 1))
    assert h0 == h1
    _assert_known_noise_scale(h0, 200)


def test_hf_refuses_one_batch_size_per_step(tmp_path, monkeypatch):
    """One process without accumulation: a ValueError naming gradient_accumulation_steps."""
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from validate.callbacks import HFNoiseScale

    trainer = _hf_trainer(tmp_path, [HFNoiseScale()], gradient_accumulation_steps=1, max_steps=1)
    with pytest.raises(ValueError, match="gradient_accumulation_steps >= 2"):
        trainer.train()


# --------------------------------------------------------------------------- the monitor log


def test_monitor_log_round_trip_by_hand(tmp_path):
    """A hand-written CSV (columns reordered, one extra) and JSONL read back to the same rows;
    inf survives both; the CSV save writes exactly the header step,b_simple,grad_sq,trace_sigma."""
    (tmp_path / "a.csv").write_text(
        "grad_sq,step,extra,trace_sigma,b_simple\n-0.5,1,x,3,inf\n0.25,2,y,3.125,12.5\n"
    )
    (tmp_path / "a.jsonl").write_text(
        '{"step": 1, "b_simple": Infinity, "grad_sq": -0.5, "trace_sigma": 3}\n\n'
        '{"step": 2, "b_simple": 12.5, "grad_sq": 0.25, "trace_sigma": 3.125, "x": 0}\n'
    )
    want = [
        {"step": 1, "b_simple": math.inf, "grad_sq": -0.5, "trace_sigma": 3.0},
        {"step": 2, "b_simple": 12.5, "grad_sq": 0.25, "trace_sigma": 3.125},
    ]
    assert load_history(tmp_path / "a.csv") == want
    assert load_history(tmp_path / "a.jsonl") == want
    save_history(want, tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_text().splitlines()[0] == "step,b_simple,grad_sq,trace_sigma"
    assert COLUMNS == HISTORY_COLUMNS  # the app layer's copy of the library's columns


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("m.csv", "step,b_simple,grad_sq\n1,2,3\n", r"missing column\(s\) trace_sigma"),
        ("m.csv", "", r"missing column\(s\) step,b_simple,grad_sq,trace_sigma"),
        ("m.csv", "step,b_simple,grad_sq,trace_sigma\n1,2,3,4\n2,,3,4\n", r"m.csv:3: b_simple"),
        ("m.csv", "step,b_simple,grad_sq,trace_sigma\n1,abc,3,4\n", r"m.csv:2: b_simple is 'abc'"),
        ("m.csv", "step,b_simple,grad_sq,trace_sigma\n1.5,2,3,4\n", r"m.csv:2: step is '1.5'"),
        ("m.jsonl", '{"step": 1, "b_simple": 2, "grad_sq": 3}\n', r"m.jsonl:1: missing"),
        ("m.jsonl", "[1, 2, 3, 4]\n", r"m.jsonl:1: a JSON object"),
        ("m.jsonl", "{oops\n", r"m.jsonl:1: not JSON"),
        ("m.jsonl", '{"step": 1, "b_simple": null, "grad_sq": 3, "trace_sigma": 4}\n', "None"),
        ("m.tsv", "step\tb_simple\n", r"\.csv or \.jsonl"),
    ],
)
def test_monitor_log_bad_files_name_file_line_and_column(tmp_path, name, text, match):
    """Every bad monitor log is one ValueError naming the file, the line and the column."""
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=match):
        load_history(tmp_path / name)


def test_save_history_rejects_rows_without_the_columns(tmp_path):
    """A row without trace_sigma is an error naming the row; nothing is written."""
    with pytest.raises(ValueError, match="history row 1: missing column"):
        save_history(
            [dict.fromkeys(COLUMNS, 1), {"step": 2, "b_simple": 1.0, "grad_sq": 1.0}],
            tmp_path / "h.csv",
        )
    assert not list(tmp_path.iterdir())


def test_callbacks_module_imports_neither_trainer_package():
    """validate.callbacks builds its classes on first use: no top-level import of lightning,
    pytorch_lightning or transformers (they take seconds and are optional extras)."""
    import ast

    import validate.callbacks as cb

    tree = ast.parse(open(cb.__file__).read())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"lightning", "pytorch_lightning", "transformers", "accelerate"}
    with pytest.raises(AttributeError, match="NoSuchCallback"):
        cb.NoSuchCallback  # noqa: B018
