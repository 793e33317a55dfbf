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
from spg.stackelberg import leader_direction  # noqa: E402
from spg.task import Rollouts, plan_rollouts, start_weights  # noqa: E402

DEFAULT_GAMES = [
    "security-2-targets",
    "random-3-states",
    "patrolling-line-4",
    "epidemic-5-levels",
    "random-10-states",
    "delayed-3-actions-delay-2",
]


PAIRS = [(solve, estimator) for solve in SOLVERS for estimator in ESTIMATORS]


def spg_sampler(game, trajectories: int, probes: float) -> tuple[Rollouts, Sampler]:
    """``spg``'s rollouts of ``game``: the automatic horizon, starts from ``mu``, follower probes."""
    plan = plan_rollouts(game.gamma, None, "auto")
    geometric = game.gamma if plan.geometric else None
    env = TabularVectorEnv(game, trajectories, start="mu")
    return plan, Sampler(env, seed=1, probe_discount=game.gamma, probe_share=probes, geometric_discount=geometric)


def spg_source(batch, game, plan: Rollouts, estimator: str) -> SampledObjectives:
    """The objectives ``spg`` estimates from ``batch`` with ``estimator``."""
    weights = start_weights(game, "mu")
    return SampledObjectives(
        batch, plan.discount(game.gamma), center=plan.geometric, start_weights=weights, estimator=estimator
    )


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
    plan, sampler = spg_sampler(game, trajectories, probes)
    found: dict[tuple[str, str], list[torch.Tensor]] = {pair: [] for pair in PAIRS}
    for _ in range(batches):
        batch = sampler.collect(
            learners["closed_form"].leader, learners["closed_form"].follower, trajectories, plan.horizon
        )
        for solve, estimator in PAIRS:  # the same batches for every pair
            source = spg_source(batch, game, plan, estimator)
            learner = learners[solve]
            learner._cg_solution = None  # no warm start: each batch on its own
            direct, implicit, _ = learner._direction(source, {})
            found[(solve, estimator)].append(direct + implicit)
    scale = float((target**2).sum())
    return {pair: float(((torch.stack(d) - target) ** 2).sum((1, 2)).mean()) / scale for pair, d in found.items()}


FACTORS = ("all sampled", "H exact", "grad_2 V1 exact", "mixed term exact", "w exact")


def factor_errors(
    game, lam: float, ascent_steps: int, batches: int, trajectories: int, probes: float
) -> dict[str, float]:
    """``cg`` with ``reinforce``: the relative mean squared error of the direction with each factor
    of eq. (19) exact in turn (the follower Hessian ``H``, ``grad_2 V1``, the mixed term, or the
    whole solution ``w``), the others from the same batches."""
    game = exact.dense_for_derivatives(game)
    leader, follower, learner = make_learner(
        OmegaConf.structured(AlgoConfig(name="spg", lam=lam, solve="cg", estimator="reinforce")),
        game.num_states,
        game.num_actions,
    )
    theta1 = ascend(game, torch.zeros_like(leader.logits), lam, iterations=ascent_steps) if ascent_steps else None
    with torch.no_grad():
        if theta1 is not None:
            leader.logits.copy_(theta1)
        follower.logits.copy_(exact.soft_best_response(game, leader.probs(), lam).logits)
    t1, t2 = leader.logits, follower.logits
    model = ExactObjectives(game)
    cg = {"damping": learner.cg.damping, "cg_tol": learner.cg.tol, "cg_iterations": learner.cg.iters}
    target = learner.reference_direction(model)
    exact_v = lambda: model.curvature_objectives(t1, t2, lam)[:2]  # noqa: E731
    w_exact = leader_direction(*exact_v(), t1, t2, damping=learner.cg.damping, cg_tol=1e-12).cg.solution
    plan, sampler = spg_sampler(game, trajectories, probes)
    found: dict[str, list[torch.Tensor]] = {name: [] for name in FACTORS}
    for _ in range(batches):
        batch = sampler.collect(leader, follower, trajectories, plan.horizon)
        source = spg_source(batch, game, plan, "reinforce")
        sampled = lambda: source.curvature_objectives(t1, t2, lam)[:2]  # noqa: E731
        direct = leader_direction(*sampled(), t1, t2, **cg).direct
        found["all sampled"].append(leader_direction(*sampled(), t1, t2, **cg).total)
        found["H exact"].append(leader_direction(sampled()[0], exact_v()[1], t1, t2, v2_mixed=sampled()[1], **cg).total)
        found["grad_2 V1 exact"].append(direct + leader_direction(exact_v()[0], sampled()[1], t1, t2, **cg).implicit)
        found["mixed term exact"].append(leader_direction(*sampled(), t1, t2, v2_mixed=exact_v()[1], **cg).total)
        no_solve = dict(cg, cg_iterations=0)  # the implicit term with the exact w
        found["w exact"].append(leader_direction(*sampled(), t1, t2, warm_start=w_exact, **no_solve).total)
    scale = float((target**2).sum())
    return {name: float(((torch.stack(d) - target) ** 2).sum((1, 2)).mean()) / scale for name, d in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=DEFAULT_GAMES)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--trajectories", type=int, default=512)
    parser.add_argument(
        "--probes", type=float, default=0.25, help="the follower's probe probability (algo.probes; 0: none)"
    )
    parser.add_argument(
        "--factors", action="store_true", help="cg with reinforce: the error with each factor of eq. (19) exact in turn"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    games = {name: (game, lam) for name, _, game, lam in convergence_games()}
    if args.factors:
        print(f"{'game':<28} {'leader':<10} " + " ".join(f"{name:>17}" for name in FACTORS) + "   (cg, reinforce)")
        for name in args.games:
            game, lam = games[name]
            for label, steps in (("uniform", 0), ("ascent100", 100)):
                row = factor_errors(game, lam, steps, args.batches, args.trajectories, args.probes)
                print(f"{name:<28} {label:<10} " + " ".join(f"{row[f]:>17.3g}" for f in FACTORS), flush=True)
        return
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
