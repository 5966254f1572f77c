"""How a sensitivity steps a probability (v2 F9's ``--convert-step``): relative, odds or points.

A lever on a probability (a stage's ``convert``; later a move's ``share``) moves it by a step
s (10% unless asked) down and up, one of three ways:

* ``relative`` (the default, v1's): p -> p (1 ± s). The scenario's law is scaled (a fixed
  value, a beta's mean, a uniform's bounds ...; :func:`forecaster.scenario.variants.scale_quantity`).
  Where the scaled law would leave [0, 1] (0.95 x 1.1 = 1.045), that quantity is instead
  **capped**: each trial's drawn p becomes min(1, p (1 + s)), and the result says so.
* ``odds``: each trial's drawn p becomes p f / (1 - p + p f), f = 1 ± s: its odds are
  multiplied by f, so it never leaves (0, 1) and nothing is capped or skipped
  (0.95 at +10% becomes 0.954338). A law has no closed form after this map, so it is applied
  to every trial's draw (:class:`DrawnStep`), before the shared shocks; the shocks move p on
  the log-odds scale too, so the order does not matter.
* ``points``: p -> p ± s, the law shifted by s (a fixed value, a beta's mean with its
  concentration kept, a uniform's bounds and mode ...; :func:`forecaster.scenario.variants.shift_quantity`).
  Where the shifted law leaves [0, 1] the lever is skipped, as v1 skips.

A per-trial step (``odds``, and ``relative``'s caps) acts on slots of theta, the per-trial
draws (:mod:`forecaster.engine.interface`): ``convert.<stage>`` and, with moves (v2 B),
``move.<stage>.<to>``. Common random numbers hold: every trial draws what the base draws, and
only the map from draw to probability changes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("relative", "odds", "points")
"""The ways a probability lever steps (``--convert-step``)."""
PROBABILITY_KINDS = ("convert", "move_share")
"""Lever kinds whose quantities are probabilities, which ``--convert-step`` applies to."""


def odds_step(p, factor: float):
    """p with its odds multiplied by ``factor``: p f / (1 - p + p f); 0 and 1 stay.

    >>> round(odds_step(0.95, 1.1), 6)
    0.954338
    """
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where((p > 0.0) & (p < 1.0), p * factor / (1.0 - p + p * factor), p)
    return float(out) if out.ndim == 0 else out


def capped_step(p, factor: float):
    """min(1, p f): ``relative``'s step where the scaled law would leave [0, 1]."""
    out = np.minimum(1.0, np.asarray(p, dtype=float) * factor)
    return float(out) if out.ndim == 0 else out


def scale_step(x, factor: float):
    """x f: a relative step of a drawn rate (v2 E.1: a rate that shares a draw is stepped per trial)."""
    out = np.asarray(x, dtype=float) * factor
    return float(out) if out.ndim == 0 else out


def shift_step(p, delta: float):
    """p + delta: a ``points`` step of a drawn probability (v2 E.1: one that shares a draw is
    stepped per trial; the lever is skipped where its law would leave [0, 1])."""
    out = np.asarray(p, dtype=float) + delta
    return float(out) if out.ndim == 0 else out


RULES = {"odds": odds_step, "capped": capped_step, "scale": scale_step, "shift": shift_step}
"""Per-trial maps of a drawn probability, by name."""


@dataclass(frozen=True)
class DrawnStep:
    """A map applied to some slots of every trial's draws: ``theta[:, g, k] = rule(theta[:, g, k], factor)``
    (``factor``: the step's amount, an added number for ``shift``).

    The engine calls it (``Plan.adjust_theta``) right after drawing the per-trial
    parameters and before the shared shocks. ``slots``: (segment index, theta slot) pairs.
    """

    rule: str
    factor: float
    slots: tuple[tuple[int, int], ...]

    def __call__(self, theta: np.ndarray) -> None:
        step = RULES[self.rule]
        for g, k in self.slots:
            theta[:, g, k] = step(theta[:, g, k], self.factor)
