"""The second, independent start, the lowest-cost choice, ambiguity, forward-backward consistency
and the clipping rule (edges, not pixels)."""

import numpy as np
import pytest

from jsnreg import measure
from jsnreg.refine import refine_bones
from jsnreg.register import Engine, bone_regions, fit_jsn_px
from jsnreg.starts import search_bones
from jsnreg.synthetic import make_joint_pair
from jsnreg.transforms import BoneMotion


class FixedStartNetwork:
    """A network that always answers the same (deliberately wrong) motions."""

    def __init__(self, upper: BoneMotion, lower: BoneMotion):
        self.motions = (upper, lower)

    def predict(self, fixed, moving, upper_mask):
        return self.motions


def _pair(seed, **kw):
    return make_joint_pair(np.random.default_rng(seed), **kw)


def test_search_finds_each_bone_near_its_truth():
    pair = _pair(21, noise_sigma=0.01)
    regions = list(bone_regions(pair.upper_mask, None))
    for got, truth in zip(search_bones(pair.fixed, pair.moving, regions), (pair.upper, pair.lower)):
        assert got.dx_px == pytest.approx(truth.dx_px, abs=1.5)
        assert got.dy_px == pytest.approx(truth.dy_px, abs=1.5)
        assert got.dtheta_rad == pytest.approx(truth.dtheta_rad, abs=np.radians(2.5))


def test_second_start_rescues_a_wrong_network_start(engine):
    pair = _pair(22, noise_sigma=0.01)
    bad = [BoneMotion(1.0, np.radians(-9.0), pair.upper.dx_px - 16.0, pair.upper.dy_px + 16.0),
           BoneMotion(1.0, np.radians(9.0), pair.lower.dx_px + 16.0, pair.lower.dy_px - 16.0)]
    regions = list(bone_regions(pair.upper_mask, None))
    alone = refine_bones(pair.fixed, pair.moving, regions, bad)
    assert abs(fit_jsn_px(alone) - pair.jsn_px) > 1.0  # the wrong start on its own would mislead
    wrong = Engine(FixedStartNetwork(*bad), engine.calibration)
    r = wrong.register_roi(pair.fixed, pair.moving, pair.spacing_mm, upper_mask=pair.upper_mask)
    assert r.details["start_search"]["kept_start"] == "search"
    assert r.jsn_px == pytest.approx(pair.jsn_px, abs=0.1)


@pytest.mark.parametrize("cost_gap, ambiguous", [(0.005, True), (0.2, False)])
def test_two_minima_of_similar_cost_are_flagged_as_ambiguous(cost_gap, ambiguous):
    pair = _pair(28, noise_sigma=0.01)
    regions = list(bone_regions(pair.upper_mask, None))
    fit = refine_bones(pair.fixed, pair.moving, regions, [pair.upper, pair.lower])
    info = {"minima_px": 1.2, "cost_gap": cost_gap}  # two refined minima 1.2 px apart in JSN
    raw = {"minima_px": 1.2, "edge_share": fit.edge_share, "sd_jsn_px": fit.sd_jsn_px}
    reasons = measure.hard_reasons(fit, info, raw, pair.fixed.shape)
    assert any("ambiguous" in r and "1.20 px" in r for r in reasons) == ambiguous


def _split_reasons(alternatives):
    pair = _pair(28, noise_sigma=0.01)
    fit = refine_bones(pair.fixed, pair.moving, list(bone_regions(pair.upper_mask, None)), [pair.upper, pair.lower])
    info = {"minima_px": 0.0, "cost_gap": None, "split_alternatives": alternatives}
    raw = {"minima_px": 0.0, "edge_share": fit.edge_share, "sd_jsn_px": fit.sd_jsn_px,
           "split_alternative_px": measure.split_alternative(info).get("jsn_diff_px") or 0.0,
           "split_band_px": measure.band_moved_px(info)}
    return [r for r in measure.hard_reasons(fit, info, raw, pair.fixed.shape) if "ambiguous split" in r]


@pytest.mark.parametrize("jsn_diff, cost_gap, ambiguous", [(0.8, -0.005, True), (0.8, -0.1, True),
                                                          (0.8, 0.01, False), (0.3, -0.1, False)])
def test_a_runner_up_split_of_other_jsn_and_no_higher_cost_is_an_ambiguous_split(jsn_diff, cost_gap, ambiguous):
    # the band beside the line is its own bone's: only the cost speaks
    reasons = _split_reasons([{"jsn_diff_px": jsn_diff, "cost_gap": cost_gap, "band_own": 0.01, "band_other": 0.05}])
    assert any(f"{jsn_diff:.2f} px" in r for r in reasons) == ambiguous


def test_of_the_runner_ups_each_side_the_one_of_no_higher_cost_decides():
    reasons = _split_reasons([{"jsn_diff_px": 2.0, "cost_gap": 0.2, "band_own": 0.01, "band_other": 0.05},
                              {"jsn_diff_px": 0.8, "cost_gap": -0.01, "band_own": 0.01, "band_other": 0.05}])
    assert len(reasons) == 1 and "0.80 px" in reasons[0]


@pytest.mark.parametrize("band_other, jsn_diff, ambiguous", [(0.005, 0.6, True), (0.0105, 0.6, True),
                                                             (0.012, 0.6, False), (0.005, 0.3, False)])
def test_a_band_that_moves_with_the_other_bone_is_an_ambiguous_split_whatever_the_cost(band_other, jsn_diff, ambiguous):
    """The band between the split and the runner-up line (a child's epiphysis) is fitted about as
    well or better by the other bone's motion: the split may have given it to the wrong bone, though
    the runner-up's fit costs more."""
    reasons = _split_reasons([{"jsn_diff_px": jsn_diff, "cost_gap": 0.05, "band_own": 0.01, "band_other": band_other}])
    assert any("moves with the other bone" in r and f"{jsn_diff:.2f} px" in r for r in reasons) == ambiguous


def test_a_line_read_on_the_middle_level_alone_does_not_hide_another_line():
    """A runner-up line screened on the middle level (no cost gap) is never the 'close' one that would
    stand in for a line of larger JSN change."""
    screened = {"jsn_diff_px": 0.1, "cost_gap": None, "band_own": 0.01, "band_other": 0.05}
    fitted = {"jsn_diff_px": 0.8, "cost_gap": -0.01, "band_own": 0.01, "band_other": 0.05}
    assert measure.split_alternative({"split_alternatives": [screened, fitted]}) is fitted
    assert measure.split_alternative({"split_alternatives": [screened]}) is screened
    reasons = _split_reasons([screened, fitted])
    assert len(reasons) == 1 and "0.80 px" in reasons[0]


def test_a_runner_up_line_that_keeps_the_jsn_is_read_on_the_middle_level(monkeypatch):
    """Its middle-level fit's JSN within ALT_SCREEN_PX of the kept one: no rule can use it, so the finer
    levels are spared (no cost gap); beyond it, the line is fitted on both finer levels as before."""
    from scipy import ndimage

    from jsnreg import register
    from jsnreg.refine import FitImage

    pair = _pair(28, noise_sigma=0.01)
    regions = list(bone_regions(pair.upper_mask, None))
    fit = refine_bones(pair.fixed, pair.moving, regions, [pair.upper, pair.lower])
    smoothed = ndimage.gaussian_filter(pair.fixed, register.LEVEL_SMOOTH_PX)
    spread = register.intensity_spread(smoothed)
    rows = register.split.rows_from_upper_mask(pair.upper_mask) + 4.0  # a line 4 px into the lower bone
    images = FitImage(pair.fixed), FitImage(pair.moving)
    summary, screen = register.alternative_split(*images, smoothed, spread, rows, fit)
    assert summary["jsn_diff_px"] < register.ALT_SCREEN_PX and summary["cost_gap"] is None
    assert screen.sd_jsn_px == np.inf  # the finest level was not run
    monkeypatch.setattr(register, "ALT_SCREEN_PX", 0.0)
    summary, full = register.alternative_split(*images, smoothed, spread, rows, fit)
    assert summary["cost_gap"] is not None and np.isfinite(full.sd_jsn_px)


def test_the_line_whose_band_the_other_bone_explains_best_is_taken():
    line = lambda other, diff, own=0.01: {"jsn_diff_px": diff, "cost_gap": 0.05, "band_own": own,  # noqa: E731
                                          "band_other": other}
    assert measure.line_taken([line(0.008, 0.6), line(0.005, 0.9)]) == 1  # the band the other bone fits best
    assert measure.line_taken([line(0.0105, 0.6)]) is None  # only about as well: flagged, not taken
    assert measure.line_taken([line(0.005, 0.3)]) is None  # a small change: kept
    assert measure.line_taken([line(0.005, 0.3)], px_per_work_px=2) == 0  # 0.6 px of the ROI
    assert measure.line_taken([line(0.005, None), line(np.nan, 0.9), line(0.001, 0.9, own=np.nan)]) is None
    assert measure.line_taken([]) is None


def test_a_taken_line_is_trusted_only_when_its_fit_wins_on_cost_and_no_other_line_competes():
    line = lambda gap, other=0.005, diff=0.9: {"jsn_diff_px": diff, "cost_gap": gap, "band_own": 0.01,  # noqa: E731
                                               "band_other": other}
    assert measure.taken_trusted([line(-0.05)], 0)
    assert not measure.taken_trusted([line(0.02)], 0)  # the split's own fit explains the follow-up better
    assert not measure.taken_trusted([line(None)], 0)
    assert not measure.taken_trusted([line(-0.05), line(0.05, other=0.0105)], 0)  # a rival line
    assert measure.taken_trusted([line(-0.05), line(0.05, other=0.012)], 0)  # its band is its own bone's
    assert measure.taken_trusted([line(-0.05), line(0.05, diff=0.3)], 0)  # it hardly moves the JSN
    assert not measure.taken_trusted([line(-0.05), line(0.05, diff=0.3)], 0, px_per_work_px=2)  # 0.6 px of the ROI


def test_forward_backward_of_an_exact_pair_is_zero(engine):
    pair = _pair(23, noise_sigma=0.01)
    r = engine.register_roi(pair.fixed, pair.fixed, pair.spacing_mm, upper_mask=pair.upper_mask)
    assert abs(r.jsn_px) < 0.01
    assert r.details["fb_px"] < 0.01
    assert abs(r.details["fb_sum_px"]) < 0.01


def test_forward_backward_agrees_on_a_moved_pair(engine):
    pair = _pair(24, noise_sigma=0.01)
    r = engine.register_roi(pair.fixed, pair.moving, pair.spacing_mm, upper_mask=pair.upper_mask)
    assert r.details["fb_px"] < 0.1
    assert r.details["backward_jsn_px"] == pytest.approx(-r.jsn_px, abs=0.3)  # up to rotation and scale


def test_a_joint_beside_clipped_air_with_intact_edges_is_measured(engine):
    pair = _pair(27, noise_sigma=0.01, kind="PIP")
    # Air and thin soft tissue clipped dark in both visits: many pixels lost, the bones' edges kept.
    floor_f, floor_m = np.percentile(pair.fixed, 35), np.percentile(pair.moving, 35)
    fixed, moving = np.maximum(pair.fixed, floor_f), np.maximum(pair.moving, floor_m)
    r = engine.register_roi(fixed, moving, pair.spacing_mm, upper_mask=pair.upper_mask)
    assert r.details["usable_fraction"] < 0.6  # the old pixel-share rule would have given up here
    assert r.details["edge_share"] >= measure.MIN_EDGE_SHARE
    assert "edges unsaturated" not in r.flag_reason
    assert r.jsn_px == pytest.approx(pair.jsn_px, abs=0.1)
