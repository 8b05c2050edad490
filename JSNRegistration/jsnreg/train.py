"""Training of the registration network on pairs with known motions: real and generated.

`jsnreg train` reproduces the shipped weights (fixed seed, CPU). Its data:
- real pairs (real_pairs.py) from the TRAIN hands of the annotation file only (never val or test
  hands), a mix of the realistic and hard motion sets;
- generated pairs from the varied generator (synthetic.make_joint_pair(varied=True));
each cut to a random ROI shape (square, wide, tall; see SHAPES) so the network sees every aspect
ratio. It trains JSNNet on the parameter error (Huber) with an extra term on the JSN itself
(dy_upper - dy_lower, the number that matters), validates on real VAL pairs and on the standard
generated pairs, and writes the weights and a card (JSON: command, seed, data, validation errors)
atomically beside each other.
`jsnreg train --fine` trains the fine stage (network.py) on the same kinds of pairs made residual: the
moving ROI sampled at a perturbed truth per bone (see RESIDUAL), the target what is left.
`jsnreg train --precise` trains the precise stage likewise, on smaller residuals (RESIDUAL_PRECISE) seen
on the precise stage's finer grid (network.PRECISE_ZOOM).
`jsnreg train --fine --cascade` trains the fine stage on a cascade (as detection's second pass,
detect_refine.py): a share CASCADE_SHARE of its pairs at what the coarse stage beside --out actually
leaves on them, the others at random residuals as --fine: the coarse stage's largest errors lie beyond
RESIDUAL's range, where the random residuals never go.
`jsnreg train --precise --cascade` does the same for the precise stage: a share CASCADE_SHARE of its
pairs at what the coarse and fine stages beside --out (FINE_PASSES fine passes, as inference runs them)
actually leave, the others at random RESIDUAL_PRECISE residuals as --precise.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .errors import InputError
from .network import (DEFAULT_WEIGHTS, FINE_PASSES, FINE_SUFFIX, NET_PX, PRECISE_SUFFIX, PRECISE_ZOOM, Network,
                      fine_weights_path, grid_step_px, motions_to_params, network_input)
from .transforms import BoneMotion, compose, inverse
from .torchnet import JSNNet

CHUNK = 250  # pairs per generation task (one seed each, so the data set does not depend on workers)
# Training ROI shapes (rows, cols): every even shape whose half-diagonal fits the real
# neighbourhood's margin for the largest motions (real_pairs.HOOD_PX).
SHAPES = ((128, 128), (80, 160), (96, 144), (112, 112), (64, 128), (96, 96), (128, 96), (144, 96), (160, 80))
REAL_MOTION_MIX = (("realistic", 0.6), ("hard", 0.4))
# What the fine stage is trained to remove, per bone (the coarse stage's error on real pairs is
# about 1 px SD): log scale, rotation (deg), dx, dy (px), each uniform in +-a*range with a per-bone
# a uniform in [0.1, 1] so that small residuals, where precision counts, are common.
RESIDUAL = dict(log_scale=0.015, rot_deg=2.0, shift_px=3.0)
# What the precise stage removes: what the fine stage leaves on real val pairs (JSN SD 0.3-0.6 px,
# the largest errors about 2 px), with the same small-residual emphasis.
RESIDUAL_PRECISE = dict(log_scale=0.006, rot_deg=0.8, shift_px=1.5)
# Per stage: (residual ranges or None for the coarse stage's whole motions, grid zoom, weights suffix);
# "cascade" is the fine stage trained partly on the coarse stage's own estimates, "precise-cascade" the
# precise stage trained partly on the coarse and fine stages' estimates.
STAGES = {"coarse": (None, 1, ""), "fine": (RESIDUAL, 1, FINE_SUFFIX), "precise": (RESIDUAL_PRECISE, PRECISE_ZOOM, PRECISE_SUFFIX),
          "cascade": (RESIDUAL, 1, FINE_SUFFIX), "precise-cascade": (RESIDUAL_PRECISE, PRECISE_ZOOM, PRECISE_SUFFIX)}
# The stages (weights suffixes beside --out) each cascade follows: their estimate is where it starts.
CASCADE_FOLLOWS = {"cascade": ("",), "precise-cascade": ("", FINE_SUFFIX)}
# The share of the cascade's pairs seen at the earlier stages' estimate (the rest at a random residual).
CASCADE_SHARE = 0.5
# With --offset-mm D: this share of the real pairs has its ROI centred off the joint along the finger, by one of
# -D, -D/2, +D/2, +D (a click or a detection off the joint; the adults' annotations sit 1.3 mm distal): on real
# val pairs centred 1.3 mm distal the network alone erred by 40-60 % more (SD 0.089 -> 0.128 px realistic square).
OFFSET_SHARE = 0.5
OFFSET_FRACTIONS = (-1.0, -0.5, 0.5, 1.0)  # of D


def offset_choices(offset_mm: float) -> tuple[int, ...]:
    """The ROI centre offsets (whole neighbourhood rows, + distal) real training pairs are cut at, 0 first."""
    from .real_pairs import offset_rows

    return (0,) + tuple(offset_rows(f * offset_mm) for f in OFFSET_FRACTIONS) if offset_mm else (0,)


def _centre_crop(pair, shape: tuple[int, int]):
    """The pair cut to a smaller centred ROI (even margins keep the centre and so the truth)."""
    rows, cols = pair.fixed.shape
    r0, c0 = (rows - shape[0]) // 2, (cols - shape[1]) // 2
    for name in ("fixed", "moving", "upper_mask"):
        setattr(pair, name, getattr(pair, name)[r0:r0 + shape[0], c0:c0 + shape[1]])
    return pair


def _residual(rng: np.random.Generator, ranges: dict) -> BoneMotion:
    a = rng.uniform(0.1, 1.0)
    u = rng.uniform(-1.0, 1.0, 4) * a
    return BoneMotion(float(np.exp(u[0] * ranges["log_scale"])), float(np.radians(u[1] * ranges["rot_deg"])),
                      float(u[2] * ranges["shift_px"]), float(u[3] * ranges["shift_px"]))


@lru_cache(maxsize=2)
def _leading_network(path: str, stage: str) -> Network:
    """The stages the cascade `stage` follows, of the coarse weights at `path`: the coarse one alone,
    or the coarse and fine ones (with FINE_PASSES passes, never a precise stage lying beside them)."""
    net = Network.load(Path(path), fine=FINE_SUFFIX in CASCADE_FOLLOWS[stage])
    net.precise = None
    return net


def _encode_one(pair, residual_rng: np.random.Generator | None, stage: str = "coarse", coarse: str | None = None):
    """(input, target) of one pair; for the fine and precise stages (with residual_rng), as they see
    it: the moving ROI sampled at the truth after the inverse of a random residual R per bone, the
    target R. Stages "cascade" and "precise-cascade": a share CASCADE_SHARE of the pairs at the
    estimate E of the stages they follow (CASCADE_FOLLOWS) of the coarse weights at `coarse` instead,
    the target what E leaves (truth after the inverse of E)."""
    shape = pair.fixed.shape
    if residual_rng is None:
        return network_input(pair.fixed, pair.moving, pair.upper_mask), motions_to_params(pair.upper, pair.lower, shape)
    ranges, zoom, _ = STAGES[stage]
    rest = [_residual(residual_rng, ranges) for _ in range(2)]
    estimate = tuple(compose(inverse(r, shape), t) for r, t in zip(rest, (pair.upper, pair.lower)))
    if stage in CASCADE_FOLLOWS and residual_rng.random() < CASCADE_SHARE:
        estimate = _leading_network(coarse, stage).predict(pair.fixed, pair.moving, pair.upper_mask)
        rest = [compose(t, inverse(e, shape)) for t, e in zip((pair.upper, pair.lower), estimate)]
    return (network_input(pair.fixed, pair.moving, pair.upper_mask, motions=estimate, zoom=zoom),
            motions_to_params(*rest, shape, zoom))


def _encode(pairs, residual_rng: np.random.Generator | None = None, stage: str = "coarse", coarse: str | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys = zip(*(_encode_one(p, residual_rng, stage, coarse) for p in pairs))
    shapes = [p.fixed.shape for p in pairs]
    return np.stack(xs), np.stack(ys), np.array(shapes, dtype=np.int32)


def _residual_rng(seed: int, stage: str) -> np.random.Generator | None:
    return np.random.default_rng([seed, 1]) if stage != "coarse" else None


def _generated_chunk(task: tuple[int, bool, int, str, tuple | None]):
    """CHUNK generated pairs: varied ones in random shapes, or the standard 128 px ones (encoded for
    the stage the task's fourth element names; the last: the cascade's coarse weights (path, SHA-256)
    or None)."""
    from .synthetic import make_joint_pair

    seed, varied, n, stage, coarse = task
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        if not varied:
            pairs.append(make_joint_pair(rng))
            continue
        shape = SHAPES[rng.integers(len(SHAPES))]
        pairs.append(_centre_crop(make_joint_pair(rng, size_px=max(shape), varied=True), shape))
    return _encode(pairs, _residual_rng(seed, stage), stage, coarse and coarse[0])


def _real_chunk(task: tuple[int, str, tuple[tuple[int, int], ...], str, tuple | None, float, float]):
    """Real pairs from (joint index, count) of `split` (joints loaded from the cache in this worker;
    encoded for the stage the task's fourth element names; the fifth as _generated_chunk's last; the
    sixth: the share of hard-motion pairs, the rest realistic; the last: --offset-mm, 0 for centred ROIs only)."""
    from .real_pairs import load_joints, make_pairs

    seed, split, counts, stage, coarse, hard_share, offset_mm = task
    offsets = offset_choices(offset_mm)
    joints = {r: load_joints(split, offset_rows=r) for r in offsets}  # the same joints in the same order
    rng = np.random.default_rng(seed)
    pairs = []
    for i, count in counts:
        for _ in range(count):
            shape = SHAPES[rng.integers(len(SHAPES))]
            motion = REAL_MOTION_MIX[0][0] if rng.random() < 1.0 - hard_share else REAL_MOTION_MIX[1][0]
            r = offsets[rng.integers(1, len(offsets))] if len(offsets) > 1 and rng.random() < OFFSET_SHARE else 0
            pairs += make_pairs(joints[r][i], rng, 1, motion, shape)
    return _encode(pairs, _residual_rng(seed, stage), stage, coarse and coarse[0])


def _source_key(split: str | None = None) -> str:
    """What a cached chunk depends on: the generators' and the input encoding's code, the shapes
    and motion mix, and for real chunks the annotation file."""
    import hashlib

    from . import network, real_pairs, synthetic, transforms
    from .real_hands import annotation_path

    h = hashlib.sha1()
    for path in (network.__file__, real_pairs.__file__, synthetic.__file__, transforms.__file__):
        h.update(Path(path).read_bytes())
    h.update(repr((CHUNK, SHAPES, REAL_MOTION_MIX, STAGES)).encode())  # what the chunk functions here use
    if split is not None and annotation_path().is_file():
        h.update(annotation_path().read_bytes())
    return h.hexdigest()


def _cached(fn, task, split: str | None = None):
    """fn(task), kept under the temp folder (float16 inputs) so trial and final runs share chunks."""
    import hashlib
    import tempfile

    key = hashlib.sha1(repr((fn.__name__, task, _source_key(split))).encode()).hexdigest()[:24]
    path = Path(tempfile.gettempdir()) / "jsnreg-train-cache" / f"{key}.npz"
    if path.is_file():
        d = np.load(path)
        return d["x"].astype(np.float32), d["y"], d["s"]
    x, y, shapes = fn(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x.astype(np.float16), y=y, s=shapes)
    os.replace(tmp, path)
    return x.astype(np.float16).astype(np.float32), y, shapes


def _cached_generated(task):
    return _cached(_generated_chunk, task)


def _cached_real(task):
    return _cached(_real_chunk, task, split=task[1])


def _concat(parts):
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def generated_dataset(n_pairs: int, seed: int, varied: bool = True, workers: int = 2, stage: str = "coarse",
                      coarse: tuple | None = None):
    """Inputs (n, 3, 64, 64), targets (n, 8), ROI shapes (n, 2) of generated pairs for `stage`
    (coarse: the cascade's coarse weights, (path, SHA-256))."""
    tasks = [(seed * 100_003 + k, varied, min(CHUNK, n_pairs - k * CHUNK), stage, coarse)
             for k in range((n_pairs + CHUNK - 1) // CHUNK)]
    if not tasks:
        return np.zeros((0, 3, NET_PX, NET_PX), np.float32), np.zeros((0, 8), np.float32), np.zeros((0, 2), np.int32)
    with ProcessPoolExecutor(workers) as pool:
        return _concat(list(pool.map(_cached_generated, tasks)))


def real_dataset(split: str, n_pairs: int, seed: int, workers: int = 2, stage: str = "coarse",
                 coarse: tuple | None = None, hard_share: float = REAL_MOTION_MIX[1][1], offset_mm: float = 0.0):
    """n_pairs real pairs from the hands of `split`, spread evenly over its joints, for `stage`, a share
    hard_share of them with hard motions (the rest realistic), a share OFFSET_SHARE of them off the joint
    when offset_mm (offset_choices); returns (inputs, targets, shapes, image keys used)."""
    from .real_pairs import load_joints

    for r in offset_choices(offset_mm)[1:]:
        load_joints(split, workers=workers, offset_rows=r)  # fills the cache once
    joints = load_joints(split, workers=workers)
    if not joints:
        raise ValueError(f"no annotated real joints in split {split!r}")
    order = np.random.default_rng(seed).permutation(len(joints))
    counts = np.bincount(np.arange(n_pairs) % len(joints), minlength=len(joints))
    used = [(int(i), int(c)) for i, c in zip(order, counts) if c]
    groups = [tuple(used[k:k + 20]) for k in range(0, len(used), 20)]
    tasks = [(seed * 100_019 + k, split, g, stage, coarse, hard_share, offset_mm) for k, g in enumerate(groups)]
    joints = [joints[i] for i, _ in used]
    with ProcessPoolExecutor(workers) as pool:
        data = _concat(list(pool.map(_cached_real, tasks)))
    return (*data, sorted({j.image for j in joints}))


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


def jsn_errors_px(model: JSNNet, x: np.ndarray, y: np.ndarray, shapes: np.ndarray, zoom: int = 1) -> np.ndarray:
    """Network-alone JSN error (px of each pair's own ROI) on a data set (encoded on a grid of `zoom`)."""
    from .network import OUT_SCALE

    with torch.inference_mode():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)]).numpy()
    half_px = np.array([NET_PX / 2.0 * grid_step_px(tuple(s), zoom) for s in shapes])
    d = (pred - y) * OUT_SCALE
    return (d[:, 3] - d[:, 7]) * half_px


def _stats(err: np.ndarray) -> dict:
    return {"n": int(len(err)), "mean": float(err.mean()), "sd": float(err.std()),
            "max_abs": float(np.abs(err).max()), "over_0.5px": float((np.abs(err) > 0.5).mean())}


def train(out_path: Path = DEFAULT_WEIGHTS, n_train: int = 24_000, real_share: float = 0.5,
          standard_share: float = 0.25,
          n_val: int = 600, epochs: int = 30, seed: int = 0, batch: int = 64, lr: float = 2e-3,
          init: Path | None = None, threads: int = 1, stage: str = "coarse", workers: int = 2,
          hard_share: float = REAL_MOTION_MIX[1][1], offset_mm: float = 0.0, log=print) -> dict:
    """Train from scratch and write weights + card; returns the card.

    stage "fine" or "precise": train that stage on residual pairs and write it beside out_path's
    coarse weights (network.fine_weights_path); its validation errors are that stage's on residual pairs.
    stage "cascade": the fine stage, a share CASCADE_SHARE of its pairs (training and validation) at the
    estimate of the coarse weights at out_path (they must exist; the card records their SHA-256);
    "precise-cascade": the precise stage, likewise at the estimate of the coarse weights at out_path and
    their fine stage beside them (both must exist; the card records both SHA-256).
    workers: processes making the pairs (the data does not depend on them).

    real_share: the share of the n_train pairs made from real TRAIN hands (0 when none are
    annotated: then the card says so); hard_share: the share of those with hard motions (the rest
    realistic; validation keeps REAL_MOTION_MIX); offset_mm: a share OFFSET_SHARE of the real training pairs cut
    off the joint along the finger (offset_choices; validation stays centred); standard_share: the share of the generated rest drawn
    from the standard generator (the benchmark's), the others from the varied one. Validation: n_val real pairs from VAL hands (when
    annotated) and n_val standard generated pairs. init: weights to start from (fine-tuning; the
    card records their SHA-256 and their own card's command) instead of random ones.
    """
    from .real_hands import annotated_images, annotation_path, real_hands_dir

    ranges, zoom, suffix = STAGES[stage]
    torch.manual_seed(seed)
    # One thread: on a shared 2-core machine a second one cost 3x per step (measured); the thread
    # count is recorded since it can change the last bits of the sums.
    torch.set_num_threads(threads)
    t0 = time.time()
    from .network import file_sha256

    # The annotated splits whose images are here (a clone without ../shared trains on generated pairs alone).
    splits = {e["split"] for e in annotated_images().values()} if real_hands_dir() is not None else set()
    n_real = int(round(n_train * real_share)) if "train" in splits else 0
    ann = annotation_path()
    parts, data = [], {"annotations": ann.name, "annotations_sha256": file_sha256(ann) if ann.is_file() else "",
                       "real_train_hands": [], "real_val_hands": []}
    coarse = None
    if stage in CASCADE_FOLLOWS:
        # What the cascade follows, named and hashed (the hashes also key the cached pairs).
        follows = [fine_weights_path(out_path, s) if s else Path(out_path) for s in CASCADE_FOLLOWS[stage]]
        for path, what in zip(follows, ("coarse weights", "fine stage")):
            if not path.is_file():
                raise InputError(f"the cascade needs the {what} it follows at {path}")
        coarse = (str(Path(out_path).resolve()), *(file_sha256(p) for p in follows))
        data["cascade"] = {"coarse": follows[0].name, "coarse_sha256": coarse[1], "share": CASCADE_SHARE}
        if len(follows) > 1:
            data["cascade"].update({"fine": follows[1].name, "fine_sha256": coarse[2], "fine_passes": FINE_PASSES})
    kw = dict(stage=stage, coarse=coarse, workers=workers)
    if n_real:
        *real, hands = real_dataset("train", n_real, seed, hard_share=hard_share, offset_mm=offset_mm, **kw)
        parts.append(real)
        data["real_train_hands"] = hands
        data["n_real_train"] = int(len(real[0]))
        data["real_train_hard_share"] = hard_share
        if offset_mm:
            data["real_train_offsets_mm"] = {"share": OFFSET_SHARE, "mm": [f * offset_mm for f in OFFSET_FRACTIONS]}
    n_standard = int(round((n_train - n_real) * standard_share))
    for n, varied, s in ((n_train - n_real - n_standard, True, seed), (n_standard, False, seed + 7)):
        parts.append(generated_dataset(n, s, varied=varied, **kw))
    data["n_generated_train"] = int(len(parts[-1][0]) + len(parts[-2][0]))
    data["n_generated_standard_train"] = int(len(parts[-1][0]))
    x_train, y_train, _ = _concat(parts)
    val = {"generated": generated_dataset(n_val, seed + 1, varied=False, **kw)}
    if "val" in splits:
        *val["real"], data["real_val_hands"] = real_dataset("val", n_val, seed + 1, **kw)
    data["shapes"] = [list(s) for s in SHAPES]
    log(f"{len(x_train)} training pairs ({data.get('n_real_train', 0)} real from "
        f"{len(data['real_train_hands'])} train hands, {data['n_generated_train']} generated), "
        f"validation {', '.join(f'{k} {len(v[0])}' for k, v in val.items())} in {time.time() - t0:.0f} s")
    model = JSNNet()
    if init is not None:
        init = Path(init)
        model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True))
        init_card = init.with_suffix(".json")
        data["init"] = {"file": init.name, "sha256": file_sha256(init),
                        "command": json.loads(init_card.read_text()).get("command", "") if init_card.is_file() else ""}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(x_train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    if init is not None:
        log("start: validation JSN error " + ", ".join(
            f"{k} SD {jsn_errors_px(model.eval(), *v, zoom=zoom).std():.3f} px" for k, v in val.items()))
    gen_t = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen_t)
        total = 0.0
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            xb, yb = _flip(xt[idx], yt[idx], torch.rand(batch, generator=gen_t) < 0.5)
            loss = _loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * batch
        model.eval()
        errs = {k: jsn_errors_px(model, *v, zoom=zoom) for k, v in val.items()}
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(xt):.4f}, validation JSN error "
            + ", ".join(f"{k} SD {e.std():.3f} px max {np.abs(e).max():.2f}" for k, e in errs.items())
            + f" ({time.time() - t0:.0f} s)")
    errs = {k: _stats(jsn_errors_px(model, *v, zoom=zoom)) for k, v in val.items()}
    card = {
        "version": __version__,
        "command": f"jsnreg train --seed {seed} --pairs {n_train} --real-share {real_share:g} "
                   f"--standard-share {standard_share:g} --epochs {epochs}"
                   + (f" --lr {lr:g}" if lr != 2e-3 else "")
                   + (f" --hard-share {hard_share:g}" if hard_share != REAL_MOTION_MIX[1][1] else "")
                   + (f" --offset-mm {offset_mm:g}" if offset_mm else "") + (f" --init {init.name}" if init is not None else "")
                   + {"coarse": "", "cascade": " --fine --cascade", "precise-cascade": " --precise --cascade"
                      }.get(stage, f" --{stage}"),
        "seed": seed, "n_train": len(x_train), "epochs": epochs, "data": data, "input": "padded",
        "stage": stage, **({"residual": ranges, "zoom": zoom} if ranges else {}),
        "validation_jsn_error_px": errs,
        "train_seconds": round(time.time() - t0),
        "torch": torch.__version__, "threads": threads,
    }
    out_path = fine_weights_path(out_path, suffix) if stage != "coarse" else Path(out_path)
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
