"""The two-timescale algorithms against the exact solver: the sampled leader direction converges
to eq. (19), exact_spg reaches a stationary point of J, spg from samples ends near it, and on a
matrix game where commitment pays spg beats simultaneous gradient play."""

import warnings

import pytest
import torch

from envs import TabularVectorEnv
from envs.registry import COMMITMENT_FOLLOWER_PAYOFF, COMMITMENT_LEADER_PAYOFF
from spg import exact
from spg.algorithms import CGSettings, TwoTimescalePolicyGradient
from spg.estimators import surrogate_objectives
from spg.game import matrix_game, random_game
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Sampler
from spg.schedules import StepSize
from spg.stackelberg import leader_direction
from tests.helpers import seeded_logits


def learner(game, name, lam, lr1, lr2, cg=None, **kwargs):
    S, (A1, A2) = game.num_states, game.num_actions
    leader, follower = TabularSoftmaxPolicy(S, A1), TabularSoftmaxPolicy(S, A2)
    algo = TwoTimescalePolicyGradient(
        name, leader, follower, lam=lam, gamma=game.gamma, leader_step=StepSize(lr1), follower_step=StepSize(lr2), cg=cg, **kwargs
    )
    return leader, follower, algo


def train(game, name, lam, iterations, lr1, lr2, N=512, T=60, seed=0, cg=None):
    leader, follower, algo = learner(game, name, lam, lr1, lr2, cg)
    sampler = Sampler(TabularVectorEnv(game, N), seed=seed)
    for _ in range(iterations):
        algo.step(game if algo.exact else sampler.collect(leader, follower, N, T))
    return leader, follower


def test_sampled_leader_direction_approaches_eq_19_as_batches_grow():
    lam = 0.3
    game = random_game(4, 2, 3, seed=2, gamma=0.7)
    theta1 = seeded_logits(4, 2, 0)
    theta2 = exact.soft_best_response(game, torch.softmax(theta1, -1), lam).logits
    leader = TabularSoftmaxPolicy(4, 2, logits=theta1)
    follower = TabularSoftmaxPolicy(4, 3, logits=theta2)
    reference = exact.exact_leader_direction(game, theta1, theta2, lam).total.flatten()
    mean_cosines = []
    for N in (100, 1000, 10000):
        sampler = Sampler(TabularVectorEnv(game, N), seed=N)
        cosines = []
        for _ in range(10):
            batch = sampler.collect(leader, follower, N, 50)
            F1, F2 = surrogate_objectives(batch, leader.logits, follower.logits, gamma=game.gamma, lam=lam)
            d = leader_direction(F1, F2, leader.logits, follower.logits, damping=1e-3, cg_tol=1e-6, cg_iterations=20)
            cosines.append(float(torch.cosine_similarity(d.total.flatten(), reference, 0)))
        mean_cosines.append(sum(cosines) / len(cosines))
    assert mean_cosines[0] < mean_cosines[1] < mean_cosines[2]
    assert mean_cosines[2] > 0.99, mean_cosines


def test_exact_spg_reaches_stationary_point_and_spg_from_samples_ends_near_it():
    lam = 0.2
    game = random_game(4, 2, 3, seed=2, gamma=0.8)
    leader, _ = train(game, "exact_spg", lam, 400, 1.0, 10.0)
    J_exact = exact.stackelberg_objective(game, leader.logits, lam)
    assert exact.stackelberg_gradient(game, leader.logits, lam).total.norm() < 0.01
    sampled_leader, _ = train(game, "spg", lam, 250, 1.0, 10.0, N=512, T=60)
    J_sampled = exact.stackelberg_objective(game, sampled_leader.logits, lam)
    assert abs(J_sampled - J_exact) < 0.02 * abs(J_exact)
    # simultaneous play ignores the follower's response and ends clearly lower here
    naive_leader, _ = train(game, "exact_pg", lam, 400, 1.0, 10.0)
    assert exact.stackelberg_objective(game, naive_leader.logits, lam) < J_exact - 0.1


def test_spg_beats_pg_where_commitment_pays():
    # Conitzer-Sandholm: the leader's dominant row U gives Nash payoff 2; committing to a mix earns up to 3.5
    game = matrix_game(COMMITMENT_LEADER_PAYOFF, COMMITMENT_FOLLOWER_PAYOFF)
    lam, cg = 0.1, CGSettings(damping=0.01)
    results = {}
    for name in ("spg", "pg"):
        leader, _ = train(game, name, lam, 400, 0.2, 5.0, N=1024, T=1, cg=cg)
        results[name] = exact.stackelberg_objective(game, leader.logits, lam)
    assert results["pg"] < 2.1  # the Nash outcome (U, L)
    assert results["spg"] > results["pg"] + 1.0, results


def test_follower_steps_adam_and_decaying_schedules():
    lam = 0.2
    game = random_game(3, 2, 2, seed=4, gamma=0.8)
    leader, follower, algo = learner(game, "exact_pg", lam, 0.5, 0.05, optimizer="adam")
    gap = lambda: exact.best_response_gap(game, leader.probs().detach(), follower.probs().detach(), lam)  # noqa: E731
    start = gap()
    for _ in range(300):
        algo.follower_step(game)
    assert gap() < 1e-3 * start
    assert torch.equal(leader.logits, torch.zeros(3, 2, dtype=torch.float64))  # the leader did not move
    schedule = StepSize(2.0, power=0.6, t0=1.0)
    assert schedule(0) == 2.0 and schedule(3) == pytest.approx(2.0 / 4**0.6)


def test_bad_input_is_reported():
    game = random_game(3, 2, 2, seed=4)
    with pytest.warns(UserWarning, match="Assumption 2"):
        learner(game, "spg", 0.0, 0.1, 1.0)
    with pytest.warns(UserWarning, match="Assumption 1"):
        TwoTimescalePolicyGradient(
            "spg",
            TabularSoftmaxPolicy(3, 2),
            TabularSoftmaxPolicy(3, 2),
            lam=0.1,
            gamma=0.9,
            leader_step=StepSize(1.0, power=0.6),  # the leader must decay faster than the follower
            follower_step=StepSize(1.0, power=0.9),
        )
    with pytest.raises(ValueError, match="algorithm 'spgg' is unknown"):
        learner(game, "spgg", 0.1, 0.1, 1.0)
    with pytest.raises(ValueError, match="lr = -1"):
        StepSize(-1.0)
    leader, follower, algo = learner(game, "exact_spg", 0.1, 0.1, 1.0)
    with pytest.raises(TypeError, match="exact_spg steps on the game model"):
        algo.step(Sampler(TabularVectorEnv(game, 4), seed=0).collect(leader, follower, 4, 3))
    # non-finite estimates stop the step before the policies change
    broken = random_game(3, 2, 2, seed=4)
    broken.R1[0, 0, 0] = float("nan")
    before = leader.logits.detach().clone()
    with pytest.raises(FloatingPointError, match="non-finite estimate of grad_theta1 V1"):
        algo.step(broken)
    assert torch.equal(leader.logits.detach(), before)


def test_sub_batches_give_independent_factors():
    lam = 0.3
    game = random_game(4, 2, 3, seed=2, gamma=0.7)
    leader, follower, algo = learner(game, "spg", lam, 0.1, 1.0, sub_batches=3)
    batch = Sampler(TabularVectorEnv(game, 300), seed=0).collect(leader, follower, 300, 30)
    assert [part.num_trajectories for part in batch.split(3)] == [100, 100, 100]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = algo.step(batch)
    assert torch.isfinite(result.leader_direction).all() and result.metrics["cg/iterations"] >= 0


def test_max_leader_norm_clips_the_leader_step():
    game = random_game(3, 2, 2, seed=4)
    leader, _, algo = learner(game, "exact_spg", 0.2, 0.5, 1.0, max_leader_norm=1e-3)
    result = algo.step(game)
    assert result.metrics["leader/direction_norm"] > 1e-3
    assert float(leader.logits.detach().norm()) == pytest.approx(0.5 * 1e-3, rel=1e-9)
