"""Evaluation of a leader-follower pair: exact quantities where the model is known, Monte Carlo
returns with standard errors always."""

from __future__ import annotations

import math

import torch

from envs.tabular_vector import TabularVectorEnv
from spg import exact
from spg.game import TabularGame
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Sampler


def exact_metrics(game: TabularGame, leader: TabularSoftmaxPolicy, follower: TabularSoftmaxPolicy, lam: float) -> dict[str, float]:
    """``J(theta1)`` (eq. 5 at the follower's best response), both values of the current pair at
    ``rho``, and the follower's best-response gap."""
    pi1, pi2 = leader.probs().detach(), follower.probs().detach()
    with torch.no_grad():
        values = exact.policy_values(game, pi1, pi2, lam)
    return {
        "game/J": exact.stackelberg_objective(game, leader.logits, lam),
        "game/leader_value": float(game.rho @ values.v1),
        "game/follower_value": float(game.rho @ values.v2),
        "game/best_response_gap": exact.best_response_gap(game, pi1, pi2, lam),
    }


def monte_carlo_returns(
    sampler: Sampler, leader: TabularSoftmaxPolicy, follower: TabularSoftmaxPolicy, episodes: int, horizon: int, gamma: float
) -> dict[str, float]:
    """Mean discounted returns of both players over ``episodes`` rollouts, with standard errors."""
    batch = sampler.collect(leader, follower, episodes, horizon)
    out = {}
    for name, returns in zip(("leader", "follower"), batch.discounted_returns(gamma)):
        out[f"{name}/return"] = float(returns.mean())
        out[f"{name}/return_se"] = float(returns.std() / math.sqrt(len(returns))) if len(returns) > 1 else float("nan")
    return out


def evaluation_sampler(game: TabularGame, episodes: int, seed: int) -> Sampler:
    """A sampler whose episodes start from ``rho``, the distribution ``J`` is judged on."""
    return Sampler(TabularVectorEnv(game, episodes, start="rho"), seed=seed)
