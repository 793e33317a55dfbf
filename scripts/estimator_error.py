"""How precisely does each sampled estimator give the leader's direction (eq. 19)?
``python scripts/estimator_error.py [--games patrolling-line-4 ...] [--batches 8]``.

On games of the convergence suite (:func:`envs.families.convergence_games`), at two leaders (the
uniform one, and the one 100 steps of exact ascent on ``J`` reach), with the follower at its exact
soft best response, ``spg``'s sampled direction (``--trajectories 512`` of them, the automatic
horizon, follower probes, eq. 19 in closed form) is compared with the exact one for each
``algo.estimator``. Printed per game, leader and estimator: the mean squared error over the
batches and the squared bias of their mean, both relative to ``|exact direction|^2``, and the
ratio ``reinforce / pooled`` of the mean squared errors, all measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.families import convergence_games  # noqa: E402
from envs.tabular_vector import TabularVectorEnv  # noqa: E402
from spg import exact  # noqa: E402
from spg.algorithms import make_learner  # noqa: E402
from spg.config import AlgoConfig  # noqa: E402
from spg.objectives import ESTIMATORS, ExactObjectives, SampledObjectives  # noqa: E402
from spg.reference import ascend  # noqa: E402
from spg.sampler import Sampler  # noqa: E402
from spg.task import plan_rollouts, start_weights  # noqa: E402

DEFAULT_GAMES = ["patrolling-line-4", "epidemic-5-levels", "random-10-states", "delayed-3-actions-delay-2"]


def errors(game, lam: float, ascent_steps: int, batches: int, trajectories: int) -> dict[str, tuple[float, float]]:
    """Per estimator: (mean squared error, squared bias of the mean), relative to |exact|^2."""
    game = exact.dense_for_derivatives(game)
    leader, follower, learner = make_learner(OmegaConf.structured(AlgoConfig(name="spg", lam=lam)), game.num_states, game.num_actions)
    theta = torch.zeros_like(leader.logits)
    if ascent_steps:
        theta = ascend(game, theta, lam, iterations=ascent_steps)
    with torch.no_grad():
        leader.logits.copy_(theta)
        follower.logits.copy_(exact.soft_best_response(game, leader.probs(), lam).logits)
    target = learner.reference_direction(ExactObjectives(game))
    plan = plan_rollouts(game.gamma, None, "auto")
    sampler = Sampler(TabularVectorEnv(game, trajectories, start="mu"), seed=1, probe_discount=game.gamma,
                      geometric_discount=game.gamma if plan.geometric else None)
    found: dict[str, list[torch.Tensor]] = {name: [] for name in ESTIMATORS}
    for _ in range(batches):
        batch = sampler.collect(leader, follower, trajectories, plan.horizon)
        for name in ESTIMATORS:  # the same batches for every estimator
            source = SampledObjectives(batch, plan.discount(game.gamma), center=plan.geometric, start_weights=start_weights(game, "mu"), estimator=name)
            direct, implicit, _ = learner._direction(source, {})
            found[name].append(direct + implicit)
    scale = float((target**2).sum())
    return {
        name: (float(((torch.stack(d) - target) ** 2).sum((1, 2)).mean()) / scale, float(((torch.stack(d).mean(0) - target) ** 2).sum()) / scale)
        for name, d in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=DEFAULT_GAMES)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--trajectories", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    games = {name: (game, lam) for name, _, game, lam in convergence_games()}
    print(f"{'game':<28} {'leader':<10} " + " ".join(f"{name + ' mse':>14} {name + ' bias^2':>16}" for name in ESTIMATORS) + "   reinforce/pooled")
    for name in args.games:
        game, lam = games[name]
        for label, steps in (("uniform", 0), ("ascent100", 100)):
            row = errors(game, lam, steps, args.batches, args.trajectories)
            cells = " ".join(f"{row[e][0]:>14.3g} {row[e][1]:>16.3g}" for e in ESTIMATORS)
            print(f"{name:<28} {label:<10} {cells}   {row['reinforce'][0] / row['pooled'][0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
