"""Testing during an epidemic: a government (leader) sets a testing subsidy, a representative
citizen (follower) decides whether to test.

States ``0 .. levels-1`` are infection levels, with prevalence ``x = s / (levels - 1)``.
The government's actions are subsidy levels ``subsidies[a1]`` (a fraction of the test cost it
pays); the citizen's are ``0`` (no test) and ``1`` (test). Infections move one level at a time:

    up:   spread * x_up(s) * (1 - efficacy * test),      x_up(s) = (s + 1) / levels
    down: recovery + efficacy * test * detection,        (each capped so the row sums to 1)

Rewards per step:

    government: -infection_cost * x - subsidy * test_cost * test
    citizen:    -sickness_cost * x * (1 - protection * test) - (1 - subsidy) * test_cost * test

Testing mostly helps *others* (it slows the spread, and infections cost the government six times
what they cost the citizen), so a citizen left alone under-tests. Simultaneous gradient play never
subsidises (a subsidy only costs, given the citizen's current behaviour); committing to a subsidy
makes the citizen test, which is what commitment buys here (at ``lam = 0.05``: ``J`` about -4.5
against -9.9).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spg.game import TabularGame


def epidemic_game(
    levels: int = 5,
    subsidies: Sequence[float] = (0.0, 0.5, 1.0),
    spread: float = 0.6,
    recovery: float = 0.15,
    efficacy: float = 0.6,
    detection: float = 0.5,
    test_cost: float = 1.0,
    protection: float = 0.2,
    infection_cost: float = 6.0,
    sickness_cost: float = 1.0,
    gamma: float = 0.9,
) -> TabularGame:
    """The epidemic-testing game as a :class:`TabularGame`; ``rho`` starts at the lowest level."""
    if levels < 2:
        raise ValueError(f"levels = {levels}: at least 2 infection levels")
    subsidies = np.asarray(subsidies, dtype=float)
    if subsidies.ndim != 1 or len(subsidies) < 1 or (subsidies < 0).any() or (subsidies > 1).any():
        raise ValueError("subsidies must be a list of fractions of the test cost in [0, 1]")
    for name, value in (
        ("spread", spread),
        ("recovery", recovery),
        ("efficacy", efficacy),
        ("detection", detection),
        ("protection", protection),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} = {value}: must lie in [0, 1]")
    A1, A2 = len(subsidies), 2
    P = np.zeros((levels, A1, A2, levels))
    R1 = np.zeros((levels, A1, A2))
    R2 = np.zeros((levels, A1, A2))
    for s in range(levels):
        x = s / (levels - 1)
        for test in (0, 1):
            up = spread * (s + 1) / levels * (1.0 - efficacy * test) if s < levels - 1 else 0.0
            down = min(recovery + efficacy * test * detection, 1.0 - up) if s > 0 else 0.0
            row = np.zeros(levels)
            if s < levels - 1:
                row[s + 1] = up
            if s > 0:
                row[s - 1] = down
            row[s] = 1.0 - up - down
            for a1, subsidy in enumerate(subsidies):
                P[s, a1, test] = row
                R1[s, a1, test] = -infection_cost * x - subsidy * test_cost * test
                R2[s, a1, test] = -sickness_cost * x * (1.0 - protection * test) - (1.0 - subsidy) * test_cost * test
    rho = np.zeros(levels)
    rho[0] = 1.0
    return TabularGame(P, R1, R2, gamma, rho)
