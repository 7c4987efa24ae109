"""The networks of the built-in workloads, written in plain torch (no torchvision).

Every model here is vmap-friendly: no BatchNorm running statistics (buffers that a functional,
vmapped step cannot update), no dropout (per-model randomness under vmap), no Python-side state
mutated in ``forward``. Image models take uint8 images and normalise inside ``forward`` so the
datasets can stay uint8 in memory (4× less than float32, and the per-model batch gather in the
batched engine moves 4× fewer bytes). Language models take uint8 byte tokens.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class MLP(nn.Module):
    """Fully connected ReLU network ``d_in → hidden… → d_out`` (the synthetic workload)."""

    def __init__(self, d_in: int, hidden: tuple[int, ...], d_out: int) -> None:
        super().__init__()
        dims = (d_in, *hidden, d_out)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class CNN5(nn.Module):
    """5-layer CNN for 28×28 grayscale: 2 conv (3×3, ReLU, 2×2 max-pool) + 3 fully connected.

    Two convolutions take 28×28 to 7×7 with enough receptive field for Fashion-MNIST's shapes;
    three dense layers then give the "5 layers" of the paper with most parameters in cheap
    matmuls, which keeps many vmapped copies fast on a CPU.
    Input: uint8 (N, 1, 28, 28) or (N, 28, 28); normalised with the dataset's mean/std.
    """

    MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST train-set pixel mean / std (of x / 255)

    def __init__(
        self, c1: int = 16, c2: int = 32, h1: int = 128, h2: int = 64, n_classes: int = 10
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * 7 * 7, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = (x.float() / 255.0 - self.MEAN) / self.STD
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _gn(c: int) -> nn.GroupNorm:
    # 32 groups at full width (Wu & He 2018); fewer at smoke width so each group has >= 2 chans
    return nn.GroupNorm(max(1, min(32, c // 2)), c)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convs with GroupNorm, identity or 1×1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.n1 = _gn(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.n2 = _gn(c_out)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _gn(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.n1(self.conv1(x)))
        out = self.n2(self.conv2(out))
        return F.relu(out + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) adapted to 64×64 Tiny-ImageNet, GroupNorm instead of BatchNorm.

    Stem: one 3×3 stride-1 conv and no max-pool (the usual adaptation of the 224×224 stem to
    small images), then 4 stages × 2 basic blocks at widths w, 2w, 4w, 8w with strides 1, 2, 2, 2
    (64 → 8 pixels), global average pool, linear classifier. ``width=64`` is the standard
    ResNet-18 (11.3 M parameters with 200 classes). GroupNorm replaces BatchNorm because
    BatchNorm's running-statistics buffers cannot be updated inside a vmapped functional step
    and its batch statistics would couple the examples of a batch (changing the gradient noise
    the theory is about).
    """

    MEAN = (0.480, 0.448, 0.398)  # Tiny-ImageNet channel means / stds (of x / 255)
    STD = (0.277, 0.269, 0.282)

    def __init__(
        self, n_classes: int = 200, width: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2)
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.n0 = _gn(width)
        layers, c = [], width
        for i, nb in enumerate(blocks):
            c_out = width * 2**i
            for j in range(nb):
                layers.append(BasicBlock(c, c_out, 2 if (i > 0 and j == 0) else 1))
                c = c_out
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c, n_classes)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 3:  # NHWC uint8 as stored → NCHW
            x = x.permute(0, 3, 1, 2).contiguous()
        x = (x.float() / 255.0 - self.mean) / self.std
        x = F.relu(self.n0(self.stem(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention written out (vmap-safe; no fused kernel needed)."""

    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        if d % n_head:
            raise ValueError(f"d_model must be divisible by n_head; got {d=} {n_head=}")
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        h = self.n_head
        q, k, v = (z.view(n, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj(y)


class Block(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2 style): attention and a 4× GELU MLP."""

    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_head)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    """A small GPT-2 (simplified DistilGPT2): byte tokens, learned positions, tied embeddings.

    DistilGPT2 is GPT-2 with 6 layers of width 768; the simplified version keeps the
    architecture (pre-LN blocks, GELU MLP, learned absolute positions, weight-tied output) and
    shrinks depth, width and context so a paper-scale sweep fits a single GPU. Input: uint8
    or integer tokens (N, T); output logits (N, T, vocab).
    """

    def __init__(
        self, vocab: int = 256, ctx: int = 128, d: int = 256, n_layer: int = 4, n_head: int = 4
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith(("proj.weight", "out.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.wte(idx.long()) + self.wpe(pos)
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.T
