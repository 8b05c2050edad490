"""`jsnreg bench --hand`: a whole hand at clinical resolution, timed stage by stage, beside SimpleITK.

Two cases, each a 2000 x 2500 px (columns x rows) pair at 0.1 mm/px with 14 joints:
- generated: synthetic.make_hand_pair(seed, spacing 0.1), 1920 x 2400 px, padded with its edge
  values to 2000 x 2500; every joint narrowed by a known amount (truth per joint);
- real: an RSNA bone-age hand (1600 x 2080 px, 8-bit, NOMINAL 0.1 mm/px) padded with black to
  2000 x 2500, its joints from the annotation file; the follow-up is the same film repositioned by a
  known whole-image similarity transform, under another exposure curve and with added noise, so
  every joint's true JSN is 0 and its true follow-up position is known. The default hand is a
  validation hand (the split of real_hands.py), so that tuning speed against it spares the test hands.
Per case: `jsnreg quantify` in a fresh process (start to results written, no report), with the
command's own stage times (imports, read, placement, registration, write; wall and CPU seconds),
once with the 14 joints given and once detecting them on the baseline (and its detection stage);
then, in this process, on the same pair: placement (our local searches vs a SimpleITK registration
of each joint's ROI from the same coarse alignment) and per-joint registration (ours at the working
resolution, ours at full resolution, and the SimpleITK per-bone peer of `jsnreg bench` on the
full-resolution ROIs with our split), each with its error against the truth and time ratios.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError
from .joints import STANDARD_JOINTS
from .real_hands import ANNOTATIONS, real_hands_dir

SPACING_MM = 0.1
SHAPE_PX = (2500, 2000)  # rows, columns
# Repositioning of the real film for its follow-up: rotation (deg), scale, shift (px).
REAL_MOTION = (3.0, 1.02, (14.3, -9.6))
REAL_NOISE = 0.01


def _pad(image: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Centre `image` on SHAPE_PX; returns it and the (x, y) offset of its origin."""
    rows, cols = image.shape
    if rows > SHAPE_PX[0] or cols > SHAPE_PX[1]:
        raise InputError(f"image {image.shape} is larger than the bench's {SHAPE_PX} px")
    top, left = (SHAPE_PX[0] - rows) // 2, (SHAPE_PX[1] - cols) // 2
    padded = np.pad(image, ((top, SHAPE_PX[0] - rows - top), (left, SHAPE_PX[1] - cols - left)), mode=mode)
    return padded, np.array([left, top], dtype=np.float64)


def similarity_matrix(angle_deg: float, scale: float, shift_xy, centre_xy) -> np.ndarray:
    """3x3 on (x, y, 1): turn (clockwise on screen) and scale about centre_xy, then shift."""
    a = np.radians(angle_deg)
    rs = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = np.eye(3)
    m[:2, :2] = rs
    m[:2, 2] = np.asarray(centre_xy, float) - rs @ np.asarray(centre_xy, float) + np.asarray(shift_xy, float)
    return m


def moved_film(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The film moved by m (3x3 on x, y, 1): out(q) = image(m^-1 q), cubic, black outside (float64)."""
    from scipy import ndimage

    inv = np.linalg.inv(m)
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float64)
    return ndimage.map_coordinates(image.astype(np.float64), [inv[1, 0] * x + inv[1, 1] * y + inv[1, 2],
                                                              inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]],
                                   order=3, mode="constant", cval=0.0)


def repositioned(image: np.ndarray, m: np.ndarray, seed: int) -> np.ndarray:
    """The film moved by m (moved_film), another exposure curve (gain, offset, gamma) and Gaussian noise."""
    moved = moved_film(image, m)
    rng = np.random.default_rng(seed)
    exposed = 0.92 * np.clip(moved, 0, 1) ** 1.15 + 0.03
    return np.clip(exposed + rng.normal(0.0, REAL_NOISE, image.shape), 0, 1).astype(np.float32)


def turned_finger(pixels: np.ndarray, mcp_xy, dip_xy, degrees: float, spacing_mm: float,
                  half_width_mm: float = 6.5) -> np.ndarray:
    """The film with one finger posed otherwise: the band distal of its MCP joint along MCP -> DIP
    (half_width_mm to either side of that axis) turned about the MCP by `degrees` (clockwise on screen),
    its old place filled with the film's background (5th percentile). The band's straight sides cut the
    finger's soft tissue: a check of where joints are found, not of a fit's quality."""
    from scipy import ndimage

    mcp, dip = np.asarray(mcp_xy, float), np.asarray(dip_xy, float)
    t = (dip - mcp) / np.linalg.norm(dip - mcp)
    n = np.array([-t[1], t[0]])
    y, x = np.mgrid[0:pixels.shape[0], 0:pixels.shape[1]].astype(np.float64)
    qx, qy = x - mcp[0], y - mcp[1]
    a = np.radians(degrees)
    bx, by = np.cos(a) * qx + np.sin(a) * qy, -np.sin(a) * qx + np.cos(a) * qy  # where each pixel came from
    half = half_width_mm / spacing_mm
    now = (bx * t[0] + by * t[1] > 0) & (np.abs(bx * n[0] + by * n[1]) < half)
    was = (qx * t[0] + qy * t[1] > 0) & (np.abs(qx * n[0] + qy * n[1]) < half)
    moved = ndimage.map_coordinates(pixels.astype(np.float64), [by + mcp[1], bx + mcp[0]], order=1)
    return np.where(now, moved, np.where(was, np.percentile(pixels, 5), pixels)).astype(np.float32)


def generated_case(out: Path, seed: int) -> dict:
    """Write the generated pair (DICOM), its joints file and truth; return the case description."""
    from .synthetic import make_hand_pair

    hand = make_hand_pair(seed=seed, spacing_mm=SPACING_MM)
    baseline, offset = _pad(hand.baseline, "edge")
    followup, _ = _pad(hand.followup, "edge")
    joints = {n: tuple(np.array(hand.joints[n]) + offset) for n in STANDARD_JOINTS}
    truth_xy = {n: tuple(np.array(hand.followup_joints[n]) + offset) for n in STANDARD_JOINTS}
    return _write_case(out / "generated", baseline, followup, joints, truth_xy,
                       {n: hand.truth_jsn_mm[n] for n in STANDARD_JOINTS},
                       f"generated: synthetic.make_hand_pair(seed={seed}, spacing_mm=0.1), "
                       f"1920 x 2400 px padded to 2000 x 2500")


def real_case(out: Path, name: str, seed: int, joints_file: Path | None = None) -> dict:
    """Write a real hand and its repositioned follow-up; JSN truth 0 at every annotated joint."""
    from .images import read_radiograph

    folder = real_hands_dir()
    if folder is None or not (folder / name).exists():
        raise InputError(f"real hand {name} not found (set JSNREG_REAL_HANDS to the real-hands folder)")
    joints_file = Path(joints_file or ANNOTATIONS)
    if not joints_file.exists():
        raise InputError(f"no joint annotations at {joints_file}")
    entry = json.loads(joints_file.read_text())["images"].get(name)
    if entry is None:
        raise InputError(f"{name} is not in {joints_file}")
    film = read_radiograph(folder / name, spacing_mm=SPACING_MM).pixels
    baseline, offset = _pad(film, "constant")
    angle, scale, shift = REAL_MOTION
    m = similarity_matrix(angle, scale, shift, ((SHAPE_PX[1] - 1) / 2, (SHAPE_PX[0] - 1) / 2))
    followup = repositioned(baseline, m, seed)
    joints = {n: tuple(np.array(xy, float) + offset) for n, xy in entry["joints"].items()}
    truth_xy = {n: tuple((m @ [*xy, 1.0])[:2]) for n, xy in joints.items()}
    return _write_case(out / "real", baseline.astype(np.float32), followup, joints, truth_xy,
                       dict.fromkeys(joints, 0.0),
                       f"real: {name} (RSNA, 1600 x 2080 px, nominal 0.1 mm/px) padded to 2000 x 2500; "
                       f"follow-up = the same film turned {angle} deg, scaled {scale}, shifted {shift} px, "
                       f"gamma 1.15, noise SD {REAL_NOISE}: true JSN 0")


def _write_case(folder: Path, baseline, followup, joints: dict, truth_xy: dict, truth_mm: dict, what: str) -> dict:
    from .images import write_dicom
    from .joints import JointSpec, joints_to_json

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"baseline": folder / "baseline.dcm", "followup": folder / "followup.dcm",
             "joints": folder / "joints.json"}
    for key in ("baseline", "followup"):
        write_dicom(paths[key], np.clip(baseline if key == "baseline" else followup, 0, 1), SPACING_MM,
                    bits_stored=12, photometric="MONOCHROME2")
    specs = [JointSpec(n, float(x), float(y)) for n, (x, y) in joints.items()]
    paths["joints"].write_text(json.dumps(joints_to_json(specs), indent=1))
    return {"what": what, "paths": {k: str(v) for k, v in paths.items()}, "joints": joints,
            "truth_xy": truth_xy, "truth_jsn_mm": truth_mm}


def run_cli(case: dict, out: Path, detect: bool = False) -> dict:
    """`jsnreg quantify` in a fresh process, with the case's joints or (detect) without: its wall and
    CPU seconds, its own stage times, and the JSN error of each joint it measured that has a truth."""
    p = case["paths"]
    timings = out / "timings.json"
    cmd = [sys.executable, "-m", "jsnreg.cli", "quantify", p["baseline"], p["followup"],
           *([] if detect else ["--joints", p["joints"]]), "--out", str(out), "--timings", str(timings)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"jsnreg quantify failed: {done.stderr.strip()}")
    stages = json.loads(timings.read_text())
    results = json.loads((out / "results.json").read_text())["joints"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    inside = sum(v for k, v in stages.items() if not k.endswith("cpu_s"))
    return {"total_s": wall, "total_cpu_s": cpu, "start_s": wall - inside, **stages,
            "joints": len(results),
            "jsn_error_mm": {r["name"]: r["jsn_mm"] - case["truth_jsn_mm"][r["name"]]
                             for r in results if r["name"] in case["truth_jsn_mm"]}}


def simpleitk_locate(base_img, follow_img, centre_xy, size_px: int, coarse: np.ndarray) -> tuple[float, float]:
    """The placement peer: the joint's baseline ROI registered (Similarity2D, correlation, 2 levels)
    onto the whole follow-up, starting from the coarse matrix; the joint centre mapped by the result."""
    import SimpleITK as sitk

    half = size_px // 2
    x0, y0 = int(round(centre_xy[0])) - half, int(round(centre_xy[1])) - half
    size = base_img.GetSize()
    x0, y0 = max(0, min(x0, size[0] - size_px)), max(0, min(y0, size[1] - size_px))
    fixed = sitk.RegionOfInterest(base_img, [size_px, size_px], [x0, y0])  # keeps physical = pixel coords
    tx = sitk.Similarity2DTransform()
    tx.SetCenter(tuple(float(c) for c in centre_xy))
    a = coarse[:2, :2]
    tx.SetScale(float(np.sqrt(abs(np.linalg.det(a)))))
    tx.SetAngle(float(np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1])))
    c = np.asarray(centre_xy, float)
    tx.SetTranslation(tuple(a @ c + coarse[:2, 2] - c))
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=100,
                                                 relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SetInitialTransform(tx, inPlace=True)
    # The follow-up around the prediction only (ROI plus the same search margin as ours): the
    # registration's pyramid would otherwise shrink the whole film at every level.
    reach = int(np.ceil(0.75 * size_px * max(1.0, np.sqrt(2.0))))
    px, py = (a @ c + coarse[:2, 2]).round().astype(int)
    fs = follow_img.GetSize()
    lo = [int(max(0, px - reach)), int(max(0, py - reach))]
    hi = [int(min(fs[0], px + reach + 1)), int(min(fs[1], py + reach + 1))]
    moving = sitk.RegionOfInterest(follow_img, [hi[0] - lo[0], hi[1] - lo[1]], lo)
    reg.Execute(fixed, moving)
    return tuple(tx.TransformPoint(tuple(float(v) for v in centre_xy)))


def _clock():
    return time.perf_counter(), time.process_time()


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished child processes."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _since(t) -> dict:
    now = _clock()
    return {"s": now[0] - t[0], "cpu_s": now[1] - t[1]}


def compare_stages(case: dict, log=print) -> dict:
    """Placement and per-joint registration, ours beside SimpleITK, on one case (in this process)."""
    import SimpleITK as sitk

    from . import quantify as q
    from . import resolution, rois
    from .bench import simpleitk_bone
    from .forked import default_workers
    from .images import read_radiograph
    from .joints import load_joints_json
    from .register import Engine, bone_regions

    p = case["paths"]
    base, follow = (read_radiograph(p[k]) for k in ("baseline", "followup"))
    joints = load_joints_json(p["joints"])
    settings = q.Settings()
    out: dict = {}
    # Placement: the shared coarse alignment, then each method's local search per joint.
    t = _clock()
    coarse = rois.coarse_align(base.pixels, follow.pixels)
    out["coarse"] = _since(t)
    t = _clock()
    placements = q.place_joints(base, follow, joints, settings)
    ours = _since(t)
    ours = {k: v - out["coarse"][k] for k, v in ours.items()}  # place_joints aligns again: not counted twice
    t = _clock()
    b_img, f_img = (sitk.GetImageFromArray(im.pixels) for im in (base, follow))
    peer_xy = [simpleitk_locate(b_img, f_img, (j.x, j.y), placements[0].size_px, coarse) for j in joints]
    peer = _since(t)
    truth = case["truth_xy"]
    err = lambda xy, j: float(np.hypot(*(np.asarray(xy) - truth[j.name])))  # noqa: E731
    out["placement"] = {
        "ours": {**ours, "error_px": {j.name: err(pl.followup_xy, j) for j, pl in zip(joints, placements)}},
        "simpleitk": {**peer, "error_px": {j.name: err(xy, j) for j, xy in zip(joints, peer_xy)}},
    }
    log(f"  placement done ({ours['s']:.2f} s ours, {peer['s']:.2f} s SimpleITK)")
    # Per-joint registration on the same ROI pairs.
    engine = Engine.load()
    pairs = [q.cut_pair(base, follow, pl) for pl in placements]
    factor = placements[0].work_factor
    methods = {}
    for label, f in (("working", factor), ("full", 1)):
        t = _clock()
        # "full": every pixel of the ROIs (the engine's own block means for large ROIs turned off).
        res = [resolution.register_roi(engine, fx, mv, base.spacing_mm, factor, name=j.name) if label == "working"
               else engine.register_roi(fx, mv, base.spacing_mm, name=j.name, block_px=1)
               for j, (fx, mv) in zip(joints, pairs)]
        methods[label] = {**_since(t), "factor": f, "flagged": [r.name for r in res if r.flagged],
                          "jsn_error_mm": {r.name: r.jsn_mm - case["truth_jsn_mm"][r.name] for r in res}}
        if label == "working":
            masks = [r.images.upper_mask for r in res]
    workers = default_workers()
    if workers > 1:  # as quantify runs it: placed and measured in forked processes (their CPU counted)
        stages, children = {}, _children_cpu_s()
        res = q.quantify(base, follow, joints, settings, engine, timings=stages, workers=workers)
        methods["workers"] = {"s": stages["register_s"], "factor": factor, "workers": workers,
                              "cpu_s": stages["register_cpu_s"] + _children_cpu_s() - children,
                              "cpu_includes_placement": True, "flagged": [r.name for r in res if r.flagged],
                              "jsn_error_mm": {r.name: r.jsn_mm - case["truth_jsn_mm"][r.name] for r in res}}
    t = _clock()
    jsn = {}
    for j, (fx, mv), mask in zip(joints, pairs, masks):
        regions = [w > 0 for w in bone_regions(mask, None)]
        upper, lower = (simpleitk_bone(fx, mv, reg) for reg in regions)
        jsn[j.name] = (upper.dy_px - lower.dy_px) * base.spacing_mm - case["truth_jsn_mm"][j.name]
    methods["simpleitk"] = {**_since(t), "factor": 1, "jsn_error_mm": jsn}
    out["registration"] = methods
    log("  registration done")
    return out


def _stats(errors: dict) -> dict:
    e = np.array(list(errors.values()), dtype=np.float64)
    return {"mean": float(e.mean()), "sd": float(e.std(ddof=1)), "max_abs": float(np.abs(e).max()), "n": len(e)}


def run(out_dir: Path, seed: int = 0, real: str | None = "rsna-bone-age/1440.png",
        joints_file: Path | None = None, log=print) -> dict:
    """The generated case and each real hand in `real` (comma-separated names); writes
    bench_hand.json and prints the tables (with the machine's load average: others' work slows
    the wall clock, the CPU seconds less)."""
    out_dir = Path(out_dir)
    cases = {"generated": generated_case(out_dir, seed)}
    for name in filter(None, (real or "").split(",")):
        try:
            cases[f"real {name}"] = real_case(out_dir / Path(name).stem, name.strip(), seed, joints_file)
        except InputError as exc:
            log(f"real hand skipped: {exc}")
    result = {}
    for name, case in cases.items():
        log(f"{name}: {case['what']} (load average {os.getloadavg()[0]:.1f})")
        folder = Path(case["paths"]["joints"]).parent
        cli = run_cli(case, folder / "quantify-out")
        detected = run_cli(case, folder / "quantify-detected-out", detect=True)
        stages = compare_stages(case, log)
        result[name] = {"what": case["what"], "load_average": os.getloadavg()[0], "cli": cli,
                        "cli_detected": detected, **stages}
    (out_dir / "bench_hand.json").write_text(json.dumps(result, indent=2) + "\n")
    log(format_summary(result))
    return result


def format_summary(result: dict) -> str:
    lines = []
    for name, r in result.items():
        c = r["cli"]
        lines.append(f"\n{r['what']} (load average {r.get('load_average', float('nan')):.1f} on "
                     f"{os.cpu_count()} cores)")
        lines.append("jsnreg quantify, 14 joints, no report (s: wall / CPU):")
        lines.append(f"  total {c['total_s']:.2f} / {c['total_cpu_s']:.2f}   start {c['start_s']:.2f}   "
                     + "   ".join(f"{k} {c[f'{k}_s']:.2f} / {c[f'{k}_cpu_s']:.2f}"
                                    for k in ("imports", "read", "place", "register", "write")))
        e = _stats(c["jsn_error_mm"])
        lines.append(f"  JSN error vs truth: mean {e['mean']:+.4f} mm, SD {e['sd']:.4f} mm, max |error| "
                     f"{e['max_abs']:.4f} mm")
        d = r["cli_detected"]
        e = _stats(d["jsn_error_mm"]) if d["jsn_error_mm"] else {"max_abs": float("nan")}
        lines.append(f"jsnreg quantify, joints detected: total {d['total_s']:.2f} / {d['total_cpu_s']:.2f}   "
                     f"detect {d['detect_s']:.2f} / {d['detect_cpu_s']:.2f}   {d['joints']} joints measured, "
                     f"{len(d['jsn_error_mm'])} of them annotated, max |JSN error| {e['max_abs']:.4f} mm")
        pl = r["placement"]
        po, ps = pl["ours"], pl["simpleitk"]
        lines.append(f"placement (coarse alignment {r['coarse']['s']:.2f} s shared): local searches ours "
                     f"{po['s']:.2f} s (CPU {po['cpu_s']:.2f}), SimpleITK {ps['s']:.2f} s (CPU {ps['cpu_s']:.2f}): "
                     f"x{ps['cpu_s'] / max(po['cpu_s'], 1e-9):.1f} CPU; error vs truth max "
                     f"{max(po['error_px'].values()):.2f} px ours, {max(ps['error_px'].values()):.2f} px SimpleITK")
        reg = r["registration"]
        peer = reg["simpleitk"]["cpu_s"]
        lines.append(f"{'registration':22} {'wall s':>7} {'CPU s':>6} {'x SITK':>6} {'mean mm':>8} {'SD mm':>7} "
                     f"{'max mm':>7}")
        for m, v in reg.items():
            e = _stats(v["jsn_error_mm"])
            label = {"working": f"ours, 1/{v['factor']} res.", "full": "ours, full res.",
                     "workers": f"ours, {v.get('workers')} processes*", "simpleitk": "SimpleITK, full res."}[m]
            lines.append(f"{label:22} {v['s']:7.2f} {v['cpu_s']:6.2f} {peer / max(v['cpu_s'], 1e-9):6.1f} "
                         f"{e['mean']:+8.4f} {e['sd']:7.4f} {e['max_abs']:7.4f}")
        if "workers" in reg:
            lines.append("  * quantify's registration stage in forked processes; its CPU includes their placement")
        w, f = reg["working"]["jsn_error_mm"], reg["full"]["jsn_error_mm"]
        d = np.array([w[k] - f[k] for k in w])
        lines.append(f"  working vs full resolution JSN: mean {d.mean():+.4f} mm, max |diff| {np.abs(d).max():.4f} mm")
    return "\n".join(lines)
