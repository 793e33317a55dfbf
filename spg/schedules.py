"""Step-size schedules ``alpha_t`` (leader) and ``beta_t`` (follower) of eqs. (8)-(9).

Assumption 1 asks ``sum alpha = sum beta = inf``, ``sum alpha^2, sum beta^2 < inf`` and
``alpha_t / beta_t -> 0``. With ``c / (t + t0)^p`` that is ``1/2 < p_follower < p_leader <= 1``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class StepSize:
    """``lr`` constant, or ``lr / (t + t0)^power`` when ``power > 0``."""

    lr: float
    power: float = 0.0
    t0: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr = {self.lr}: a step size must be > 0")
        if self.power < 0:
            raise ValueError(f"power = {self.power}: a decaying step size needs power >= 0")
        if self.power > 0 and self.t0 <= 0:
            raise ValueError(f"t0 = {self.t0}: the schedule c / (t + t0)^p needs t0 > 0")

    def __call__(self, t: int) -> float:
        return self.lr if self.power == 0 else self.lr / (t + self.t0) ** self.power


def check_two_timescales(leader: StepSize, follower: StepSize) -> None:
    """Warn when decaying schedules break Assumption 1 (constant step sizes are a common,
    documented approximation and pass silently)."""
    if leader.power == 0 and follower.power == 0:
        return
    if not (0.5 < follower.power < leader.power <= 1.0):
        warnings.warn(
            f"step-size exponents leader {leader.power}, follower {follower.power} break Assumption 1 "
            "(needs 1/2 < follower < leader <= 1 so that alpha/beta -> 0 and both sums diverge)",
            stacklevel=2,
        )
