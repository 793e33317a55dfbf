"""How precisely does each sampled estimator give the leader's direction (eq. 19)?
``python scripts/estimator_error.py [--games patrolling-line-4 ...] [--batches 8] [--probes 0.25]``.

On games of the convergence suite (:func:`envs.families.convergence_games`), at two leaders (the
uniform one, and the one 100 steps of exact ascent on ``J`` reach), with the follower at its exact
soft best response, ``spg``'s sampled direction (``--trajectories 512`` of them, the automatic
horizon, follower probes at ``--probes``, ``spg``'s ``algo.probes``) is compared with the exact eq. (19) for every pair of ``algo.solve``
(``closed_form``, ``cg``) and ``algo.estimator`` (``pooled``, ``reinforce``), all on the same
batches. Printed per game, leader and pair: the mean squared error over the batches relative to
``|exact direction|^2`` (its square root is the typical relative error of one batch's direction),
and the ratio of each pair's error to that of the default pair (``closed_form``, ``pooled``).
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
from spg.algorithms import SOLVERS, make_learner  # noqa: E402
from spg.config import AlgoConfig  # noqa: E402
from spg.objectives import ESTIMATORS, ExactObjectives, SampledObjectives  # noqa: E402
from spg.reference import ascend  # noqa: E402
from spg.sampler import Sampler  # noqa: E402
from spg.task import plan_rollouts, start_weights  # noqa: E402

DEFAULT_GAMES = [
    "security-2-targets",
    "random-3-states",
    "patrolling-line-4",
    "epidemic-5-levels",
    "random-10-states",
    "delayed-3-actions-delay-2",
]


PAIRS = [(solve, estimator) for solve in SOLVERS for estimator in ESTIMATORS]


def errors(
    game, lam: float, ascent_steps: int, batches: int, trajectories: int, probes: float
) -> dict[tuple[str, str], float]:
    """Per (solve, estimator): the mean squared error of the sampled direction over the batches,
    relative to ``|exact|^2``."""
    game = exact.dense_for_derivatives(game)
    learners = {}
    for solve in SOLVERS:
        leader, follower, learners[solve] = make_learner(
            OmegaConf.structured(AlgoConfig(name="spg", lam=lam, solve=solve)), game.num_states, game.num_actions
        )
    theta = torch.zeros_like(leader.logits)
    if ascent_steps:
        theta = ascend(game, theta, lam, iterations=ascent_steps)
    response = exact.soft_best_response(game, torch.softmax(theta, -1), lam).logits
    for learner in learners.values():
        with torch.no_grad():
            learner.leader.logits.copy_(theta)
            learner.follower.logits.copy_(response)
    target = learners["closed_form"].reference_direction(ExactObjectives(game))  # eq. (19) at the best response
    plan = plan_rollouts(game.gamma, None, "auto")
    sampler = Sampler(
        TabularVectorEnv(game, trajectories, start="mu"),
        seed=1,
        probe_discount=game.gamma,
        probe_share=probes,
        geometric_discount=game.gamma if plan.geometric else None,
    )
    found: dict[tuple[str, str], list[torch.Tensor]] = {pair: [] for pair in PAIRS}
    for _ in range(batches):
        batch = sampler.collect(
            learners["closed_form"].leader, learners["closed_form"].follower, trajectories, plan.horizon
        )
        for solve, estimator in PAIRS:  # the same batches for every pair
            source = SampledObjectives(
                batch,
                plan.discount(game.gamma),
                center=plan.geometric,
                start_weights=start_weights(game, "mu"),
                estimator=estimator,
            )
            learner = learners[solve]
            learner._cg_solution = None  # no warm start: each batch on its own
            direct, implicit, _ = learner._direction(source, {})
            found[(solve, estimator)].append(direct + implicit)
    scale = float((target**2).sum())
    return {pair: float(((torch.stack(d) - target) ** 2).sum((1, 2)).mean()) / scale for pair, d in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=DEFAULT_GAMES)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--trajectories", type=int, default=512)
    parser.add_argument(
        "--probes", type=float, default=0.25, help="the follower's probe probability (algo.probes; 0: none)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    games = {name: (game, lam) for name, _, game, lam in convergence_games()}
    names = [f"{solve}/{estimator}" for solve, estimator in PAIRS]
    print(
        f"{'game':<28} {'leader':<10} "
        + " ".join(f"{name:>22}" for name in names)
        + "   (relative mse; x: over closed_form/pooled)"
    )
    for name in args.games:
        game, lam = games[name]
        for label, steps in (("uniform", 0), ("ascent100", 100)):
            row = errors(game, lam, steps, args.batches, args.trajectories, args.probes)
            base = row[("closed_form", "pooled")]
            cells = " ".join(f"{row[pair]:>12.3g} (x{row[pair] / base:>6.1f})" for pair in PAIRS)
            print(f"{name:<28} {label:<10} {cells}", flush=True)


if __name__ == "__main__":
    main()
