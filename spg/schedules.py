"""Step-size schedules: the leader's ``alpha_t`` of eq. (8), the decay of the follower's step
``beta_t`` of eq. (9), and the two-timescale check.

Assumption 1 asks ``sum alpha = inf``, ``sum alpha^2 < inf`` and ``alpha_t / beta_t -> 0``: the
leader is the slow player. With ``alpha_t = lr (t0 / (t + t0))^p`` and a follower step decaying as
``(t0' / (t + t0'))^q`` that is ``1/2 < p <= 1`` and ``q < p``. A constant follower step
(``q = 0``) is the common constant-step approximation; the shipped ``q = 3/4`` also lets the
noise of a follower learned from samples fade.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class StepSize:
    """``lr`` at ``t = 0``, decaying as ``lr (t0 / (t + t0))^power`` (constant when ``power = 0``);
    ``lr > 0``, ``power >= 0`` and ``t0 > 0`` (:func:`spg.algorithms.check_algo` checks the settings)."""

    lr: float
    power: float = 0.0
    t0: float = 1.0

    def __call__(self, t: int) -> float:
        return self.lr if self.power == 0 else self.lr * (self.t0 / (t + self.t0)) ** self.power


def growing_batch(batch_size: int, growth: float, leader_step: StepSize, t: int) -> int:
    """Trajectories sampled for leader update ``t``: ``batch_size (alpha_0 / alpha_t)^growth``,
    rounded up. With ``growth = 1`` the batch grows as the leader's step shrinks, so the noise a
    sampled direction puts into the leader's logits shrinks with the step while early updates,
    which only need a rough direction, stay cheap; ``growth = 0`` keeps ``batch_size``."""
    return math.ceil(batch_size * (leader_step(0) / leader_step(t)) ** growth - 1e-9)


def check_two_timescales(leader: StepSize, follower: StepSize) -> None:
    """Warn when the schedules break Assumption 1 (constant steps for both players are a common,
    documented approximation and pass silently)."""
    if leader.power != 0 and not 0.5 < leader.power <= 1.0:
        warnings.warn(
            f"leader step-size exponent {leader.power} breaks Assumption 1 (needs 1/2 < power <= 1 so that "
            "sum alpha = inf and sum alpha^2 < inf)",
            stacklevel=2,
        )
    if follower.power > 0 and follower.power >= leader.power:
        warnings.warn(
            f"the follower's step decays with exponent {follower.power}, no more slowly than the leader's "
            f"({leader.power}): Assumption 1 needs the leader to be the slow player (algo.follower.power < algo.leader.power; "
            "with a constant leader step, algo.follower.power=0)",
            stacklevel=2,
        )
