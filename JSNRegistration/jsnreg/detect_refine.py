"""Each joint the finger tracing found, moved onto the joint space by a learned correlation filter.

The tracing's valleys are often the wrong dark line (a child's physis, a trabecular gap) or sit to
one side of the bone. Around each traced joint, a region is sampled in the finger's own frame
(along: towards the tip, across: towards the thumb, so left and right hands look alike) at a step
of a fixed fraction of the palm radius, so a child's small hand and an adult's large one give the
same picture. The filter of the joint's type (IP1, MCP1, MCP2-5, PIP2-5, DIP2-5) answers with a
peak where the joint is: it is the least-squares filter (MOSSE, Bolme et al. 2010) whose response
on the training hands' regions best matches a narrow Gaussian at the annotated joint
(`python -m jsnreg.detect_train`, RSNA train hands only). The joint moves to the highest response
within the search range, a little penalised for moving far; a second pass repeats this in the
direction the first pass's joints of the finger give (the traced direction is a local, noisy one),
with filters of its own, learned on the regions the first pass leaves the training joints in
(a cascade: these start nearer their joint, so the second filter can be the sharper one), and a
PIP joint is then put on the line from its MCP to its DIP joint.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from .detect import _profile, centre_offset

FILTERS = Path(__file__).parent / "data" / "detect_filters.json"
R_STEPS = 60.0  # sampling steps per palm radius (0.5-0.75 mm on the RSNA hands)
HALF = (45, 22)  # region half-size in steps (along, across): the filter's context and the search
SEARCH = (20, 8)  # how far the joint may move, in steps: along, across
MOVE_PENALTY = 0.05  # response (of its maximum 1) given up for moving the whole search range
# A traced thumb IP joint whose filter response has a weaker peak than this is left out: the thumb is
# then too short or bent for one (train and val hands: the one annotated absent 2.4, the 44 there 2.9-9).
MIN_IP1_PSR = 2.65
# Neighbouring joints of one finger are never closer than 0.30 palm radii on the train and val hands
# (PIP5-DIP5; 5th percentile 0.42): two refined ones closer than this are one joint found twice.
MIN_NEIGHBOUR_RADII = 0.2
# The thumb's proximal phalanx (refined MCP1 to IP1) is 0.57-0.88 palm radii long on the train and val
# hands; a thumb cut by the film's edge before its IP joint (train 2107, IP1 annotated absent) gives
# 0.26: its IP1 is then the MCP's joint space or the metacarpal's physis, and is left out.
MIN_THUMB_PHALANX_RADII = 0.4
# A DIP closer than this to the film's edge has its distal phalanx beyond it: on the train and val hands and
# their variants (fingers cut by the edge, rotated, ...), of the 10 DIPs within 3 mm of the edge 5 were invented
# (their joint beyond the edge) and 1 misplaced; it is left out (`jsnreg bench --detect --splits val,train`:
# fingers cut, DIP2-5 invented 5 -> 0, found 47 -> 42; as filmed unchanged). Nothing measurable is lost: a 22 mm
# ROI there lies more than rois.MAX_OUTSIDE_FRACTION beyond the edge. The same for IP1 lost more found thumbs
# (one as filmed) than the one invented it saved.
MIN_DIP_EDGE_MM = 3.0
# How far to either side lines across a joint reach when it is re-centred (mm). A metacarpal head is up
# to 16 mm wide (MCP, 6 mm: val 143, train 2-fold CV 392; 8 mm: 144, 393; 10 mm: 144, 390, the
# neighbouring metacarpals coming in); an adult's PIP 10-12 mm at the nominal spacing (adult val: 4-7 mm
# gained none of its 16 PIPs, 8 and 10 mm four; 10 mm: train CV 376); a DIP is narrower (adult val DIP:
# 5 mm 13, 6 mm 14, 8 mm 13 of 16; train CV 362, 365, 353).
REACH_MM = {"MCP": 8.0, "PIP": 8.0, "DIP": 6.0}
# An MCP2-5 joint is then moved along its finger onto the darkest line across it within 1.5 mm: the
# filters, learned on children, leave some adults' MCPs in the metacarpal head, proximal of the joint
# space (adult val MCP2-5 12 -> 15 of 16 within 2 mm; RSNA val 42 of 48 and train 2-fold CV 393 of 461
# either way; 1.0 mm: RSNA val 41). The same for PIP lost adult val 6 -> 1 of 16 (the SHS_NET points sit
# on the middle phalanx's base, 1.3-2 mm distal of the darkest line), for DIP RSNA val 42 -> 40 and
# train CV 393 -> 385, for MCP1 or IP1 one on the CV.
SNAP_MM = 1.5
# The proximal phalanx (MCP to PIP) is 1.41-2.37 times as long as the middle one (PIP to DIP) on the
# train hands' annotations of fingers 2-5 (median 1.66): a refined MCP beyond that is a dark line other
# than the joint space (val 2783: a valley 12 mm proximal, beyond the filter's search range).
PHALANX_RATIO = (1.41, 2.37)
TYPICAL_PHALANX_RATIO = 1.66
# A joint the refinement moved farther than 0.25 palm radii from its trace was never within 2 mm of its
# annotation on the val hands (val 1541, a young child's: MCP2 and MCP3 carried 9-18 mm towards the
# film's exposure step), nor on the train hands with the shipped filters (2107's MCP1); right ones
# moved under 0.2 on val, under 0.25 on train (train 2-fold CV: 393 of 461 either way, one MCP1 left out).
MAX_MOVE_RADII = 0.25
_NEIGHBOURS = [(f"MCP{d}", f"PIP{d}") for d in "2345"] + [(f"PIP{d}", f"DIP{d}") for d in "2345"] + [("MCP1", "IP1")]


def joint_type(name: str) -> str:
    base = name.split("-")[-1]
    return base if base in ("IP1", "MCP1") else base[:3]


def thumbward(distal: np.ndarray, side: str) -> np.ndarray:
    return np.array([-distal[1], distal[0]]) if side == "L" else np.array([distal[1], -distal[0]])


def region(image: np.ndarray, centre: np.ndarray, distal: np.ndarray, side: str, step: float) -> np.ndarray:
    """Samples of `image` at centre + (i * distal + j * thumbward) * step, i in [-HALF[0], HALF[0]]
    (rows, proximal first), j in [-HALF[1], HALF[1]]; normalised and tapered (Hann) to its edges
    for the filter's circular correlation."""
    across = thumbward(distal, side)
    i = np.arange(-HALF[0], HALF[0] + 1)[:, None] * step
    j = np.arange(-HALF[1], HALF[1] + 1)[None, :] * step
    xs = centre[0] + i * distal[0] + j * across[0]
    ys = centre[1] + i * distal[1] + j * across[1]
    r = ndimage.map_coordinates(image, [ys, xs], order=1, mode="nearest")
    r = (r - r.mean()) / (r.std() + 1e-6)
    return r * np.outer(np.hanning(r.shape[0]), np.hanning(r.shape[1]))


def load_filters(path=FILTERS) -> list:
    """Per pass, {joint type: the filter's spectrum}."""
    data = json.loads(Path(path).read_text())
    return [{k: np.fft.fft2(np.asarray(v, float)) for k, v in stage.items()} for stage in data["filters"]]


@lru_cache(maxsize=1)
def _filters() -> list:
    """The shipped filters, read once per process."""
    return load_filters()


def move(r: np.ndarray, spectrum: np.ndarray) -> tuple[tuple, float, float, float]:
    """The best joint position in a region (steps along, across from its centre), the response
    there (of the region's maximum), its peak-to-sidelobe ratio (Bolme et al.: the peak above
    the rest of the search window, in its SDs; low where nothing joint-like is there) and the
    second-best place's score over the best's (beyond 5 steps from it: near 1 when two dark lines
    compete)."""
    response = np.fft.ifft2(np.fft.fft2(r) * spectrum).real
    response /= max(float(response.max()), 1e-9)
    da = np.arange(-SEARCH[0], SEARCH[0] + 1)[:, None]
    dc = np.arange(-SEARCH[1], SEARCH[1] + 1)[None, :]
    window = response[HALF[0] + da, HALF[1] + dc]
    score = window - MOVE_PENALTY * ((da / SEARCH[0]) ** 2 + (dc / SEARCH[1]) ** 2)
    a, c = np.unravel_index(int(np.argmax(score)), score.shape)
    rest = np.ones(window.shape, bool)
    rest[max(a - 5, 0):a + 6, max(c - 5, 0):c + 6] = False
    psr = (window[a, c] - window[rest].mean()) / (window[rest].std() + 1e-9)
    second = float(score[rest].max() / max(score[a, c], 1e-9))
    return (a - SEARCH[0], c - SEARCH[1]), float(window[a, c]), float(psr), second


# The joints whose line gives a joint's finger direction (proximal, distal) after a first pass; MCP1
# keeps the traced one (the generated hand's thumb base drifts off in its IP1 line).
_CHORDS = {"DIP": ("PIP", "DIP"), "PIP": ("MCP", "DIP"), "MCP": ("MCP", "PIP"), "IP1": ("MCP1", "IP1")}


def _chord(name: str, at: dict) -> np.ndarray | None:
    """The unit direction towards the tip from the refined joints of the same finger, or None."""
    digit, kind = name[-1], joint_type(name)
    if kind not in _CHORDS:
        return None
    lo, hi = (k if k.endswith("1") else k + digit for k in _CHORDS[kind])
    if lo not in at or hi not in at:
        return None
    v = at[hi] - at[lo]
    return v / (np.linalg.norm(v) + 1e-9)


def one_pass(image: np.ndarray, hand, joints: list, spectra: dict) -> tuple[list, dict, list]:
    """joints [(name, (x, y) work px, distal)] each moved to its filter's peak: [(name, (x, y),
    {"psr", "second": move's})], {bare name: (x, y)} and the joints for a next
    pass (in the direction the moved joints of the finger give)."""
    step = hand.radius / R_STEPS
    out, at = [], {}
    for name, centre, distal in joints:
        (a, c), _, psr, second = move(region(image, centre, distal, hand.side, step), spectra[joint_type(name)])
        xy = centre + (a * distal + c * thumbward(distal, hand.side)) * step
        out.append((name, xy, {"psr": psr, "second": second}))
        at[name.split("-")[-1]] = xy
    chords = [_chord(name, at) for name, _, _ in out]
    return out, at, [(name, xy, d if chord is None else chord)
                     for (name, xy, _), (_, _, d), chord in zip(out, joints, chords)]


def refine(image: np.ndarray, hand, passes=None) -> list:
    """[(name, (x, y) work px, signals)] of a hand's traced joints, each moved to its filter's peak;
    then once more, in the direction the refined joints of its finger give, by the second pass's
    filters (real hands: 2-fold CV 0.809 -> 0.824 against the first pass's filters twice); an MCP2-5
    out of proportion to its finger's PIP and DIP searched for again (val 144 -> 145 of 168, train
    2-fold CV 393 of 461 either way); MCP2-5 and DIP joints then on their bones' centre line, PIP
    joints on their MCP-DIP line and then on their bones' centre line (_recentred); a joint found
    twice, the IP1 of a cut thumb, one moved farther than MAX_MOVE_RADII from its trace, one beyond
    the image's edge, or a DIP within MIN_DIP_EDGE_MM of it, left out;
    the MCP2-5 kept then moved along their finger onto the joint space's darkest line (SNAP_MM).
    signals: what the joint's confidence is judged from (_signals). passes: per pass {joint type:
    filter spectrum} (default the shipped filters)."""
    passes = _filters() if passes is None else passes
    joints = [(name, np.asarray(centre, float), distal) for name, centre, distal, _ in hand.joints
              if joint_type(name) != "IP1" or _ip1_psr(image, hand, centre, distal, passes[0]) >= MIN_IP1_PSR]
    traced = {name: centre for name, centre, _ in joints}
    for spectra in passes:
        out, at, joints = one_pass(image, hand, joints, spectra)
    out, joints, searched_from = _proportioned(image, hand, out, joints, passes)
    filtered = {name: xy for name, xy, _ in out}
    out = [(name, _recentred(image, hand, name, xy, d) if joint_type(name) != "PIP" else xy, found)
           for (name, xy, found), (_, _, d) in zip(out, joints)]
    at = {name.split("-")[-1]: xy for name, xy, _ in out}
    out = [(name, _recentred(image, hand, name, _on_axis(name, xy, at), d) if joint_type(name) == "PIP" else xy,
            found) for (name, xy, found), (_, _, d) in zip(out, joints)]
    starts = {**traced, **searched_from}
    jumped = (_jumped(out, traced, hand.radius * MIN_NEIGHBOUR_RADII) | _cut_thumb(out, hand.radius)
              | _strayed(out, starts, hand.radius * MAX_MOVE_RADII) | _outside(out, image.shape)
              | _dip_at_edge(out, image.shape, MIN_DIP_EDGE_MM / hand.mm))
    kept = [(name, _darkest_along(image, xy, d, hand.mm) if joint_type(name) == "MCP" else xy, found)
            for (name, xy, found), (_, _, d) in zip(out, joints) if name not in jumped]
    at = {name: xy for name, xy, _ in kept}
    depth = {name: ratio for name, _, _, ratio in hand.joints}
    return [(name, xy, _signals(name, xy, found, at, starts[name], filtered[name], depth[name], name in searched_from,
                                hand))
            for name, xy, found in kept]


def _signals(name: str, xy: np.ndarray, found: dict, at: dict, start: np.ndarray, filtered: np.ndarray,
             depth_ratio: float, searched: bool, hand) -> dict:
    """What a refined joint at xy is judged from (jsnreg.detect_confidence): its type; the last filter
    pass's peak-to-sidelobe ratio and second-best place (found: move's); how far the refinement moved it
    from where its search started (palm radii); whether an MCP was searched for again by the phalanges'
    proportion; its finger's phalanx ratio (fingers 2-5 with all three joints kept, else None); the
    traced valley's depth over the profile's median valley depth; the palm radius (mm at the given
    spacing); how far the re-centring and the darkest-line move took it from the filters' point
    (filtered, mm)."""
    digit = name[-1]
    return {"type": joint_type(name), "psr": found["psr"], "second": found["second"],
            "move_radii": float(np.linalg.norm(xy - start) / hand.radius), "researched": bool(searched),
            "phalanx_ratio": _phalanx_ratio(at, digit) if digit in "2345" else None,
            "depth_ratio": float(depth_ratio), "radius_mm": float(hand.radius * hand.mm),
            "recentred_mm": float(np.linalg.norm(xy - filtered) * hand.mm)}


def _phalanx_ratio(at: dict, digit: str) -> float | None:
    """|MCP - PIP| / |PIP - DIP| of a finger 2-5, or None when one of its joints is not there."""
    mcp, pip, dip = (at.get(kind + digit) for kind in ("MCP", "PIP", "DIP"))
    if mcp is None or pip is None or dip is None:
        return None
    return float(np.linalg.norm(mcp - pip) / (np.linalg.norm(pip - dip) + 1e-9))


def _proportioned(image: np.ndarray, hand, out: list, joints: list, passes: list) -> tuple[list, list, dict]:
    """out and joints (as refine's, after the passes) with each MCP2-5 whose proximal phalanx is out
    of proportion to its middle one (PHALANX_RATIO) searched for again by the filter passes, from
    where the typical proportion puts it along the PIP's line from the DIP, and moved there when that
    is in proportion (train 2-fold CV: leaving out those still out of proportion loses 1638's MCP5,
    which was right, the finger's own proportions being beyond the annotated range); and {name: the
    point its new search started from} of the MCPs moved."""
    at = {name: xy for name, xy, _ in out}
    redone = {}
    for digit in "2345":
        ratio = _phalanx_ratio(at, digit)
        if ratio is None or PHALANX_RATIO[0] <= ratio <= PHALANX_RATIO[1]:
            continue
        pip, dip = at["PIP" + digit], at["DIP" + digit]
        distal = (dip - pip) / (np.linalg.norm(dip - pip) + 1e-9)
        start = pip - distal * TYPICAL_PHALANX_RATIO * np.linalg.norm(dip - pip)
        joint = [("MCP" + digit, start, distal)]
        for spectra in passes:
            moved, _, joint = one_pass(image, hand, joint, spectra)
        if PHALANX_RATIO[0] <= _phalanx_ratio({**at, "MCP" + digit: moved[0][1]}, digit) <= PHALANX_RATIO[1]:
            redone["MCP" + digit] = moved[0], joint[0], start
    out = [redone[o[0]][0] if o[0] in redone else o for o in out]
    joints = [redone[j[0]][1] if j[0] in redone else j for j in joints]
    return out, joints, {name: r[2] for name, r in redone.items()}


def _recentred(image: np.ndarray, hand, name: str, xy: np.ndarray, distal: np.ndarray) -> np.ndarray:
    """An MCP2-5, PIP or DIP joint moved across its finger (distal: its refined finger direction) onto
    the bones' centre line (jsnreg.detect.centre_offset, lines reaching REACH_MM): the filters, shared
    by four fingers of different widths, place them well along the finger but loosely across. A PIP is
    re-centred after being put on its MCP-DIP line (its place where no line across finds the bone's
    edges). MCP: val 142 -> 143 of 154 traced joints, train 2-fold CV 391 -> 392 of 461. PIP: adult val
    6 -> 10 of 16 within 2 mm, RSNA val 46 -> 42 of 48, train CV 393 -> 382. DIP: adult val 11 -> 14 of
    16, RSNA val 42 -> 41 of 48, train CV 382 -> 365. The RSNA losses are the annotations': of the RSNA
    joints whose outcome it changes (val and CV), shown blind as two unlabelled markers A/B, the
    re-centred one sat on the bones' axis in the joint space 22 of 29 times for PIP (the other once, 6
    undecided) and 20 of 25 for DIP (never the other, 5 undecided). IP1 and MCP1 are not re-centred
    (MCP1 along its MCP1-IP1 line, reach 6 mm: RSNA val 8 -> 11 of 12, adult val 1 -> 2 of 4, but the
    blind check put the other point on the axis 6 of 9 times, the re-centred one once)."""
    kind = joint_type(name)
    if kind not in REACH_MM:
        return xy
    return xy + np.array([-distal[1], distal[0]]) * centre_offset(image, xy, distal, hand.mm, REACH_MM[kind])


def _darkest_along(image: np.ndarray, xy: np.ndarray, distal: np.ndarray, mm: float,
                   window_mm: float = SNAP_MM) -> np.ndarray:
    """xy moved along its finger (distal: unit vector towards the tip) onto the darkest line across it
    (detect._profile: the mean across a 3 mm band, every 0.1 mm) within window_mm; xy itself when
    that line is at the window's end (a slope, not a valley: the bone's end or a band's edge)."""
    along = np.arange(-window_mm, window_mm + 1e-6, 0.1) / mm
    k = int(np.argmin(_profile(image, xy + along[:, None] * distal, mm)))
    return xy if k in (0, len(along) - 1) else xy + distal * along[k]


def _cut_thumb(joints: list, radius: float) -> set:
    """{"IP1"} when the refined IP1 lies closer to MCP1 than a thumb's proximal phalanx can be long
    (MIN_THUMB_PHALANX_RADII): the thumb ends at the film's edge before its IP joint."""
    at = {name: xy for name, xy, _ in joints}
    short = "IP1" in at and "MCP1" in at and np.linalg.norm(at["IP1"] - at["MCP1"]) < MIN_THUMB_PHALANX_RADII * radius
    return {"IP1"} if short else set()


def _jumped(joints: list, traced: dict, min_px: float) -> set:
    """Names of joints that ended on a neighbour of their finger (closer than min_px to it): of the two,
    the one that moved farther from where it was traced took the other's joint space, so it is left
    out rather than reported twice (a joint that is not there must not be invented)."""
    at = {name: xy for name, xy, _ in joints}
    out = set()
    for a, b in _NEIGHBOURS:
        if a in at and b in at and np.linalg.norm(at[a] - at[b]) < min_px:
            out.add(max((a, b), key=lambda n: np.linalg.norm(at[n] - traced[n])))
    return out


def _strayed(joints: list, starts: dict, max_px: float) -> set:
    """Names of joints the filters moved farther than max_px from where their search started (the
    trace, or the phalanges' proportion for an MCP searched again): they took another dark line for
    the joint space, and a wrong position is worse than none."""
    return {name for name, xy, _ in joints if np.linalg.norm(xy - starts[name]) > max_px}


def _outside(joints: list, shape: tuple) -> set:
    """Names of joints the refinement put beyond the image's edge: a thumb cut by the film's edge
    leaves its IP1 there (the regions are read on past the edge as its last pixels), and a joint
    the film does not show must not be reported (the train and val hands cropped beside the thumb
    0.6-1.3 of the way from MCP1 to IP1: of 15 IP1 placed outside, 10 were beyond the edge and 5
    misplaced, none found; no train or val hand as filmed has a joint placed outside)."""
    h, w = shape
    return {name for name, (x, y), _ in joints if not (0 <= x <= w - 1 and 0 <= y <= h - 1)}


def _dip_at_edge(joints: list, shape: tuple, min_px: float) -> set:
    """Names of the DIP joints closer than min_px to the image's border (MIN_DIP_EDGE_MM)."""
    h, w = shape
    return {name for name, (x, y), _ in joints if joint_type(name) == "DIP" and min(x, y, w - 1 - x, h - 1 - y) < min_px}


def _ip1_psr(image: np.ndarray, hand, centre, distal: np.ndarray, spectra: dict) -> float:
    """The first pass's peak-to-sidelobe ratio at a traced thumb IP joint."""
    r = region(image, np.asarray(centre, float), distal, hand.side, hand.radius / R_STEPS)
    return move(r, spectra["IP1"])[2]


def _on_axis(name: str, xy: np.ndarray, at: dict) -> np.ndarray:
    """A PIP joint moved across its finger onto the line from its MCP to its DIP joint: the filter
    places it well along the finger but loosely across (the joint space is a line across it), and
    the finger's axis runs through the joints on either side (real hands: 2-fold CV 0.78 -> 0.80;
    the same for MCP and DIP on a line fitted through all three does not help)."""
    mcp, dip = at.get("MCP" + name[-1]), at.get("DIP" + name[-1])
    if joint_type(name) != "PIP" or mcp is None or dip is None:
        return xy
    u = (dip - mcp) / (np.linalg.norm(dip - mcp) + 1e-9)
    return mcp + u * float((xy - mcp) @ u)
