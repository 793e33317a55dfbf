"""Fixed horizons or geometric lengths? How precisely each estimates eq. (19) per env step and per
unit of work: ``python scripts/rollouts.py [--gammas 0.9 0.99] [--games 3] [--batches 4]``.

For seeded random games (8 states, 3x3 actions) and fixed random policies, ``spg``'s sampled
leader direction (eq. 19 in closed form, from Q estimates of the same batch) is compared with the
exact direction at the same policies. Per rollout kind it prints the mean squared error ``mse``,
the env steps and the tensor entries (trajectories x buffer length) per batch, and the ratios
``fixed / geometric`` of ``mse x env steps`` (precision per env step) and of ``mse x entries``
(precision per unit of estimator work), measured in the same run. ``trainer.rollouts=auto`` uses
fixed horizons up to ``LONGEST_FIXED_HORIZON`` steps (spg/task.py) and geometric lengths beyond.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.tabular_vector import TabularVectorEnv  # noqa: E402
from spg.algorithms import make_learner  # noqa: E402
from spg.config import AlgoConfig  # noqa: E402
from spg.game import random_game  # noqa: E402
from spg.objectives import ExactObjectives, SampledObjectives  # noqa: E402
from spg.sampler import Sampler  # noqa: E402
from spg.task import plan_rollouts, start_weights  # noqa: E402


def errors(game, kind: str, trajectories: int, batches: int, seed: int) -> tuple[float, float, float]:
    """(mse of the sampled eq. 19 direction, env steps per batch, tensor entries per batch)."""
    from omegaconf import OmegaConf

    S, (A1, A2) = game.num_states, game.num_actions
    leader, follower, learner = make_learner(OmegaConf.structured(AlgoConfig()), S, (A1, A2))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        leader.logits.copy_(torch.randn(S, A1, generator=generator, dtype=torch.float64))
        follower.logits.copy_(torch.randn(S, A2, generator=generator, dtype=torch.float64))
    exact = learner.reference_direction(ExactObjectives(game))
    plan = plan_rollouts(game.gamma, None, kind)
    sampler = Sampler(
        TabularVectorEnv(game, trajectories),
        seed=seed,
        probe_discount=game.gamma,
        geometric_discount=game.gamma if plan.geometric else None,
    )
    squared, steps, entries = 0.0, 0, 0
    for _ in range(batches):
        batch = sampler.collect(leader, follower, trajectories, plan.horizon)
        source = SampledObjectives(
            batch, plan.discount(game.gamma), center=plan.geometric, start_weights=start_weights(game, "mu")
        )
        direct, implicit, _ = learner._direction(source, {})
        squared += float(((direct + implicit - exact) ** 2).sum())
        steps, entries = steps + batch.env_steps, entries + batch.states.numel()
    return squared / batches, steps / batches, entries / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.9, 0.99])
    parser.add_argument("--games", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--trajectories", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("gamma  game  kind       mse         env steps   entries     | fixed/geometric: mse x steps, mse x entries")
    for gamma in args.gammas:
        for seed in range(args.games):
            game = random_game(8, 3, 3, seed=seed, gamma=gamma)
            rows = {kind: errors(game, kind, args.trajectories, args.batches, seed) for kind in ("fixed", "geometric")}
            for kind, (mse, steps, entries) in rows.items():
                print(f"{gamma:<6} {seed:<5} {kind:<10} {mse:<11.4g} {steps:<11.0f} {entries:<11.0f}", end="")
                print(" |" if kind == "fixed" else "")
            (mf, sf, ef), (mg, sg, eg) = rows["fixed"], rows["geometric"]
            print(f"{'':>60} | {mf * sf / (mg * sg):.2f}, {mf * ef / (mg * eg):.2f}")


if __name__ == "__main__":
    main()
