"""`jsnreg bench`: accuracy, flags and speed against known truth and against a SimpleITK peer.

One run, one fixed seeded set of generated joint pairs (synthetic.make_joint_pair at its default
ranges: noise sigma 0.005-0.04, exposure, gamma and blur change, per-bone rotation and translation,
magnification change, JSN -0.5..+1.0 mm, MCP/PIP/DIP, spacing 0.1-0.2 mm). Methods side by side:
the network alone, network + refinement, and the peer: masked SimpleITK Similarity2D registration
per bone (correlation metric, multi-resolution), all given the true split; and the whole method with
its automatic split (refined_autosplit). The Cramer-Rao bound per
pair (SD_ty >= sigma * sqrt(2) / sqrt(sum (dI/dy)^2) per bone, combined over the two bones) says how
close to the noise limit each method comes.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from .register import Engine, bone_regions
from .transforms import BoneMotion

METHODS = ("network", "refined", "refined_autosplit", "simpleitk")
MISMATCH_PX = 0.5
MISMATCH_MM = 0.1


def crb_jsn_px(fixed: np.ndarray, regions: tuple[np.ndarray, np.ndarray], sigma: float) -> float | None:
    """Cramer-Rao bound on the SD of jsn_px for Gaussian noise `sigma` in both images.

    Per bone SD_ty >= sigma * sqrt(2) / sqrt(sum (dI/dy)^2); the gradient energy is taken from the
    noisy fixed image less the noise's own share (central differences add sigma^2 / 2 per pixel).
    None when a bone shows no more gradient than the noise does (e.g. a clipped, flat bone).
    """
    gy = np.gradient(np.asarray(fixed, np.float64), axis=0)
    var = 0.0
    for region in regions:
        energy = float(np.sum(gy[region] ** 2)) - region.sum() * sigma ** 2 / 2
        if energy <= 0:
            return None
        var += 2 * sigma ** 2 / energy
    return float(np.sqrt(var))


def simpleitk_bone(fixed: np.ndarray, moving: np.ndarray, region: np.ndarray) -> BoneMotion:
    """The peer: masked Similarity2D, correlation metric, 3-level pyramid, about the ROI centre."""
    import SimpleITK as sitk

    f = sitk.GetImageFromArray(fixed.astype(np.float32))
    m = sitk.GetImageFromArray(moving.astype(np.float32))
    mask = sitk.GetImageFromArray(region.astype(np.uint8))
    rows, cols = fixed.shape
    tx = sitk.Similarity2DTransform()
    tx.SetCenter(((cols - 1) / 2.0, (rows - 1) / 2.0))
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkBSpline)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200,
                                                 relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(f, m)
    scale, angle, dx, dy = tx.GetParameters()
    return BoneMotion(float(scale), float(angle), float(dx), float(dy))


def elastix_parameters(center_xy: tuple[float, float], iterations: int = 500, seed: int = 121212,
                       metric: str = "AdvancedMattesMutualInformation") -> dict:
    """The stronger peer's settings: similarity about the ROI centre, Mattes MI, cubic B-spline,
    3 levels, seeded stochastic gradient descent."""
    return {
        "Registration": ["MultiResolutionRegistration"],
        "FixedImagePyramid": ["FixedSmoothingImagePyramid"],
        "MovingImagePyramid": ["MovingSmoothingImagePyramid"],
        "NumberOfResolutions": ["3"],
        "Transform": ["SimilarityTransform"],
        # Fixed centre, no centring by elastix: the parameters then mean what simpleitk_bone's do.
        "AutomaticTransformInitialization": ["false"],
        "CenterOfRotationPoint": [str(c) for c in center_xy],
        "AutomaticScalesEstimation": ["true"],
        "Metric": [metric],
        "NumberOfHistogramBins": ["32"],
        "Optimizer": ["AdaptiveStochasticGradientDescent"],
        "MaximumNumberOfIterations": [str(iterations)],
        "ImageSampler": ["RandomCoordinate"],
        "NumberOfSpatialSamples": ["2048"],
        "NewSamplesEveryIteration": ["true"],
        "MaximumNumberOfSamplingAttempts": ["8"],
        "RandomSeed": [str(seed)],
        # The mask's edge at the joint space is where the information is: keep it at every level.
        "ErodeMask": ["false"],
        "Interpolator": ["BSplineInterpolator"],
        "BSplineInterpolationOrder": ["3"],
        "ResampleInterpolator": ["FinalBSplineInterpolator"],
        "FinalBSplineInterpolationOrder": ["3"],
        "Resampler": ["DefaultResampler"],
        "WriteResultImage": ["false"],
        "HowToCombineTransforms": ["Compose"],
    }


def elastix_bone(fixed: np.ndarray, moving: np.ndarray, region: np.ndarray,
                 metric: str = "AdvancedMattesMutualInformation") -> BoneMotion:
    """The stronger peer (itk-elastix, the `peers` extra): one bone, its region as the fixed mask,
    similarity fixed -> moving about the ROI centre, as simpleitk_bone returns it. `metric` other
    than Mattes MI only to check the geometry: on generated pairs Mattes MI itself is biased (JSN off
    by 0.2-0.8 px on some pairs where normalised correlation is within 0.05 px)."""
    import tempfile

    import itk

    rows, cols = fixed.shape
    params = itk.ParameterObject.New()
    params.AddParameterMap(elastix_parameters(((cols - 1) / 2.0, (rows - 1) / 2.0), metric=metric))
    f = itk.image_from_array(np.ascontiguousarray(fixed, np.float32))
    m = itk.image_from_array(np.ascontiguousarray(moving, np.float32))
    mask = itk.image_from_array(np.ascontiguousarray(region, np.uint8))
    with tempfile.TemporaryDirectory() as out:  # elastix writes its transform files: not into the cwd
        reg = itk.ElastixRegistrationMethod.New(f, m, parameter_object=params, fixed_mask=mask,
                                                output_directory=out, log_to_console=False, log_to_file=False)
        reg.UpdateLargestPossibleRegion()
        result = reg.GetTransformParameterObject()
    scale, angle, dx, dy = (float(v) for v in result.GetParameter(0, "TransformParameters"))
    return BoneMotion(scale, angle, dx, dy)


PEER_BONES = {"simpleitk": simpleitk_bone, "elastix": elastix_bone}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def elastix_available() -> bool:
    try:
        import itk  # noqa: F401
    except ImportError:
        return False
    return hasattr(itk, "ElastixRegistrationMethod")


def methods_with(peers=()) -> tuple:
    """The default methods, then the optional peers asked for (only "elastix" so far)."""
    return METHODS + tuple(peers)


def evaluate_pair(engine: Engine, pair, peers=()) -> dict:
    """One pair through the methods: errors (px), flags, times (s), and its noise bound. `peers`:
    optional peers beside SimpleITK ("elastix"), measured the same way."""
    weights = bone_regions(pair.upper_mask, None)
    regions = [w > 0 for w in weights]
    truth = pair.jsn_px
    rec = {"kind": pair.kind, "spacing_mm": pair.spacing_mm, "noise_sigma": pair.noise_sigma,
           "truth_jsn_px": truth, "rotation_deg": float(np.degrees(abs(pair.lower.dtheta_rad))),
           "magnification": float(abs(pair.upper.scale - 1)),
           "crb_jsn_px": crb_jsn_px(pair.fixed, regions, pair.noise_sigma)}
    # The true split for the first two (so they compare with the peer), then the whole method. The
    # measurement alone is timed, as the peer's is: no warped images (save_worst makes its own).
    for method, refine, mask in (("network", False, pair.upper_mask), ("refined", True, pair.upper_mask),
                                 ("refined_autosplit", True, None)):
        r, sec = _timed(lambda: engine.register_roi(pair.fixed, pair.moving, pair.spacing_mm,
                                                    upper_mask=mask, refine=refine, images=False))
        rec[f"{method}_error_px"] = r.jsn_px - truth
        rec[f"{method}_flagged"] = r.flagged
        rec[f"{method}_confidence"] = r.confidence
        rec[f"{method}_seconds"] = sec
        rec[f"{method}_flag_reason"] = r.flag_reason
        for key in ("sd_jsn_px", "network_refine_diff_px", "inlier_fraction"):
            if key in r.details:
                rec[f"{method}_{key}"] = r.details[key]
    for name in ("simpleitk",) + tuple(peers):
        bone = PEER_BONES[name]
        bones, sec = _timed(lambda: [bone(pair.fixed, pair.moving, reg) for reg in regions])
        rec[f"{name}_error_px"] = bones[0].dy_px - bones[1].dy_px - truth
        rec[f"{name}_flagged"] = False
        rec[f"{name}_seconds"] = sec
    return rec


def summarise(records: list[dict], method: str) -> dict:
    """Error statistics, mismatch and flag rates, and time for one method."""
    err_px = np.array([r[f"{method}_error_px"] for r in records])
    err_mm = err_px * np.array([r["spacing_mm"] for r in records])
    flagged = np.array([r[f"{method}_flagged"] for r in records])
    bad = np.abs(err_px) > MISMATCH_PX
    stats = lambda e: {"mean": float(e.mean()), "sd": float(e.std(ddof=1)), "rmse": float(np.sqrt(np.mean(e ** 2))),  # noqa: E731
                       "p95_abs": float(np.percentile(np.abs(e), 95)), "max_abs": float(np.abs(e).max())}
    sigma = np.array([r["noise_sigma"] for r in records])
    crb = np.array([np.inf if r["crb_jsn_px"] is None else r["crb_jsn_px"] for r in records])
    informative = np.isfinite(crb)  # the bound is taken over the pairs that hold information
    at_001 = informative & (np.abs(np.log(sigma / 0.01)) < np.log(1.25))  # sigma within 0.008-0.0125
    # The method's own predicted SD (refined methods): error SD / RMS predicted near 1 = the error is
    # what the pair's noise allows this estimator, and the confidence's main signal is honest.
    predicted = np.array([r.get(f"{method}_sd_jsn_px", np.nan) for r in records], dtype=float)
    has_pred = np.isfinite(predicted)
    return {
        "n": len(records),
        "error_px": stats(err_px),
        "error_mm": stats(err_mm),
        "mismatch_rate_px": float(bad.mean()),
        "mismatch_rate_mm": float((np.abs(err_mm) > MISMATCH_MM).mean()),
        "mismatches_flagged": float(flagged[bad].mean()) if bad.any() else None,
        "unflagged_mismatch_rate_px": float(bad[~flagged].mean()) if (~flagged).any() else 0.0,
        "good_flagged": float(flagged[~bad].mean()) if (~bad).any() else None,
        "median_seconds": float(np.median([r[f"{method}_seconds"] for r in records])),
        "sd_over_crb": float(err_px[informative].std(ddof=1) / np.sqrt(np.mean(crb[informative] ** 2)))
        if informative.sum() > 1 else None,
        "pairs_without_information": int((~informative).sum()),
        # what an unbiased estimator could reach on these pairs (RMS of each pair's bound)
        "rms_crb_px": float(np.sqrt(np.mean(crb[informative] ** 2))) if informative.any() else None,
        "median_predicted_sd_px": float(np.median(predicted[has_pred])) if has_pred.any() else None,
        "sd_over_predicted": float(err_px[has_pred].std(ddof=1) / np.sqrt(np.mean(predicted[has_pred] ** 2)))
        if has_pred.sum() > 1 else None,
        "at_sigma_0.01": {
            "n": int(at_001.sum()),
            "sd_mm": float(err_mm[at_001].std(ddof=1)) if at_001.sum() > 2 else None,
            "sd_over_crb": float(err_px[at_001].std(ddof=1) / np.sqrt(np.mean(crb[at_001] ** 2)))
            if at_001.sum() > 2 else None,
        },
    }


SWEEPS = {"noise_sigma": [0.005, 0.01, 0.02, 0.04], "rotation_deg": [0, 1.5, 3, 4.5, 6.5],
          "magnification": [0, 0.01, 0.02, 0.03, 0.045]}


def sweep_rows(records: list[dict]) -> list[dict]:
    """Error SD and mismatch rate per method in bins of noise, rotation and magnification."""
    rows = []
    for factor, edges in SWEEPS.items():
        values = np.array([r[factor] for r in records])
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = [r for r, v in zip(records, values) if lo <= v < hi]
            if len(sel) < 3:
                continue
            row = {"factor": factor, "low": lo, "high": hi, "n": len(sel)}
            for m in METHODS:
                e = np.array([r[f"{m}_error_px"] for r in sel])
                row[f"{m}_sd_px"] = float(e.std(ddof=1))
                row[f"{m}_mismatch"] = float((np.abs(e) > MISMATCH_PX).mean())
            rows.append(row)
    return rows


def plot_sweep(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, factor in zip(axes, SWEEPS):
        sel = [r for r in rows if r["factor"] == factor]
        x = [(r["low"] + r["high"]) / 2 for r in sel]
        for m in METHODS:
            ax.plot(x, [r[f"{m}_sd_px"] for r in sel], "o-", label=m)
        ax.set_xlabel(factor.replace("_", " "))
        ax.set_ylabel("JSN error SD (px)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("JSN error vs noise, rotation and magnification change (generated pairs, known truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_worst(engine: Engine, pairs, records, out_dir: Path, method: str = "refined", n: int = 6) -> list[str]:
    """PNGs of the worst pairs of `method` (fixed | moving | registered | loss after), to look at."""
    from .figures import grey_rgb, heat_rgb, loss_vmax
    from .images import write_png

    order = np.argsort([-abs(r[f"{method}_error_px"]) for r in records])[:n]
    names = []
    for rank, k in enumerate(order):
        p = pairs[k]
        res = engine.register_roi(p.fixed, p.moving, p.spacing_mm, upper_mask=p.upper_mask)
        im = res.images
        vmax = loss_vmax(im)
        strip = np.concatenate([grey_rgb(im.fixed), grey_rgb(im.moving), grey_rgb(im.warped()),
                                heat_rgb(im.loss_after(), vmax)], axis=1)
        name = f"worst{rank + 1}_pair{k}_{p.kind}_err{records[k][f'{method}_error_px']:+.2f}px.png"
        write_png(out_dir / name, strip)
        names.append(name)
    return names


def hand_seconds(engine: Engine, repeats: int = 3) -> dict:
    """End-to-end time of the 10 default joints of the synthetic hand (model loaded)."""
    from .joints import DEFAULT_JOINTS, JointSpec
    from .images import Radiograph
    from .quantify import quantify
    from .synthetic import make_hand_pair

    hand = make_hand_pair(seed=0)
    base = Radiograph(hand.baseline, hand.spacing_mm, {})
    follow = Radiograph(hand.followup, hand.spacing_mm, {})
    joints = [JointSpec(n, *hand.joints[n]) for n in DEFAULT_JOINTS]
    times = []
    for _ in range(repeats):
        _, sec = _timed(lambda: quantify(base, follow, joints, engine=engine))
        times.append(sec)
    return {"joints": len(joints), "median_seconds": float(np.median(times))}


TIMING_SIZES_PX = (128, 160, 192, 256)


def size_timing(engine: Engine, sizes=TIMING_SIZES_PX, n_pairs: int = 8, seed: int = 11, peers=()) -> list[dict]:
    """Median seconds per pair of the whole method (automatic split; the measurement, without the
    warped images for review) and of the SimpleITK peer (and the optional `peers`) at each square
    ROI size, same generated pairs, same run: the speed ratio where ROIs are large."""
    from .synthetic import make_joint_pair

    rows = []
    for size in sizes:
        rng = np.random.default_rng([seed, size])
        ours, peer, ours_cpu, peer_cpu = [], [], [], []
        extra = {name: [] for name in peers}
        for _ in range(n_pairs):
            p = make_joint_pair(rng, size_px=size)
            regions = [w > 0 for w in bone_regions(p.upper_mask, None)]
            c0 = time.process_time()
            ours.append(_timed(lambda: engine.register_roi(p.fixed, p.moving, p.spacing_mm, images=False))[1])
            c1 = time.process_time()
            peer.append(_timed(lambda: [simpleitk_bone(p.fixed, p.moving, r) for r in regions])[1])
            ours_cpu.append(c1 - c0)
            peer_cpu.append(time.process_time() - c1)
            for name, times in extra.items():
                times.append(_timed(lambda: [PEER_BONES[name](p.fixed, p.moving, r) for r in regions])[1])
        # Wall-clock and CPU time (all threads): on a shared machine the CPU ratio is the steadier.
        rows.append({"size_px": size, "n": n_pairs, "method_ms": 1000 * float(np.median(ours)),
                     "simpleitk_ms": 1000 * float(np.median(peer)),
                     "speedup": float(np.median(peer) / np.median(ours)),
                     "method_cpu_ms": 1000 * float(np.median(ours_cpu)),
                     "simpleitk_cpu_ms": 1000 * float(np.median(peer_cpu)),
                     "speedup_cpu": float(np.median(peer_cpu) / np.median(ours_cpu)),
                     **{f"{name}_ms": 1000 * float(np.median(t)) for name, t in extra.items()}})
    return rows


def reliability_section(records: list[dict], methods, out_dir: Path, name: str, title: str) -> dict:
    """Reliability of the confidence (bin vs observed share within 0.5 px) per method: JSON rows
    and one PNG per method."""
    from .confidence import plot_reliability, reliability

    out = {}
    for m in methods:
        conf = np.array([r[f"{m}_confidence"] for r in records])
        err = np.array([r[f"{m}_error_px"] for r in records])
        rows = reliability(conf, err)
        plot_reliability(rows, out_dir / f"{name}_{m}.png", f"{title}: {m}")
        out[m] = rows
    return out


def run(out_dir: Path, n_pairs: int = 500, seed: int = 2026, log=print) -> dict:
    """The whole benchmark; writes bench.json, sweep.csv, sweep.png and worst-case PNGs."""
    from .synthetic import make_joint_pair

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = [make_joint_pair(rng) for _ in range(n_pairs)]
    engine = Engine.load()
    records = []
    t0 = time.time()
    for k, pair in enumerate(pairs):
        records.append(evaluate_pair(engine, pair))
        if (k + 1) % 50 == 0:
            log(f"[{k + 1}/{n_pairs}] pairs ({time.time() - t0:.0f} s)")
    summary = {m: summarise(records, m) for m in METHODS}
    peer = summary["simpleitk"]["median_seconds"]
    for m in METHODS:
        summary[m]["speedup_vs_simpleitk"] = peer / summary[m]["median_seconds"]
    rows = sweep_rows(records)
    columns = ["factor", "low", "high", "n"] + [f"{m}_{k}" for m in METHODS for k in ("sd_px", "mismatch")]
    with open(out_dir / "sweep.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    plot_sweep(rows, out_dir / "sweep.png")
    result = {"seed": seed, "n_pairs": n_pairs, "methods": summary, "hand_10_joints": hand_seconds(engine),
              "timing_per_size": size_timing(engine),
              "reliability": reliability_section(records, ("refined", "refined_autosplit"), out_dir, "reliability",
                                                 "generated pairs"),
              "worst_cases": save_worst(engine, pairs, records, out_dir)}
    _write(out_dir, "bench", result, "pairs", records)
    log(format_summary(result))
    return result


def _write(out_dir: Path, name: str, result: dict, records_name: str, records: list[dict]) -> None:
    """A run's summary as NAME.json (indented) and its per-pair records as RECORDS_NAME.json."""
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out_dir / f"{records_name}.json", "w", encoding="utf-8") as f:
        json.dump(records, f)


def format_summary(result: dict) -> str:
    lines = [f"{'method':17} {'SD mm':>7} {'SD px':>6} {'RMSE mm':>8} {'p95 px':>6} {'max px':>6} "
             f"{'mis>0.5px':>9} {'mis>0.1mm':>9} {'caught':>6} {'good fl.':>8} {'ms/pair':>8} "
             f"{'x SITK':>6} {'SD/CRB':>6} {'SD mm @.01':>10} {'/CRB @.01':>9}"]
    for m, s in result["methods"].items():
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
        a = s["at_sigma_0.01"]
        lines.append(
            f"{m:17} {s['error_mm']['sd']:7.4f} {s['error_px']['sd']:6.3f} {s['error_mm']['rmse']:8.4f} "
            f"{s['error_px']['p95_abs']:6.3f} {s['error_px']['max_abs']:6.2f} {s['mismatch_rate_px']:9.2%} "
            f"{s['mismatch_rate_mm']:9.2%} {fmt(s['mismatches_flagged'], '6.0%')} {fmt(s['good_flagged'], '8.1%')} "
            f"{1000 * s['median_seconds']:8.1f} {s['speedup_vs_simpleitk']:6.1f} {fmt(s['sd_over_crb'], '6.2f')} "
            f"{fmt(a['sd_mm'], '10.4f')} {fmt(a['sd_over_crb'], '9.2f')}")
    h = result["hand_10_joints"]
    lines.append(f"10-joint hand end to end: {h['median_seconds']:.2f} s (median of 3, model loaded)")
    lines.append(format_timing(result["timing_per_size"]))
    if result.get("consistency"):
        lines.append(format_consistency(result["consistency"]))
    return "\n".join(lines)


# --- The real section: pairs made from real radiographs (real_pairs.py), beside generated ones ---

REAL_SETS = ("realistic", "hard", "generated")


def generated_pairs(shape_name: str, n_pairs: int, seed: int) -> list:
    """The generated set for one ROI shape: make_joint_pair at its default ranges, the wide shape
    as the centred 80-row band of a 160 px pair (the ROI centre, and so the truth, is unchanged)."""
    from .real_pairs import SHAPES
    from .synthetic import make_joint_pair

    rows, cols = SHAPES[shape_name]
    rng = np.random.default_rng([seed, cols])
    pairs = []
    for _ in range(n_pairs):
        p = make_joint_pair(rng, size_px=cols)
        r0 = (cols - rows) // 2
        p.fixed, p.moving, p.upper_mask = (a[r0:r0 + rows] for a in (p.fixed, p.moving, p.upper_mask))
        pairs.append(p)
    return pairs


def real_set_pairs(set_name: str, shape_name: str, split: str, n_pairs: int, seed: int, joints=None) -> list:
    from .real_pairs import make_real_pairs

    if set_name == "generated":
        return generated_pairs(shape_name, n_pairs, seed)
    return make_real_pairs(split, set_name, shape_name, n_pairs, seed, joints=joints)


def run_real(out_dir: Path, shapes=("square", "wide"), sets=REAL_SETS, split: str = "test",
             n_pairs: int = 200, seed: int = 2026, weights_path: Path | None = None, peers=(), offset_mm: float = 0.0,
             log=print) -> dict:
    """Every method on real realistic, real hard and generated pairs, per ROI shape; writes
    real.json and real_pairs.json. Real pairs come from the hands of `split` only (default test;
    tune on val). SD in mm uses the nominal ROI spacing (real_pairs.ROI_SPACING_MM). `peers`:
    optional peers beside SimpleITK ("elastix": slow, and needs the `peers` extra). `offset_mm`:
    the real ROIs' centre that far along the finger from the joint (+ distal, whole rows; the
    truth follows), as a click or a detection a little off places it."""
    from .real_pairs import ROI_SPACING_MM, joints_of_split, offset_rows

    rows = offset_rows(offset_mm)
    joints = joints_of_split(split, rows) if any(s != "generated" for s in sets) else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine.load(weights_path)
    table, records_all = [], []
    t0 = time.time()
    for set_name in sets:
        for shape_name in shapes:
            pairs = real_set_pairs(set_name, shape_name, split, n_pairs, seed, joints)
            records = []
            for pair in pairs:
                rec = evaluate_pair(engine, pair, peers)
                rec.update(set=set_name, shape=shape_name, image=getattr(pair, "image", ""),
                           joint=getattr(pair, "joint", ""))
                records.append(rec)
            records_all += records
            row = {"set": set_name, "shape": shape_name, "n": len(records),
                   "hands": sorted({r["image"] for r in records if r["image"]}),
                   "methods": {m: summarise(records, m) for m in methods_with(peers)}}
            table.append(row)
            log(f"{set_name}/{shape_name}: {len(records)} pairs ({time.time() - t0:.0f} s)")
    by_set = {}
    for rec in records_all:
        by_set.setdefault(f"{rec['set']}_{rec['shape']}", []).append(rec)
    reliability = {key: reliability_section(recs, ("refined", "refined_autosplit"), out_dir, f"reliability_{key}",
                                            f"{split} pairs, {key.replace('_', ' ')}")
                   for key, recs in by_set.items()}
    result = {"split": split, "seed": seed, "n_pairs_per_set": n_pairs,
              "roi_spacing_mm_nominal": ROI_SPACING_MM, "offset_rows": rows, "offset_mm": rows * ROI_SPACING_MM, "table": table, "reliability": reliability,
              "by_source": by_source(records_all, methods_with(peers)),
              "timing_per_size": size_timing(engine, peers=peers),
              "consistency": consistency(engine, joints) if joints else None}
    _write(out_dir, "real", result, "real_pairs", records_all)
    log(format_real(result))
    return result


def source_of(image: str) -> str:
    """Where a real pair's hand comes from: "adult" (adult-annotated/, RA patients' films at a nominal
    0.3 mm/px) or "children" (rsna-bone-age/)."""
    from .real_hands import is_adult

    return "adult" if is_adult(image) else "children"


def by_source(records: list[dict], methods) -> list[dict]:
    """The real sets' summaries per source of the hands (children, adult), per set and shape: the
    adult films are the RA patients', never trained or tuned on, and coarser."""
    groups = {}
    for r in records:
        if r["image"]:
            groups.setdefault((r["set"], r["shape"], source_of(r["image"])), []).append(r)
    return [{"set": s, "shape": h, "source": src, "n": len(recs), "methods": {m: summarise(recs, m) for m in methods}}
            for (s, h, src), recs in sorted(groups.items())]


def consistency(engine: Engine, joints: list, n_joints: int = 40, shape_name: str = "square", seed: int = 5) -> dict:
    """Is the method consistent with itself? Per real joint three visits A, B, C (the same joint,
    repositioned and re-exposed: real_pairs, realistic motions, no mirroring): JSN(A->B) + JSN(B->A)
    and the chain JSN(A->B) + JSN(B->C) - JSN(A->C), both ~0 (the first up to the bones' rotation
    and scale, a few hundredths of a pixel), the whole method with its automatic split."""
    from .real_pairs import make_pairs

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(joints), size=min(n_joints, len(joints)), replace=False)
    fb, chain, fb_unflagged, chain_unflagged = [], [], [], []
    for idx in picks:
        p1, p2 = make_pairs(joints[idx], rng, 2, "realistic", shape_name, flips=False)
        a, b, c = p1.fixed, p1.moving, p2.moving
        reg = {key: engine.register_roi(f, m, p1.spacing_mm) for key, (f, m) in
               {"ab": (a, b), "ba": (b, a), "bc": (b, c), "ac": (a, c)}.items()}
        s_fb = reg["ab"].jsn_px + reg["ba"].jsn_px
        s_chain = reg["ab"].jsn_px + reg["bc"].jsn_px - reg["ac"].jsn_px
        fb.append(s_fb)
        chain.append(s_chain)
        if not (reg["ab"].flagged or reg["ba"].flagged):
            fb_unflagged.append(s_fb)
        if not (reg["ab"].flagged or reg["bc"].flagged or reg["ac"].flagged):
            chain_unflagged.append(s_chain)

    def stats(v):
        v = np.abs(np.asarray(v))
        return {"n": int(v.size), "median_abs_px": float(np.median(v)) if v.size else None,
                "p95_abs_px": float(np.percentile(v, 95)) if v.size else None,
                "max_abs_px": float(v.max()) if v.size else None,
                "share_over_0.5px": float((v > MISMATCH_PX).mean()) if v.size else None}

    return {"joints": len(picks), "shape": shape_name, "ab_plus_ba": stats(fb), "ab_plus_ba_unflagged": stats(fb_unflagged),
            "chain": stats(chain), "chain_unflagged": stats(chain_unflagged)}


def format_consistency(c: dict) -> str:
    fmt = lambda d: (f"n {d['n']}, median {d['median_abs_px']:.3f} px, p95 {d['p95_abs_px']:.3f}, max {d['max_abs_px']:.2f}, "  # noqa: E731
                     f"> 0.5 px {d['share_over_0.5px']:.1%}") if d["n"] else "n 0"
    return (f"consistency on {c['joints']} real joints ({c['shape']}): |A->B + B->A| {fmt(c['ab_plus_ba'])}; "
            f"unflagged {fmt(c['ab_plus_ba_unflagged'])}\n  |A->B + B->C - A->C| {fmt(c['chain'])}; "
            f"unflagged {fmt(c['chain_unflagged'])}")


def format_timing(rows: list[dict]) -> str:
    return "ROI size (px): " + "; ".join(
        f"{r['size_px']}: {r['method_ms']:.0f} ms vs SimpleITK {r['simpleitk_ms']:.0f} ms ({r['speedup']:.1f} x; "
        f"CPU {r['method_cpu_ms']:.0f} vs {r['simpleitk_cpu_ms']:.0f} ms, {r['speedup_cpu']:.1f} x)"
        + (f", elastix {r['elastix_ms']:.0f} ms" if "elastix_ms" in r else "")
        for r in rows)


def format_real(result: dict) -> str:
    """The real section's table: one line per set, shape and method."""
    lines = [f"pairs from {result['split']} hands; mm at the nominal ROI spacing "
             f"{result['roi_spacing_mm_nominal']:.4f} mm/px (generated pairs: their own spacing); CRB px: the RMS "
             "Cramer-Rao bound of the pairs' JSN SD, the least an unbiased estimator could reach"
             + (f"; real ROI centres {result['offset_rows']} rows ({result['offset_mm']:.2f} mm) "
                f"{'distal' if result['offset_rows'] > 0 else 'proximal'} of the joint" if result.get("offset_rows") else ""),
             f"{'set':10} {'shape':6} {'method':17} {'n':>4} {'SD px':>6} {'SD mm':>7} {'max px':>6} "
             f"{'>0.5px':>7} {'unfl.>0.5':>9} {'recall':>6} {'good fl.':>8} {'ms/pair':>8} {'pred. SD':>8} {'SD/pred.':>8} "
             f"{'CRB px':>6}"]
    fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
    for row in result["table"]:
        for m, s in row["methods"].items():
            lines.append(f"{row['set']:10} {row['shape']:6} {m:17} {s['n']:4d} {s['error_px']['sd']:6.3f} "
                         f"{s['error_mm']['sd']:7.4f} {s['error_px']['max_abs']:6.2f} {s['mismatch_rate_px']:7.1%} "
                         f"{s.get('unflagged_mismatch_rate_px', 0.0):9.1%} "
                         f"{fmt(s['mismatches_flagged'], '6.0%')} {fmt(s['good_flagged'], '8.1%')} "
                         f"{1000 * s['median_seconds']:8.1f} {fmt(s.get('median_predicted_sd_px'), '8.3f')} "
                         f"{fmt(s.get('sd_over_predicted'), '8.2f')} {fmt(s.get('rms_crb_px'), '6.3f')}")
    sources = {row["source"] for row in result.get("by_source", [])}
    if len(sources) > 1:
        lines.append("by source of the hands (SD px / max px / > 0.5 px / unflagged > 0.5 px):")
        for row in result["by_source"]:
            cells = [f"{m} {st['error_px']['sd']:.3f} / {st['error_px']['max_abs']:.2f} / {st['mismatch_rate_px']:.1%}"
                     f" / {st['unflagged_mismatch_rate_px']:.1%}" for m, st in row["methods"].items()]
            lines.append(f"  {row['set']:9} {row['shape']:6} {row['source']:8} n {row['n']:3d}: " + "; ".join(cells))
    lines.append(format_timing(result["timing_per_size"]))
    if result.get("consistency"):
        lines.append(format_consistency(result["consistency"]))
    return "\n".join(lines)
