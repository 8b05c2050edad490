"""Reports a clinician can read (PDF, self-contained HTML) and the results table (CSV).

PDF and HTML show the same content: a header (patient, visits, interval, spacing, software and
model), both radiographs with the joints named, the per-joint table (flagged rows stand out),
one panel per joint (baseline and follow-up ROI, checkerboard, loss maps before/after on one
colour scale) and a method note. Drawn with matplotlib's object API (no pyplot, no Qt), so every
face can call it from any thread-free context.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError
from .figures import loss_vmax
from .report_command import add_report_command  # noqa: F401  (the subcommand's arguments)
from .results import JointResult
from .session import (Session, deidentified, load_session, parse_study_date, result_images, session_images,
                      write_atomically)

DISCLAIMER = "For research use only, not for diagnosis."
CSV_COLUMNS = ("joint", "jsn_mm", "jsn_px", "lateral_shift_mm", "relative_rotation_deg",
               "dx_upper", "dy_upper", "dtheta_upper", "scale_upper",
               "dx_lower", "dy_lower", "dtheta_lower", "scale_lower",
               "mse_before", "mse_after", "confidence", "flagged", "flag_reason", "placed")
TABLE_HEAD = ("Joint", "Placed", "JSN (mm)", "Lat. shift (mm)", "Rotation (deg)", "MSE before", "MSE after",
              "Confidence", "Flag")
TABLE_WIDTHS = (0.08, 0.13, 0.10, 0.13, 0.12, 0.11, 0.10, 0.10, 0.13)
METHOD_NOTE = (
    "Method. Around each joint a square region of interest (ROI) is cut from both radiographs and "
    "split along the joint space into an upper and a lower bone region. Each bone of the follow-up "
    "ROI is registered onto the baseline ROI with its own rotation and shift, both bones sharing "
    "one magnification (a small network's estimate, refined to sub-pixel precision). "
    "JSN = dy(upper) - dy(lower), the difference of the two bones' vertical displacements at the "
    "joint centre, in mm; positive = the joint space is narrower at follow-up. Lateral shift = "
    "dx(upper) - dx(lower) (a subluxation indicator); rotation = the bones' relative rotation. "
    "MSE = mean squared intensity difference (intensities 0-1) before and after registration; the "
    "loss maps show it per pixel, before and after on one colour scale. Confidence is 0-1; a flagged "
    "number needs review before any use.")
FLAG_RED = "#b00020"
FLAG_FILL = "#fde4e4"
INK = "#1a1a1a"
MUTED = "#5f6368"


# --- CSV -------------------------------------------------------------------------------------

def csv_row(result: JointResult) -> dict:
    """One result in the CSV columns (dtheta in radians, rotation in degrees, dx/dy in px)."""
    row = result.table_row()
    out = {"joint": result.name, "jsn_px": result.jsn_px}
    out.update({k: row[k] for k in ("jsn_mm", "lateral_shift_mm", "relative_rotation_deg", "mse_before",
                                    "mse_after", "confidence", "flagged", "flag_reason", "placed")})
    for bone in ("upper", "lower"):
        for key, value in getattr(result, bone).to_dict().items():
            out[f"{key}_{bone}"] = value
    return {k: out[k] for k in CSV_COLUMNS}


def write_results_csv(results: list[JointResult], path) -> None:
    """The per-joint table as CSV (full float precision), written atomically."""
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_row(r) for r in results)

    write_atomically(path, write)


def read_results_csv(path) -> list[dict]:
    """Rows of a results CSV with typed values (floats, flagged as bool), as `csv_row` gives them."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputError(f"cannot read results table {path}: {exc.strerror or exc}") from None
    missing = [c for c in CSV_COLUMNS if rows and c not in rows[0] and c != "placed"]  # older tables lack "placed"
    if missing:
        raise InputError(f"{path} is not a jsnreg results table (missing columns: {', '.join(missing)})")
    text_cols = ("joint", "flagged", "flag_reason", "placed")
    try:
        return [{c: (float(r[c]) if c not in text_cols else r.get(c, "manual")) for c in CSV_COLUMNS}
                | {"flagged": r["flagged"] == "True"} for r in rows]
    except ValueError as exc:
        raise InputError(f"{path}: a number could not be read ({exc})") from None


# --- what the report says (shared by PDF and HTML) -------------------------------------------

def _date(text: str) -> str:
    d = parse_study_date(text)
    return d.isoformat() if d else (text or "unknown")


def _visit_label(session: Session, visit: str, deidentify: bool) -> str:
    rec = getattr(session, visit)
    name = "Baseline" if visit == "baseline" else "Follow-up"
    if deidentify:
        days = 0 if visit == "baseline" else session.interval_days()
        when = f"day {days}" if days is not None else "date removed"
    else:
        when = _date(rec.meta.get("study_date", ""))
    side = {"R": "right hand", "L": "left hand"}.get(rec.meta.get("laterality", "").upper(), "")
    return ", ".join(p for p in (f"{name}: {when}", side) if p)


def header_fields(session: Session, deidentify: bool) -> list[tuple[str, str]]:
    """(label, value) pairs of the report header."""
    b = session.baseline.meta
    months, days = session.interval_months(), session.interval_days()
    interval = f"{months:.1f} months ({days} days)" if months is not None else "unknown (study date missing)"
    model = session.model
    passes = model.get("passes", {})
    # Two short fields (the header's value column holds about 32 characters): which stages and passes
    # measured, and the weights' identity.
    model_text = model.get("file", "unknown") + "".join(
        f" + {stage}" + (f" ×{passes[stage]}" if stage in passes else "") for stage in ("fine", "precise")
        if model.get(stage))
    model_id = ", ".join(([model["version"]] if model.get("version") else [])
                         + ([f"SHA-256 {model['sha256'][:8]}"] if model.get("sha256") else [])) or "unknown"
    fields = []
    if deidentify:
        fields.append(("Patient", "de-identified"))
    else:
        name = " ".join(p for p in b.get("patient_name", "").split("^") if p)
        fields += [("Patient ID", b.get("patient_id") or "unknown"), ("Patient name", name or "unknown"),
                   ("Birth date", _date(b.get("patient_birth_date", "")))]
    fields += [("Baseline", _visit_label(session, "baseline", deidentify).split(": ", 1)[1]),
               ("Follow-up", _visit_label(session, "followup", deidentify).split(": ", 1)[1]),
               ("Interval", interval),
               ("Pixel spacing", f"{session.spacing_mm:.4f} mm"),
               ("Software", f"jsnreg {session.software_version}"),
               ("Model", model_text),
               ("Model ID", model_id)]
    if not deidentify:
        fields += [("Baseline file", Path(session.baseline.path).name or "not recorded"),
                   ("Follow-up file", Path(session.followup.path).name or "not recorded"),
                   ("Measured", session.created.replace("T", " ").replace("Z", " UTC"))]
    return fields


def report_warnings(session: Session) -> list[str]:
    out = list(session.warnings)
    if session.stale:
        out.insert(0, "STALE RESULTS: an image changed or is missing since the measurement; the numbers "
                      "below are as recorded and must be measured again before use.")
    return out


def table_cells(result: JointResult) -> list[str]:
    r = result.table_row()
    return [r["joint"], r["placed"], f"{r['jsn_mm']:+.3f}", f"{r['lateral_shift_mm']:+.3f}", f"{r['relative_rotation_deg']:+.2f}",
            f"{r['mse_before']:.5f}", f"{r['mse_after']:.5f}", f"{r['confidence']:.2f}",
            "FLAGGED" if r["flagged"] else "ok"]


def joint_title(result: JointResult) -> str:
    return (f"{result.name}   JSN {result.jsn_mm:+.3f} mm   lateral shift {result.lateral_shift_mm:+.3f} mm   "
            f"rotation {np.degrees(result.relative_rotation_rad):+.2f} deg   confidence {result.confidence:.2f}")


def _unavailable_reason(session: Session) -> str:
    if session.stale:
        return "an image changed or is missing since the measurement"
    return "the images are not available with this session"


def _joint_images(session: Session) -> dict:
    """Joint name -> JointImages, or the reason text when they cannot be shown."""
    out = {}
    for r in session.results:
        try:
            out[r.name] = result_images(session, r) or _unavailable_reason(session)
        except InputError as exc:
            out[r.name] = str(exc)
    return out


# --- drawing ---------------------------------------------------------------------------------

def _thumbnail(pixels: np.ndarray, max_px: int = 900) -> tuple[np.ndarray, int]:
    """Block-mean downsampling to at most max_px on the longer side; (image, factor)."""
    factor = max(1, math.ceil(max(pixels.shape) / max_px))
    rows, cols = (pixels.shape[0] // factor) * factor, (pixels.shape[1] // factor) * factor
    small = pixels[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
    return small, factor


def _marker_positions(session: Session, visit: str) -> list[tuple[str, tuple[float, float], bool]]:
    flagged = {r.name: r.flagged for r in session.results}
    by_result = {r.name: r.position for r in session.results}
    out = []
    for j in session.joints:
        xy = j.baseline_xy if visit == "baseline" else (by_result.get(j.name, {}).get("followup_xy") or j.followup_xy)
        if xy is not None:
            out.append((j.name, (float(xy[0]), float(xy[1])), flagged.get(j.name, False)))
    return out


def draw_overview(fig, rect, session: Session, deidentify: bool) -> None:
    """Both radiographs, downsampled, with the joints marked and named (rect in figure fractions)."""
    import matplotlib.patheffects as pe

    left, bottom, width, height = rect
    try:
        pair, reason = session_images(session), _unavailable_reason(session)
    except InputError as exc:
        pair, reason = None, str(exc)
    for k, visit in enumerate(("baseline", "followup")):
        ax = fig.add_axes((left + k * width / 2 + 0.01, bottom, width / 2 - 0.02, height - 0.02))
        ax.set_axis_off()
        ax.set_title(_visit_label(session, visit, deidentify), fontsize=9, color=INK)
        if pair is None:
            ax.text(0.5, 0.5, f"Radiograph unavailable:\n{reason}", ha="center",
                    va="center", fontsize=8, color=MUTED, transform=ax.transAxes, wrap=True)
            continue
        small, factor = _thumbnail(pair[k].pixels)
        # Positions are in pixels at the measurement spacing (the follow-up was resampled to it).
        to_thumb = session.spacing_mm / pair[k].spacing_mm / factor
        ax.imshow(small, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
        for name, (x, y), flagged in _marker_positions(session, visit):
            colour = "#ff3b3b" if flagged else "#ffd400"
            sx, sy = x * to_thumb, y * to_thumb
            ax.plot(sx, sy, "o", ms=5, mfc="none", mec=colour, mew=1.2)
            ax.annotate(name, (sx, sy), xytext=(5, 4), textcoords="offset points", fontsize=6.5,
                        color=colour, path_effects=[pe.withStroke(linewidth=1.8, foreground="black")])


def draw_table(fig, rect, results: list[JointResult]) -> None:
    ax = fig.add_axes(rect)
    ax.set_axis_off()
    table = ax.table(cellText=[table_cells(r) for r in results], colLabels=TABLE_HEAD,
                     colWidths=TABLE_WIDTHS, bbox=(0, 0, 1, 1), cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, _), cell in table.get_celld().items():
        cell.set_edgecolor("#c8c8c8")
        cell.set_linewidth(0.5)
        if row == 0:
            cell.set_facecolor("#37474f")
            cell.get_text().set(color="white", fontweight="bold")
        elif results[row - 1].flagged:
            cell.set_facecolor(FLAG_FILL)
            cell.get_text().set(color=FLAG_RED, fontweight="bold")
        elif row % 2 == 0:
            cell.set_facecolor("#f4f6f7")


PANEL_IMAGE_IN = 1.18  # side of each ROI picture in a joint panel
PANEL_GAP_IN = 0.07


def panel_height_in(result: JointResult) -> float:
    """Height of a joint panel: title (+ flag reason), picture titles, pictures, margins."""
    return 0.3 + (0.18 if result.flagged else 0.0) + 0.32 + PANEL_IMAGE_IN + 0.1


def draw_joint_panel(fig, rect, result: JointResult, images) -> None:
    """One joint: title with the numbers (and flag reason), then baseline (with its split),
    follow-up, checkerboard and the loss maps before/after on one colour scale with its colour bar.
    `images` is a JointImages or the reason text why there are none."""
    from matplotlib import colormaps

    left, bottom, width, height = rect
    fig_w, fig_h = fig.get_figwidth(), fig.get_figheight()
    x = lambda inch: left + inch / fig_w  # noqa: E731  inches from the panel's left edge
    y = lambda inch: bottom + height - inch / fig_h  # noqa: E731  inches from the panel's top
    colour = FLAG_RED if result.flagged else INK
    if result.flagged:
        from matplotlib.patches import Rectangle
        fig.add_artist(Rectangle((left, bottom), width, height, transform=fig.transFigure,
                                 facecolor=FLAG_FILL, edgecolor=FLAG_RED, linewidth=0.8, zorder=-1))
    fig.text(x(0.1), y(0.08), joint_title(result), fontsize=9, fontweight="bold", color=colour, va="top")
    top_in = 0.3
    if result.flagged:
        fig.text(x(0.1), y(top_in), f"FLAGGED: {result.flag_reason}", fontsize=8, color=FLAG_RED, va="top")
        top_in += 0.18
    if isinstance(images, str):
        fig.text(x(0.1), y(top_in + 0.3), f"Images unavailable: {images}", fontsize=8, color=MUTED, va="top")
        return
    vmax = loss_vmax(images)
    tile = max(4, images.fixed.shape[0] // 8)
    heat = colormaps["viridis"].with_extremes(bad="black")  # black = outside the follow-up ROI
    panels = [("Baseline (split)", images.fixed, "gray", 1.0),
              ("Follow-up", images.moving, "gray", 1.0),
              ("Checkerboard", images.checkerboard(tile), "gray", 1.0),
              (f"Loss before\nMSE {result.mse_before:.5f}", images.loss_before(), heat, vmax),
              (f"Loss after\nMSE {result.mse_after:.5f}", images.loss_after(), heat, vmax)]
    side_w, side_h = PANEL_IMAGE_IN / fig_w, PANEL_IMAGE_IN / fig_h
    image_bottom = y(top_in + 0.32 + PANEL_IMAGE_IN)
    for k, (label, image, cmap, top) in enumerate(panels):
        ax = fig.add_axes((x(0.1 + k * (PANEL_IMAGE_IN + PANEL_GAP_IN)), image_bottom, side_w, side_h))
        ax.set_xticks([])
        ax.set_yticks([])
        shown = ax.imshow(image, cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(label, fontsize=7, color=INK, pad=2)
        if k == 0:
            ax.contour(images.upper_mask.astype(float), levels=[0.5], colors="#ffd400", linewidths=0.6)
    cax = fig.add_axes((x(0.1 + 5 * (PANEL_IMAGE_IN + PANEL_GAP_IN)), image_bottom, 0.1 / fig_w, side_h))
    bar = fig.colorbar(shown, cax=cax)
    bar.ax.tick_params(labelsize=6)
    bar.set_label("squared difference\n(one scale, before/after)", fontsize=5.5)


# --- page layout -----------------------------------------------------------------------------

A4_IN = (8.27, 11.69)
MARGIN_IN = 0.55
FOOTER_IN = 0.55


class _Pages:
    """Sections stacked top to bottom on A4 pages; a section that does not fit starts a new page."""

    def __init__(self, running_head: str):
        from matplotlib.figure import Figure

        self._figure = Figure
        self.running_head = running_head
        self.figures = []
        self.new_page()

    def new_page(self):
        fig = self._figure(figsize=A4_IN)
        fig.text(MARGIN_IN / A4_IN[0], 1 - 0.35 / A4_IN[1], self.running_head, fontsize=7, color=MUTED, va="top")
        self.figures.append(fig)
        self.cursor_in = MARGIN_IN + 0.15

    def block(self, height_in: float):
        """(figure, (left, bottom, width, height) in figure fractions) of the next section."""
        if self.cursor_in + height_in > A4_IN[1] - FOOTER_IN:
            if self.cursor_in > MARGIN_IN + 0.15:
                self.new_page()
        top = self.cursor_in
        self.cursor_in += height_in
        w, h = A4_IN
        return self.figures[-1], (MARGIN_IN / w, 1 - (top + height_in) / h, 1 - 2 * MARGIN_IN / w, height_in / h)

    def finish(self):
        n = len(self.figures)
        for k, fig in enumerate(self.figures, 1):
            y = 0.3 / A4_IN[1]
            fig.text(MARGIN_IN / A4_IN[0], y, DISCLAIMER, fontsize=7.5, fontweight="bold", color=FLAG_RED)
            fig.text(0.5, y, f"jsnreg {__version__}", fontsize=7, color=MUTED, ha="center")
            fig.text(1 - MARGIN_IN / A4_IN[0], y, f"Page {k} of {n}", fontsize=7, color=MUTED, ha="right")
        return self.figures


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _text_block(pages: _Pages, text: str, fontsize: float, color: str = INK, weight: str = "normal",
                chars: int = 110) -> None:
    wrapped = _wrap(text, chars)
    fig, (left, bottom, width, height) = pages.block(0.17 * (wrapped.count("\n") + 1) * fontsize / 8 + 0.08)
    fig.text(left, bottom + height, wrapped, fontsize=fontsize, color=color, fontweight=weight, va="top",
             linespacing=1.35)


def _draw_header(pages: _Pages, session: Session, deidentify: bool) -> None:
    fig, (left, bottom, width, height) = pages.block(0.55)
    fig.text(left, bottom + height, "Joint space narrowing report", fontsize=17, fontweight="bold",
             color=INK, va="top")
    fig.text(left, bottom + 0.08 / A4_IN[1], "Finger joint space narrowing between two hand radiographs, "
             "measured by per-bone registration", fontsize=8.5, color=MUTED)
    fields = header_fields(session, deidentify)
    per_col = math.ceil(len(fields) / 2)
    fig, (left, bottom, width, height) = pages.block(0.2 * per_col + 0.15)
    fig.add_artist(_rule(fig, left, bottom + height, width))
    for k, (label, value) in enumerate(fields):
        col, row = divmod(k, per_col)
        x = left + col * width / 2
        y = bottom + height - (0.1 + 0.2 * row) / A4_IN[1]
        fig.text(x, y, label, fontsize=8, color=MUTED, va="top")
        fig.text(x + 1.05 / A4_IN[0], y, value, fontsize=8.5, color=INK, va="top", fontweight="bold")
    fig.add_artist(_rule(fig, left, bottom + 0.02 / A4_IN[1], width))


def _rule(fig, left, y, width):
    from matplotlib.lines import Line2D

    return Line2D([left, left + width], [y, y], transform=fig.transFigure, color="#b0b7bb", linewidth=0.6)


def build_pages(session: Session, deidentify: bool) -> list:
    """The report as matplotlib Figures, one per A4 page."""
    head = "JSN report" if deidentify else f"JSN report - patient {session.baseline.meta.get('patient_id') or 'unknown'}"
    pages = _Pages(head)
    _draw_header(pages, session, deidentify)
    for w in report_warnings(session):
        _text_block(pages, "Warning: " + w, 8.5, FLAG_RED, "bold")
    fig, rect = pages.block(4.3)
    draw_overview(fig, rect, session, deidentify)
    pages.block(0.12)
    _text_block(pages, "Results per joint (positive JSN = joint space narrower at follow-up)", 10, INK, "bold")
    if session.results:
        fig, rect = pages.block(0.24 * (len(session.results) + 1))
        draw_table(fig, rect, session.results)
    else:
        _text_block(pages, "No joint was measured in this session.", 9, MUTED)
    for r in session.results:
        if r.flagged:
            _text_block(pages, f"{r.name} flagged: {r.flag_reason}", 8, FLAG_RED)
    _text_block(pages, METHOD_NOTE, 7.5, MUTED, chars=130)
    images = _joint_images(session)
    for k, r in enumerate(session.results):
        if k == 0:  # the details follow on, so a page is not left holding only the method note
            pages.block(0.2)
            _text_block(pages, "Joint details", 12, INK, "bold")
        fig, rect = pages.block(panel_height_in(r))
        draw_joint_panel(fig, rect, r, images[r.name])
    return pages.finish()


def _report_session(session: Session, deidentify: bool) -> Session:
    return deidentified(session) if deidentify else session


def write_report_pdf(session: Session, path, deidentify: bool = False) -> None:
    """The report as a PDF (real text, vector table, embedded images), written atomically."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    session = _report_session(session, deidentify)
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.family": "DejaVu Sans"}):
        figures = build_pages(session, deidentify)

        def write(tmp):
            with PdfPages(tmp, metadata={"Title": "Joint space narrowing report",
                                         "Creator": f"jsnreg {__version__}"}) as pdf:
                for fig in figures:
                    pdf.savefig(fig, dpi=200)

        write_atomically(path, write)


def _png_uri(fig, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


HTML_STYLE = """
body{font-family:Helvetica,Arial,sans-serif;color:#1a1a1a;max-width:60em;margin:2em auto;padding:0 1em}
h1{margin-bottom:.1em}.sub{color:#5f6368;margin-top:0}
.disclaimer{background:#b00020;color:#fff;font-weight:bold;padding:.4em .8em;border-radius:3px}
.warning{border-left:4px solid #b00020;background:#fde4e4;padding:.4em .8em;margin:.4em 0;color:#b00020}
dl{display:grid;grid-template-columns:max-content auto max-content auto;gap:.2em 1em;border-top:1px solid #b0b7bb;
border-bottom:1px solid #b0b7bb;padding:.6em 0}dt{color:#5f6368}dd{margin:0;font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:.9em}th{background:#37474f;color:#fff;padding:.3em}
td{border:1px solid #c8c8c8;padding:.25em .5em;text-align:right}td:first-child{text-align:left;font-weight:bold}
tr:nth-child(even){background:#f4f6f7}tr.flagged{background:#fde4e4;color:#b00020;font-weight:bold}
figure{margin:1em 0;border:1px solid #ddd;padding:.4em}figure.flagged{border-color:#b00020;background:#fde4e4}
img{max-width:100%}.method{color:#5f6368;font-size:.9em}
"""


def write_report_html(session: Session, path, deidentify: bool = False) -> None:
    """The report as one self-contained HTML file (images as data URIs, inline CSS), atomically."""
    import matplotlib
    from matplotlib.figure import Figure

    session = _report_session(session, deidentify)
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Joint space narrowing report</title><style>{HTML_STYLE}</style></head><body>",
             "<h1>Joint space narrowing report</h1><p class='sub'>Finger joint space narrowing between two "
             "hand radiographs, measured by per-bone registration</p>",
             f"<p class='disclaimer'>{e(DISCLAIMER)}</p>", "<dl>"]
    parts += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in header_fields(session, deidentify)]
    parts.append("</dl>")
    parts += [f"<p class='warning'>Warning: {e(w)}</p>" for w in report_warnings(session)]
    with matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        fig = Figure(figsize=(A4_IN[0] - 2 * MARGIN_IN, 4.2))
        draw_overview(fig, (0, 0, 1, 1), session, deidentify)
        parts.append(f"<img alt='Both radiographs with the joints marked' src='{_png_uri(fig)}'>")
        parts.append("<h2>Results per joint</h2><p>Positive JSN = the joint space is narrower at follow-up.</p>"
                     "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in TABLE_HEAD) + "</tr>")
        for r in session.results:
            cls = " class='flagged'" if r.flagged else ""
            parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in table_cells(r)) + "</tr>")
        parts.append("</table>")
        parts += [f"<p class='warning'>{e(r.name)} flagged: {e(r.flag_reason)}</p>"
                  for r in session.results if r.flagged]
        parts.append(f"<p class='method'>{e(METHOD_NOTE)}</p><h2>Joint details</h2>")
        images = _joint_images(session)
        for r in session.results:
            fig = Figure(figsize=(A4_IN[0] - 2 * MARGIN_IN, panel_height_in(r)))
            draw_joint_panel(fig, (0, 0, 1, 1), r, images[r.name])
            cls = " class='flagged'" if r.flagged else ""
            reason = f" FLAGGED: {e(r.flag_reason)}" if r.flagged else ""
            parts.append(f"<figure{cls}><img alt='{e(r.name)} registration' src='{_png_uri(fig)}'>"
                         f"<figcaption>{e(joint_title(r))}{reason}</figcaption></figure>")
    parts.append(f"<p class='disclaimer'>{e(DISCLAIMER)}</p></body></html>\n")
    text = "\n".join(parts)

    def write(tmp):
        Path(tmp).write_text(text, encoding="utf-8")

    write_atomically(path, write)


# --- command line ----------------------------------------------------------------------------

def run_report_command(args) -> int:
    """Handler of `jsnreg report`: errors as one-line messages, exit code 2 on bad input.

    The outputs are checked before the session is read, written under temporary names and renamed
    together at the end: a failure leaves none of them half-new."""
    from .validate import output_file, same_file

    writers = {"out": write_report_pdf, "html": write_report_html, "csv": None}
    targets = [(key, Path(getattr(args, key))) for key in writers if getattr(args, key)]
    staged = []
    try:
        if not targets:
            raise InputError("nothing to write: give --out REPORT.pdf, --html REPORT.html and/or --csv TABLE.csv")
        for key, path in targets:
            output_file(path, f"--{key}")
            if same_file(path, args.session):
                raise InputError(f"--{key} {path} is the session file itself")
        session = load_session(args.session)
        for w in report_warnings(session):
            print(f"warning: {w}", file=sys.stderr)
        for key, path in targets:
            if not path.parent.is_dir():
                raise InputError(f"cannot write {path}: folder {path.parent} does not exist")
            tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
            staged.append((tmp, path))
            if key == "csv":
                write_results_csv(session.results, tmp)
            else:
                writers[key](session, tmp, deidentify=args.deidentify)
        for tmp, path in staged:
            tmp.replace(path)
        staged = []
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    print(f"{len(session.results)} joints; written: {', '.join(str(p) for _, p in targets)}")
    return 0
