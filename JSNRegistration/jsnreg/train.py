"""Training of the registration network on generated joint pairs with known motions.

`jsnreg train` reproduces the shipped weights (fixed seed, CPU): it generates the pairs with
synthetic.make_joint_pair, trains JSNNet on the parameter error (Huber), with an extra term on
the JSN itself (dy_upper - dy_lower, the number that matters), and writes the weights and a card
(JSON: command, seed, data size, validation errors) atomically beside each other.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .network import DEFAULT_WEIGHTS, Network, motions_to_params, network_input, params_to_motions
from .torchnet import JSNNet
from .synthetic import make_joint_pair

CHUNK = 250  # pairs per generation task (one seed each, so the data set does not depend on workers)


def _chunk(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(CHUNK):
        pair = make_joint_pair(rng)
        xs.append(network_input(pair.fixed, pair.moving, pair.upper_mask))
        ys.append(motions_to_params(pair.upper, pair.lower, pair.fixed.shape))
    return np.stack(xs), np.stack(ys)


def make_dataset(n_pairs: int, seed: int, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, 3, 64, 64) and targets (n, 8) of `n_pairs` generated pairs (rounded up to CHUNK)."""
    seeds = [seed * 100_003 + k for k in range((n_pairs + CHUNK - 1) // CHUNK)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_chunk, seeds))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _flip(x: torch.Tensor, y: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror chosen samples left-right: exact for the centred grid (dx and rotation change sign)."""
    x = torch.where(which[:, None, None, None], x.flip(-1), x)
    sign = torch.tensor([1, -1, -1, 1] * 2, dtype=y.dtype)
    y = torch.where(which[:, None], y * sign, y)
    return x, y


def _loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    huber = nn.functional.smooth_l1_loss(pred, target, beta=0.05)
    jsn = nn.functional.smooth_l1_loss(pred[:, 3] - pred[:, 7], target[:, 3] - target[:, 7], beta=0.05)
    return huber + jsn


def jsn_errors_px(model: JSNNet, x: np.ndarray, y: np.ndarray, roi_px: int = 128) -> np.ndarray:
    """Network-alone JSN error (px of a roi_px ROI) on a data set."""
    with torch.inference_mode():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)]).numpy()
    err = []
    for p, t in zip(pred, y):
        pu, pl = params_to_motions(p, (roi_px, roi_px))
        tu, tl = params_to_motions(t, (roi_px, roi_px))
        err.append((pu.dy_px - pl.dy_px) - (tu.dy_px - tl.dy_px))
    return np.asarray(err)


def train(out_path: Path = DEFAULT_WEIGHTS, n_train: int = 24_000, n_val: int = 1_000, epochs: int = 30,
          seed: int = 0, batch: int = 64, lr: float = 2e-3, log=print) -> dict:
    """Train from scratch and write weights + card; returns the card."""
    torch.manual_seed(seed)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t0 = time.time()
    x_train, y_train = make_dataset(n_train, seed)
    x_val, y_val = make_dataset(n_val, seed + 1)
    log(f"generated {len(x_train)} training and {len(x_val)} validation pairs in {time.time() - t0:.0f} s")
    model = JSNNet()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(x_train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            xb, yb = _flip(xt[idx], yt[idx], torch.rand(batch, generator=gen) < 0.5)
            loss = _loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * batch
        model.eval()
        err = jsn_errors_px(model, x_val, y_val)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(xt):.4f}, validation JSN error "
            f"SD {err.std():.3f} px, max {np.abs(err).max():.2f} px ({time.time() - t0:.0f} s)")
    err = jsn_errors_px(model, x_val, y_val)
    card = {
        "version": __version__,
        "command": f"jsnreg train --seed {seed} --pairs {n_train} --epochs {epochs}",
        "seed": seed, "n_train": len(x_train), "n_val": len(x_val), "epochs": epochs,
        "validation_jsn_error_px": {"mean": float(err.mean()), "sd": float(err.std()),
                                    "max_abs": float(np.abs(err).max())},
        "train_seconds": round(time.time() - t0),
        "torch": torch.__version__,
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out_path)
    tmp_card = out_path.with_suffix(".json.tmp")
    tmp_card.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp_card, out_path.with_suffix(".json"))
    Network.load(out_path)  # the file we wrote loads back
    log(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB)")
    return card
