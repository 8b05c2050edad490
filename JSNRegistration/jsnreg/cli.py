"""`jsnreg`: the command line face. Each subcommand parses, calls the core, prints; nothing more."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

# Before numpy loads: a joint's small matrix products run several times slower split over threads
# of a shared machine (the 14-joint hand: 7 s -> 3 s of registration with one), and nothing here
# multiplies a large matrix. A user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import __version__, heap, validate  # noqa: E402
from .errors import InputError  # noqa: E402
from .measure_options import add_measure_options  # noqa: E402

_LOADED = time.perf_counter(), time.process_time()  # this module imported (for `--timings`)

MANIFEST_OUT = ["jsn_mm", "jsn_px", "dx_upper", "dy_upper", "dtheta_upper", "scale_upper",
                "dx_lower", "dy_lower", "dtheta_lower", "scale_lower",
                "mse_before", "mse_after", "confidence", "flagged", "error"]


def _write_json(path: Path, data) -> None:
    """JSON written atomically (the mode the umask gives); InputError when it cannot be written."""
    from .images import _atomic_write

    path = Path(path)
    text = json.dumps(data, indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def roi_json(result) -> dict:
    """The `roi --json` contract: jsn, spacing, per-bone motions, MSEs, confidence, flag."""
    d = result.to_dict()
    return {k: d[k] for k in ("jsn_mm", "jsn_px", "spacing_mm", "upper", "lower", "mse_before",
                              "mse_after", "confidence", "flagged")}


def read_visit(path, spacing_mm, what: str, max_pixels=validate.MAX_IMAGE_PIXELS):
    """A radiograph or ROI with its own spacing; the user's spacing only for a file without one.

    Never borrowed from the other visit, never a silent override: a file whose own spacing
    differs from the user's is refused, so the spacing-mismatch checks downstream can fire.
    """
    from .images import read_radiograph

    image = read_radiograph(path, require_spacing=False, max_pixels=max_pixels)
    if image.spacing_mm is None:
        if spacing_mm is None:
            read_radiograph(path, max_pixels=max_pixels)  # raises with the file's own reason
        image.spacing_mm, image.meta["spacing_source"] = float(spacing_mm), "user"
    elif spacing_mm is not None and abs(image.spacing_mm - spacing_mm) > 1e-6 * spacing_mm:
        raise InputError(f"{what} {path} carries its own spacing {image.spacing_mm:g} mm "
                         f"({image.meta.get('spacing_source')}) but --spacing-mm says {spacing_mm:g} mm: "
                         "--spacing-mm is for files without a spacing")
    return image


def _measure_roi(engine, fixed_path, moving_path, mask_path, spacing_mm, refine, max_pixels=validate.MAX_IMAGE_PIXELS):
    from .images import read_mask

    fixed = read_visit(fixed_path, spacing_mm, "fixed ROI", max_pixels)
    moving = read_visit(moving_path, spacing_mm, "moving ROI", max_pixels)
    if abs(moving.spacing_mm - fixed.spacing_mm) > 1e-6:
        raise InputError(f"ROIs differ in spacing ({fixed.spacing_mm:g} vs {moving.spacing_mm:g} mm): "
                         "cut both at one spacing")
    mask = read_mask(mask_path, fixed.pixels.shape) if mask_path else None
    return engine.register_roi(fixed.pixels, moving.pixels, fixed.spacing_mm, upper_mask=mask,
                               refine=refine, name=Path(fixed_path).stem)


def summary_line(r) -> str:
    flag = f"  FLAGGED: {r.flag_reason}" if r.flagged else ""
    return (f"JSN {r.jsn_mm:+.4f} mm ({r.jsn_px:+.3f} px)  upper dy {r.upper.dy_px:+.3f} px  "
            f"lower dy {r.lower.dy_px:+.3f} px  MSE {r.mse_before:.5f} -> {r.mse_after:.5f}  "
            f"confidence {r.confidence:.2f}{flag}")


def _max_pixels(args):
    return None if getattr(args, "allow_large_image", False) else validate.MAX_IMAGE_PIXELS


def cmd_roi(args) -> int:
    from .register import Engine

    user_spacing = None if args.spacing_mm is None else validate.spacing_mm(args.spacing_mm, "--spacing-mm")
    if args.manifest:
        if args.fixed or args.moving or args.json or args.mask:
            raise InputError("--manifest takes the pairs from the CSV: leave out FIXED, MOVING, --mask and --json")
        if not args.out:
            raise InputError("--manifest needs --out RESULTS.csv")
        manifest = ManifestRun(Path(args.manifest), Path(args.out), resume=args.resume, force=args.force)
        return manifest.run(Engine.load(args.weights), not args.no_refine, user_spacing, _max_pixels(args))
    if args.out or args.resume or args.force:
        raise InputError("--out, --resume and --force go with --manifest; a single pair writes --json")
    if not (args.fixed and args.moving):
        raise InputError("give FIXED and MOVING ROI files, or --manifest PAIRS.csv --out RESULTS.csv")
    if args.json:
        validate.output_file(args.json, "--json")
    result = _measure_roi(Engine.load(args.weights), args.fixed, args.moving, args.mask, user_spacing,
                          not args.no_refine, _max_pixels(args))
    print(summary_line(result))
    if args.json:
        _write_json(Path(args.json), roi_json(result))
    return 0


class ManifestRun:
    """`roi --manifest PAIRS.csv --out RESULTS.csv`: each finished row appended to the output at
    once (a killed run keeps what it measured); `resume` skips the rows already in the output,
    `force` starts it afresh. A row that cannot be measured (ragged, blank cell, bad file) gets its
    error in the output and the run goes on."""

    def __init__(self, manifest: Path, out: Path, resume: bool = False, force: bool = False):
        if resume and force:
            raise InputError("give --resume (continue the output) or --force (start it afresh), not both")
        validate.output_file(out, "--out")
        if validate.same_file(out, manifest) or out.resolve() == manifest.resolve():
            raise InputError(f"--out {out} is the manifest itself: give another file for the results")
        if out.exists() and out.stat().st_size > 0 and not (resume or force):
            raise InputError(f"--out {out} exists: give --resume to continue that run or --force to replace it")
        self.manifest, self.out, self.resume, self.force = manifest, out, resume, force
        self.header, self.rows = self._read_manifest()
        self.fieldnames = self.header + [c for c in MANIFEST_OUT if c not in self.header]

    def _read_manifest(self) -> tuple[list[str], list[list[str]]]:
        try:
            # utf-8-sig: a spreadsheet's byte order mark is not part of the first column's name
            with open(self.manifest, newline="", encoding="utf-8-sig") as f:
                table = [r for r in csv.reader(f) if any(c.strip() for c in r)]
        except OSError as exc:
            raise InputError(f"cannot read manifest {self.manifest}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"manifest {self.manifest} is not UTF-8 text (byte {exc.start}): save it as "
                             "CSV UTF-8") from None
        except csv.Error as exc:
            raise InputError(f"manifest {self.manifest} is not a readable CSV: {validate.one_line(exc)}") from None
        header = [c.strip() for c in table[0]] if table else []
        if not {"fixed", "moving"} <= set(header):
            raise InputError(f"manifest {self.manifest} needs the columns fixed, moving (optional: mask, spacing_mm)")
        if len(set(header)) != len(header) or "" in header:
            raise InputError(f"manifest {self.manifest}: column names must be unique and not empty")
        if set(header) & set(MANIFEST_OUT):
            raise InputError(f"manifest {self.manifest} has output columns "
                             f"({', '.join(c for c in header if c in MANIFEST_OUT)}): is it a results file?")
        return header, table[1:]

    def _key(self, row: dict) -> tuple:
        return tuple(row.get(c, "") for c in self.header)

    def _done(self) -> dict:
        """Rows already in the output (resume): their keys counted; a last line cut by a kill dropped."""
        from collections import Counter

        if not (self.resume and self.out.exists()):
            return Counter()
        data = self.out.read_bytes()
        if data and not data.endswith(b"\n"):
            data = data[:data.rfind(b"\n") + 1]
            with open(self.out, "r+b") as f:
                f.truncate(len(data))
        try:
            table = list(csv.DictReader(data.decode("utf-8-sig").splitlines()))
            fields = next(csv.reader(data.decode("utf-8-sig").splitlines()), [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"--resume: {self.out} is not a results CSV: {validate.one_line(exc)}") from None
        if fields and fields != self.fieldnames:
            raise InputError(f"--resume: {self.out} has other columns than this manifest's results; "
                             "give another --out or --force")
        return Counter(self._key(r) for r in table)

    def _measure(self, engine, cells: list[str], refine: bool, user_spacing, max_pixels) -> dict:
        base = self.manifest.resolve().parent
        row = dict(zip(self.header, cells + [""] * (len(self.header) - len(cells))))
        out = {c: "" for c in MANIFEST_OUT}
        try:
            if len(cells) != len(self.header):
                raise InputError(f"row has {len(cells)} cells, the header {len(self.header)}")
            blank = [c for c in ("fixed", "moving") if not row[c].strip()]
            if blank:
                raise InputError(f"blank {' and '.join(blank)} cell")
            resolve = lambda col: str(base / row[col].strip()) if row.get(col, "").strip() else None  # noqa: E731
            spacing = user_spacing
            if row.get("spacing_mm", "").strip():
                spacing = validate.spacing_mm(row["spacing_mm"].strip(), "spacing_mm")
            r = _measure_roi(engine, resolve("fixed"), resolve("moving"), resolve("mask"), spacing, refine, max_pixels)
            d = roi_json(r)
            out.update({k: d[k] for k in ("jsn_mm", "jsn_px", "mse_before", "mse_after", "confidence", "flagged")})
            for bone in ("upper", "lower"):
                for key in ("dx", "dy", "dtheta", "scale"):
                    out[f"{key}_{bone}"] = d[bone][key]
        except InputError as exc:
            out["error"] = validate.one_line(exc)
        return {**row, **out}

    def run(self, engine, refine: bool, user_spacing=None, max_pixels=validate.MAX_IMAGE_PIXELS) -> int:
        import io

        done = self._done()
        fresh = self.force or not self.out.exists() or self.out.stat().st_size == 0
        measured = failed = skipped = 0
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.out, "w" if fresh else "a", newline="", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {self.out}: {exc.strerror or exc}") from None
        with f:
            if fresh:
                f.write(",".join(self.fieldnames) + "\r\n")
                f.flush()
            for k, cells in enumerate(self.rows, 1):
                key = self._key(dict(zip(self.header, cells + [""] * (len(self.header) - len(cells)))))
                if done.get(key, 0) > 0:
                    done[key] -= 1
                    skipped += 1
                    continue
                row = self._measure(engine, cells, refine, user_spacing, max_pixels)
                line = io.StringIO()
                csv.DictWriter(line, fieldnames=self.fieldnames).writerow(row)
                f.write(line.getvalue())  # one write per row: a kill leaves at most one cut line
                f.flush()
                os.fsync(f.fileno())
                failed += bool(row["error"])
                measured += not row["error"]
                print(f"[{k}/{len(self.rows)}] {row.get('fixed', '')}: "
                      + (row["error"] or f"JSN {row['jsn_mm']:+.4f} mm"), file=sys.stderr, flush=True)
        kept = f", {skipped} kept from the earlier run" if skipped else ""
        print(f"{measured} of {len(self.rows) - skipped} pairs measured ({failed} with an error{kept}), "
              f"written to {self.out}")
        return 0


def _progress(done: int, total: int, name: str) -> None:
    print(f"[{done}/{total}] {name} done", file=sys.stderr, flush=True)


# What a quantify run writes besides results.json/csv and the pictures: removed when a later run
# does not write them again, so a folder never mixes two runs.
REPORT_FILES = ("session.json", "report.pdf", "report.html")


def _lap(timings: dict | None, stage: str, since: tuple[float, float]) -> tuple[float, float]:
    """Record the wall and CPU seconds of a stage in `timings` (when given); returns now."""
    now = time.perf_counter(), time.process_time()
    if timings is not None:
        timings[f"{stage}_s"], timings[f"{stage}_cpu_s"] = now[0] - since[0], now[1] - since[1]
    return now


def run_quantify(baseline_path, followup_path, joints, out_dir: Path, spacing_mm=None, settings=None,
                 engine=None, report: bool = False, timings: dict | None = None,
                 max_pixels=validate.MAX_IMAGE_PIXELS, detect_names=None, workers: int = 1):
    """Read, measure, and write results.json, results.csv, per-joint PNGs (and the report).

    joints None: detected on the baseline as read (only `detect_names` when given).
    All or nothing: the files are staged and moved into `out_dir` together at the end.
    workers: processes measuring the joints (quantify's `workers`), threads writing the PNGs.
    timings, when given, receives wall and CPU seconds per stage: read, detect, place, register, write."""
    from concurrent.futures import ThreadPoolExecutor

    from .figures import save_joint_pngs
    from .outputs import StagedOutputs
    from .quantify import quantify

    out_dir = validate.output_dir(out_dir)
    for j in joints or ():
        validate.file_name_part(j.name)
    if settings is not None:
        validate.roi_mm(settings.roi_mm)
    if spacing_mm is not None:
        spacing_mm = validate.spacing_mm(spacing_mm, "--spacing-mm")
    lap = time.perf_counter(), time.process_time()
    baseline = read_visit(baseline_path, spacing_mm, "baseline", max_pixels)
    followup = read_visit(followup_path, spacing_mm, "follow-up", max_pixels)
    lap = _lap(timings, "read", lap)
    left_out = None  # given joints must all be measurable; a detected one that is not is left out
    if joints is None:
        joints, left_out = detected_specs(baseline.pixels, baseline.spacing_mm, detect_names), []
        _lap(timings, "detect", lap)
        print(f"{len(joints)} joints detected on the baseline: {', '.join(j.name for j in joints)}", file=sys.stderr)
    t0 = time.perf_counter()
    results = quantify(baseline, followup, joints, settings, engine=engine, on_progress=_progress, timings=timings,
                       workers=workers, left_out=left_out)
    seconds = time.perf_counter() - t0
    for item in left_out or ():
        print(f"{item['joint']} left out: {item['reason']}", file=sys.stderr)
    joints = [j for j in joints if j.name not in {item["joint"] for item in left_out or ()}]
    lap = time.perf_counter(), time.process_time()
    from .report import write_results_csv

    with StagedOutputs(out_dir) as staged:
        _write_json(staged.path("results.json"), {
            "software": f"jsnreg {__version__}", "baseline": str(baseline_path), "followup": str(followup_path),
            "spacing_mm": baseline.spacing_mm, "seconds": seconds, "joints": [r.to_dict() for r in results],
            **({"left_out": left_out} if left_out else {})})
        write_results_csv(results, staged.path("results.csv"))
        # PNG encoding releases the GIL: threads write them about twice as fast on 2 cores.
        with ThreadPoolExecutor(max(1, workers)) as pool:
            list(pool.map(lambda r: save_joint_pngs(r, staged.dir), results))
        _lap(timings, "write", lap)
        if report:
            write_session_and_report(baseline_path, followup_path, baseline, followup, joints, settings, results,
                                     out_dir, staged)
        staged.commit(owned=REPORT_FILES)
    if report:
        print(f"session and report: {out_dir / 'session.json'}, {out_dir / 'report.pdf'}, "
              f"{out_dir / 'report.html'}", file=sys.stderr)
    return baseline, followup, results, seconds


def write_session_and_report(baseline_path, followup_path, baseline, followup, joints, settings, results,
                             out_dir: Path, staged=None) -> None:
    """session.json (to reopen and audit) and its report as report.pdf and report.html (into
    `staged` when given; image paths are recorded relative to `out_dir` all the same)."""
    from .quantify import Settings
    from .report import write_report_html, write_report_pdf
    from .session import Session, save_session

    session = Session.from_run(baseline_path, followup_path, baseline, followup, joints,
                               settings or Settings(), results)
    where = staged.path if staged is not None else (lambda name: Path(out_dir) / name)
    save_session(session, where("session.json"), folder=out_dir)
    write_report_pdf(session, where("report.pdf"))
    write_report_html(session, where("report.html"))
    if staged is None:
        print(f"session and report: {out_dir / 'session.json'}, {out_dir / 'report.pdf'}, "
              f"{out_dir / 'report.html'}", file=sys.stderr)


def _names_arg(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError("--joints-only needs joint names, e.g. MCP2,PIP2")
    return names


def detected_specs(pixels, spacing_mm: float, names=None) -> list:
    """JointSpecs of the joints jsnreg.detect finds (source "detected"); InputError when none."""
    from .detect import detect_joints
    from .joints import detected_joints

    found = detect_joints(pixels, spacing_mm, names=names)
    if not found:
        raise InputError("no joints detected" + (f" among {', '.join(names)}" if names else "")
                         + ": place them with --joint NAME=X,Y or --joints FILE.json")
    return detected_joints(found)


def _workers(args) -> int:
    if args.workers is None:
        from .forked import default_workers

        return default_workers()
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    return args.workers


def cmd_quantify(args) -> int:
    from .joints import load_joints_json, parse_joint_arg
    from .measure_options import measure_settings
    from .register import Engine

    if args.joint and args.joints:
        raise InputError("give the joints either with --joint NAME=X,Y (repeatable) or with --joints FILE.json, "
                         "not both (or neither, to detect them)")
    only = _names_arg(args.joints_only)
    joints = None  # detected on the baseline once it is read
    if args.joint or args.joints:
        joints = [parse_joint_arg(j) for j in args.joint] if args.joint else load_joints_json(args.joints)
        if only is not None:
            joints = [j for j in joints if j.name in only]
            if not joints:
                raise InputError(f"none of the given joints is among --joints-only {args.joints_only}")
    settings = measure_settings(args)
    engine = Engine.load(args.weights)
    timings = {} if args.timings else None
    _lap(timings, "imports", _LOADED)  # what the command loads, and the network's weights
    _, _, results, seconds = run_quantify(args.baseline, args.followup, joints, Path(args.out), args.spacing_mm,
                                          settings, engine, report=args.report, timings=timings,
                                          max_pixels=_max_pixels(args), detect_names=only,
                                          workers=_workers(args))
    if args.timings:
        _write_json(Path(args.timings), timings)
    print(format_table(results))
    print(f"{len(results)} joints in {seconds:.2f} s; results in {args.out}")
    return 0


def format_table(results, truth_mm: dict | None = None) -> str:
    """The per-joint table as text (with the known truth and error when given)."""
    head = f"{'joint':6} {'JSN mm':>8} {'shift mm':>8} {'rot deg':>7} {'MSE before':>10} {'MSE after':>9} {'conf':>5}"
    if truth_mm is not None:
        head += f" {'truth mm':>8} {'error mm':>8}"
    lines = [head + "  flag"]
    for r in results:
        row = r.table_row()
        line = (f"{row['joint']:6} {row['jsn_mm']:+8.3f} {row['lateral_shift_mm']:+8.3f} "
                f"{row['relative_rotation_deg']:+7.2f} {row['mse_before']:10.5f} {row['mse_after']:9.5f} "
                f"{row['confidence']:5.2f}")
        if truth_mm is not None:
            t = truth_mm[r.name]
            line += f" {t:+8.3f} {r.jsn_mm - t:+8.3f}"
        lines.append(line + ("  FLAG: " + r.flag_reason if r.flagged else ""))
    return "\n".join(lines)


def cmd_demo(args) -> int:
    import numpy as np

    from .joints import load_joints_json
    from .synthetic import write_demo_case

    out = validate.output_dir(args.out)
    print(f"Generating the synthetic hand pair (baseline and follow-up DICOM) in {out} ...")
    try:
        case = write_demo_case(out)
    except OSError as exc:
        raise InputError(f"cannot write the demo case in {out}: {exc.strerror or exc}") from None
    truth = json.loads(Path(case["truth"]).read_text())["truth_jsn_mm"]
    joints = load_joints_json(case["joints"])
    _, _, results, seconds = run_quantify(case["baseline"], case["followup"], joints, out, report=True)
    print(format_table(results, truth))
    err = np.array([r.jsn_mm - truth[r.name] for r in results])
    print(f"{len(results)} joints in {seconds:.2f} s; JSN error vs truth: mean {err.mean():+.4f} mm, "
          f"SD {err.std():.4f} mm, max |error| {np.abs(err).max():.4f} mm")
    print(f"Results, pictures and report in {out}")
    return 0


def cmd_train(args) -> int:
    from .train import train

    if args.cascade and not (args.fine or args.precise):
        raise InputError("--cascade trains the fine or precise stage: give it with --fine or --precise")
    stage = "precise" if args.precise else "fine" if args.fine else "coarse"
    stage = {"fine": "cascade", "precise": "precise-cascade"}[stage] if args.cascade else stage
    train(Path(args.out), n_train=args.pairs, real_share=args.real_share, standard_share=args.standard_share,
          epochs=args.epochs, seed=args.seed,
          lr=args.lr, init=Path(args.init) if args.init else None, workers=args.workers,
          **({"hard_share": args.hard_share} if args.hard_share is not None else {}),
          offset_mm=args.offset_mm, stage=stage)
    return 0


def cmd_detect(args) -> int:
    from .detect import detect_joints
    from .images import read_radiograph

    image = read_radiograph(args.image, spacing_mm=args.spacing_mm)
    t0 = time.perf_counter()
    found = detect_joints(image.pixels, image.spacing_mm, names=_names_arg(args.joints_only))
    ms = 1000 * (time.perf_counter() - t0)
    print(f"{'joint':8} {'x px':>8} {'y px':>8} {'conf':>5}")
    for j in found:
        print(f"{j.name:8} {j.x:8.1f} {j.y:8.1f} {j.confidence:5.2f}")
    print(f"{len(found)} joints detected in {ms:.0f} ms (spacing {image.spacing_mm:g} mm/px); conf: the estimated "
          f"probability that the joint is within 2 mm of its centre and named right")
    if args.json:
        _write_json(Path(args.json), {
            "software": f"jsnreg {__version__}", "image": str(args.image), "spacing_mm": image.spacing_mm,
            "joints": [{"name": j.name, "x": j.x, "y": j.y, "confidence": j.confidence, "source": "detected"}
                       for j in found]})
    if args.png:
        from .figures import save_detection_png

        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        save_detection_png(image.pixels, found, args.png, f"{Path(args.image).name}: {len(found)} joints detected")
    return 0


def cmd_bench(args) -> int:
    if args.real:
        from .bench import REAL_SETS, elastix_available, run_real

        peers = tuple(args.peer)
        if "elastix" in peers and not elastix_available():
            print("error: jsnreg bench: --peer elastix needs itk-elastix (pip install .[peers])", file=sys.stderr)
            return 2
        shapes = ("square", "wide") if args.shape == "both" else (args.shape,)
        sets = REAL_SETS if args.set == "all" else (args.set,)
        run_real(Path(args.out), shapes, sets, split=args.split, n_pairs=args.pairs or 200, seed=args.seed,
                 weights_path=Path(args.weights) if args.weights else None, peers=peers, offset_mm=args.offset_mm)
        return 0
    if args.detect:
        from .detect_bench import run as run_detect

        run_detect(args.annotations, splits=tuple(args.splits.split(",")),
                   variants=not args.no_variants, out=Path(args.out), tolerance_mm=args.tolerance_mm)
        return 0
    if args.hand:
        from .bench_hand import run as run_hand

        run_hand(Path(args.out), seed=args.seed, real=args.hand_real, joints_file=args.hand_joints)
        return 0
    from .bench import run

    run(Path(args.out), n_pairs=args.pairs or 500, seed=args.seed)
    return 0


def cmd_calibrate(args) -> int:
    from .calibrate import run

    run(args.split, n_pairs=args.pairs, seed=args.seed, out=Path(args.out) if args.out else None,
        weights_path=Path(args.weights) if args.weights else None)
    return 0


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {validate.one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="jsnreg", description="Joint space narrowing by per-bone registration "
                                "(FIXED = baseline, MOVING = follow-up; positive JSN = narrower at follow-up).")
    p.add_argument("--version", action="version", version=f"jsnreg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    roi = sub.add_parser("roi", help="measure pre-cut joint ROI pairs")
    roi.add_argument("fixed", nargs="?", help="baseline ROI (joint space horizontal, upper bone on top)")
    roi.add_argument("moving", nargs="?", help="follow-up ROI of the same joint")
    roi.add_argument("--mask", help="upper-region mask (non-zero = upper bone); default: automatic split")
    roi.add_argument("--spacing-mm", type=float, help="pixel spacing for files that have none (mm)")
    roi.add_argument("--no-refine", action="store_true", help="the network alone, no refinement")
    roi.add_argument("--json", help="write the result as JSON")
    roi.add_argument("--manifest", help="CSV of pairs: fixed, moving[, mask, spacing_mm]")
    roi.add_argument("--out", help="with --manifest: the results CSV (each row written as it is measured)")
    roi.add_argument("--resume", action="store_true", help="with --manifest: continue a stopped run in --out")
    roi.add_argument("--force", action="store_true", help="with --manifest: replace an existing --out")
    roi.set_defaults(func=cmd_roi)

    q = sub.add_parser("quantify", help="measure joints on two whole radiographs")
    q.add_argument("baseline")
    q.add_argument("followup")
    q.add_argument("--joint", action="append", default=[], metavar="NAME=X,Y",
                   help="joint centre on the baseline in pixels (column, row); repeatable")
    q.add_argument("--joints", help="joints file (JSON: {\"joints\": [{\"name\", \"x\", \"y\"}]})")
    q.add_argument("--joints-only", metavar="NAMES", help="only these joints (comma-separated, e.g. MCP2,PIP2); "
                   "without --joint/--joints the joints are detected on the baseline")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--spacing-mm", type=float, help="pixel spacing for files that have none (mm)")
    add_measure_options(q)
    q.add_argument("--report", action="store_true", help="also write the session and its PDF/HTML report")
    q.add_argument("--workers", type=int, help="processes measuring the joints (default: this machine's cores)")
    q.set_defaults(func=cmd_quantify)

    dt = sub.add_parser("detect", help="find and name the finger joints on a hand radiograph")
    dt.add_argument("image")
    dt.add_argument("--spacing-mm", type=float, help="pixel spacing when the file has none (a nominal value will do)")
    dt.add_argument("--joints-only", metavar="NAMES", help="only these joints (comma-separated)")
    dt.add_argument("--json", help="write the joints as JSON (readable by quantify --joints)")
    dt.add_argument("--png", help="write the radiograph with the named joints marked")
    dt.set_defaults(func=cmd_detect)

    d = sub.add_parser("demo", help="synthetic hand pair with known narrowing: measure and compare")
    d.add_argument("--out", default="demo-out")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train the network on real and generated pairs (reproduces the shipped weights)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--pairs", type=int, default=24_000)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--real-share", type=float, default=0.5,
                   help="share of the pairs made from real train hands (../shared/data/real-hands)")
    t.add_argument("--standard-share", type=float, default=0.25,
                   help="share of the generated pairs from the standard (benchmark) generator, the rest varied")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    t.add_argument("--hard-share", type=float,
                   help="share of the real training pairs with hard motions, the rest realistic "
                        "(default and validation: train.REAL_MOTION_MIX)")
    t.add_argument("--offset-mm", type=float, default=0.0,
                   help="cut half the real training pairs this far (or half as far) off the joint along the finger "
                        "(train.OFFSET_SHARE), as clicks and detections are")
    t.add_argument("--init", help="start from these weights (fine-tuning) instead of random ones")
    stage = t.add_mutually_exclusive_group()
    stage.add_argument("--fine", action="store_true",
                       help="train the fine stage (written beside --out as <name>-fine.pt) on residual pairs")
    stage.add_argument("--precise", action="store_true",
                       help="train the precise stage (beside --out as <name>-precise.pt) on small residual pairs")
    t.add_argument("--cascade", action="store_true",
                   help="with --fine: half its pairs at what the coarse weights at --out leave on them; with --precise: at "
                        "what those and their fine stage leave (train.CASCADE_SHARE)")
    t.add_argument("--workers", type=int, default=2, help="processes making the pairs (the data does not depend on them)")
    t.add_argument("--out", default=str(Path(__file__).parent / "weights" / "jsnnet.pt"))
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", help="accuracy, flags and speed on generated pairs vs truth and a SimpleITK peer")
    b.add_argument("--out", default="bench-out")
    b.add_argument("--pairs", type=int, help="pairs (default 500; with --real 200 per set and shape)")
    b.add_argument("--seed", type=int, default=2026)
    b.add_argument("--real", action="store_true",
                   help="the real section: pairs made from real radiographs (../shared/data/real-hands) "
                        "with known motions, beside generated ones")
    b.add_argument("--shape", choices=("square", "wide", "both"), default="both",
                   help="with --real: ROI shape, square 128 x 128 or wide 80 x 160 px (rows x columns)")
    b.add_argument("--set", choices=("realistic", "hard", "generated", "all"), default="all",
                   help="with --real: motion set")
    b.add_argument("--split", choices=("val", "test"), default="test",
                   help="with --real: whose hands (test by default; tune on val only)")
    b.add_argument("--weights", help="network weights (default: the shipped ones)")
    b.add_argument("--offset-mm", type=float, default=0.0,
                   help="with --real: each real ROI's centre this far along the finger from the annotated joint "
                        "(+ distal, within +-4; whole rows of 0.172 mm), as a click or a detection off the joint; "
                        "the truth follows")
    b.add_argument("--peer", action="append", choices=("elastix",), default=[],
                   help="with --real: also this peer (elastix: similarity, Mattes MI, cubic B-spline, 3 levels; "
                        "slow; needs the [peers] extra)")
    b.add_argument("--detect", action="store_true", help="joint detection on annotated real hands instead "
                   "(and variants of them: mirrored, rotated, two hands, a finger removed)")
    b.add_argument("--splits", default="test,val", help="with --detect: which splits (RSNA by the annotations, adult by patient; default test,val)")
    b.add_argument("--annotations", help="with --detect: the annotations file (default: the package's)")
    b.add_argument("--no-variants", action="store_true", help="with --detect: the images only")
    b.add_argument("--tolerance-mm", type=float, default=2.0, help="with --detect: found = within this distance")
    b.add_argument("--hand", action="store_true",
                   help="instead: a 2000 x 2500 px hand with 14 joints at 0.1 mm/px (generated and real), "
                        "timed stage by stage beside SimpleITK")
    b.add_argument("--hand-real", default="rsna-bone-age/1440.png",
                   help="with --hand: real hands, comma-separated, relative to the real-hands folder ('' for none)")
    b.add_argument("--hand-joints", help="with --hand: their joint annotations (default: the package's)")
    b.set_defaults(func=cmd_bench)

    c = sub.add_parser("calibrate", help="fit the confidence on real validation pairs (writes weights/confidence.json)")
    c.add_argument("--split", choices=("val", "train"), default="val", help="whose hands (never test)")
    c.add_argument("--pairs", type=int, default=200, help="pairs per motion set and ROI shape")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", help="calibration file (default: the shipped weights/confidence.json)")
    c.add_argument("--weights", help="network weights (default: the shipped ones)")
    c.set_defaults(func=cmd_calibrate)

    from .report_command import add_report_command

    add_report_command(sub)

    q.add_argument("--timings", help=argparse.SUPPRESS)  # stage times as JSON (for `bench --hand`)
    from .cohort.commands import add_cohort_command

    add_cohort_command(sub)

    for parser in (roi, q):
        parser.add_argument("--weights", help=argparse.SUPPRESS)
        parser.add_argument("--allow-large-image", action="store_true",
                            help=f"read images above {validate.MAX_IMAGE_PIXELS // 1_000_000} Mpx")
    return p


_INTERRUPTED = []  # set by _on_interrupt: a Ctrl-C arrived during this run


def _on_interrupt(signum, frame):
    _INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a failure came from a Ctrl-C: a library may turn the KeyboardInterrupt into its own
    error with or without chaining it (numpy raises ImportError when one lands in its import)."""
    if _INTERRUPTED:
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _clear_interrupt_flag() -> None:
    """A Ctrl-C that passed through code an extension ran with PyRun_* (torch's pybind11 exec while
    it imports) sets CPython's 'unhandled interrupt' flag, and at exit CPython then kills the process
    with SIGINT whatever main returned (seen: exit -2 instead of 130 in 6 of 16 tries). Running an
    empty statement the same way resets that flag."""
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"")
    except (ImportError, AttributeError, OSError):  # not CPython: no such flag
        pass


def main(argv=None) -> int:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and \
            getattr(signal.getsignal(signal.SIGINT), "__name__", "") in ("_early_stop", "default_int_handler"):
        signal.signal(signal.SIGINT, _on_interrupt)  # from here on Ctrl-C is handled below
    _INTERRUPTED.clear()
    try:  # the parser too: Ctrl-C may come while it is built
        args = build_parser().parse_args(argv)
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help, --version, or a one-line usage error (exit 2)
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        _clear_interrupt_flag()
        return 130
    except Exception as exc:  # a face shows a message, not a traceback (JSNREG_DEBUG=1 shows it)
        if _caused_by_interrupt(exc):  # e.g. numpy turns a Ctrl-C during its import into ImportError
            print("stopped", file=sys.stderr)
            _clear_interrupt_flag()
            return 130
        if os.environ.get("JSNREG_DEBUG"):
            raise
        print(f"error: unexpected failure: {validate.one_line(f'{type(exc).__name__}: {exc}')} "
              "(set JSNREG_DEBUG=1 for details)", file=sys.stderr)
        return 1


def run() -> int:
    """The `jsnreg` command: main(), then what it made is left to the process's exit. gc.freeze
    spares the interpreter's final collections, which only walk objects about to go: 0.18 s of a
    whole-hand run's 3 s (the same finalisers still run at exit). A Ctrl-C after main returned
    is ignored: the run is over, its outputs written or not (it used to kill the process by SIGINT,
    exit -2, about 1 in 40 tries of a signal sent near the end)."""
    import gc
    import signal

    heap.keep_freed_memory()
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
