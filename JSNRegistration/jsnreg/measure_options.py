"""The measurement options `jsnreg quantify` and `jsnreg cohort run` share (argparse only; quantify's Settings
is imported by the command that runs)."""

from __future__ import annotations

import argparse


def add_measure_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--roi-mm", type=float, default=22.0, help="joint ROI side in mm (default 22)")
    parser.add_argument("--no-refine", action="store_true", help="the network alone, no refinement")
    parser.add_argument("--no-hand-magnification", action="store_true",
                        help="one pass: no second one with the hand's magnification held along each joint")


def measure_settings(args):
    """quantify.Settings from the options add_measure_options added."""
    from .quantify import Settings

    return Settings(roi_mm=args.roi_mm, refine=not args.no_refine,
                    hand_magnification=not args.no_hand_magnification)
