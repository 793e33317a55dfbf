"""The Rao-Blackwellised (pooled) estimators against the exact solver: the bootstrapped state
values, the joint-action Q functions of both players, and the leader's two terms of eq. (19)
have the exact expectations within 4 standard errors (with follower probes, rollouts of
geometric length, and starts from mu != rho), and the leader's terms have less error than the
REINFORCE forms on the same batches. The estimates are consistent, not unbiased (ratios of batch
means): large batches keep their O(1/N) bias far below the standard errors the tests resolve."""

import pytest
import torch

from envs import TabularVectorEnv
from spg import exact
from spg.estimators import joint_q_estimates, state_values, weighted_returns
from spg.game import TabularGame, random_game
from spg.objectives import ExactObjectives, SampledObjectives
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Sampler
from spg.task import start_weights
from tests.helpers import seeded_logits, z_scores

LAM, GAMMA = 0.3, 0.6
SHORT, LONG = 6, 40  # 0.6^6 ~ 0.05: a horizon that truncates visibly; 0.6^40 ~ 1e-9 does not


def policies(scale: float = 1.0):
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(3, 3, logits=seeded_logits(3, 3, 2, scale=scale))
    return leader, follower


def test_state_values_carry_cut_trajectories_on_with_the_value_they_reached():
    # at a horizon of 6 steps plain returns-to-go fall short by up to gamma^(6 - t) V; the
    # bootstrapped values are those of the infinite-horizon game (the follower's soft value less
    # the entropy bonus of the state itself)
    game = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    leader, follower = policies()
    values = exact.policy_values(game, leader.probs(), follower.probs(), LAM)
    expected = torch.cat([values.v1, values.v2 - LAM * exact.entropy(follower.probs())]).detach()
    sampler = Sampler(TabularVectorEnv(game, 2000), seed=3, probe_discount=GAMMA)
    bootstrapped, plain = [], []
    for _ in range(40):
        batch = sampler.collect(leader, follower, 2000, SHORT)
        returns = weighted_returns(batch, follower.logits, gamma=GAMMA, lam=LAM, baseline=False)
        bootstrapped.append(state_values(batch, returns, 3, gamma=GAMMA)[0].T.flatten())
        # gamma = 1 marks no trajectory as cut: the plain means of the truncated returns
        plain.append(
            state_values(
                batch, weighted_returns(batch, follower.logits, gamma=GAMMA, lam=LAM, baseline=False), 3, gamma=1.0
            )[0].T.flatten()
        )
    z = z_scores(torch.stack(bootstrapped), expected)
    assert z.abs().max() < 4.0, z
    assert z_scores(torch.stack(plain), expected).abs().max() > 20.0  # power: truncation is visible at this horizon


@pytest.mark.parametrize("probes, geometric", [(False, False), (True, False), (True, True)])
def test_joint_q_estimates_match_both_players_q_functions(probes, geometric):
    game = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    leader, follower = policies(scale=2.0)
    values = exact.policy_values(game, leader.probs(), follower.probs(), LAM)
    centre = lambda q: (q - q.mean(1, keepdim=True)).flatten()  # noqa: E731  (centred rewards shift Q by a constant)
    expected = torch.cat([centre(values.q1.detach()), centre(values.q2.detach())])
    sampler = Sampler(
        TabularVectorEnv(game, 2000),
        seed=4,
        probe_discount=GAMMA if probes else None,
        geometric_discount=GAMMA if geometric else None,
    )
    gamma = 1.0 if geometric else GAMMA
    estimates = []
    for _ in range(40):
        batch = sampler.collect(leader, follower, 2000, LONG if geometric else SHORT)
        returns = weighted_returns(batch, follower.logits, gamma=gamma, lam=LAM, baseline=False, center=geometric)
        q1, q2, counts = joint_q_estimates(batch, follower.logits, 2, gamma=gamma, lam=LAM, returns=returns)
        assert (counts > 0).all()
        estimates.append(torch.cat([centre(q1), centre(q2)]))
    z = z_scores(torch.stack(estimates), expected)
    assert z.abs().max() < 4.0, z
    assert torch.stack(estimates).std(0).max() / 40**0.5 < 0.02 * expected.abs().max()  # power


def leader_terms(source, leader, follower, w):
    (direct,) = torch.autograd.grad(source.leader_objective(leader.logits, follower.logits, LAM), leader.logits)
    (implicit,) = torch.autograd.grad(source.implicit_objective(leader.logits, follower.logits, LAM, w), leader.logits)
    return torch.cat([direct.flatten(), implicit.flatten()])


@pytest.mark.parametrize(
    "probes, geometric, from_mu",
    [(0.0, False, False), (1.0, False, False), (0.25, False, False), (1.0, True, False), (1.0, False, True)],
)
def test_pooled_leader_terms_match_the_exact_ones(probes, geometric, from_mu):
    # probes: the probability of a uniform follower action at the probe step (0: none)
    # grad_1 V1(rho) and sum_s d(s) sum_a2 pi2 w grad_1 Q2^lam at any policies and any w
    base = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    rho, mu = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([0.2, 0.4, 0.4], dtype=torch.float64)
    game = TabularGame(base.P, base.R1, base.R2, GAMMA, rho, mu) if from_mu else base
    leader, follower = policies()
    w = seeded_logits(3, 3, 5)
    expected = leader_terms(ExactObjectives(game), leader, follower, w)
    sampler = Sampler(
        TabularVectorEnv(game, 2000),
        seed=6,
        probe_discount=GAMMA,
        probe_share=probes,
        geometric_discount=GAMMA if geometric else None,
    )
    weights = start_weights(game, "mu")
    samples = []
    for _ in range(40):
        batch = sampler.collect(leader, follower, 2000, LONG)  # the visits d(s) need the whole discounted future
        source = SampledObjectives(batch, 1.0 if geometric else GAMMA, center=geometric, start_weights=weights)
        samples.append(leader_terms(source, leader, follower, w))
    samples = torch.stack(samples)
    z = z_scores(samples, expected)
    assert z.abs().max() < 4.0, z
    assert samples.std(0).max() / 40**0.5 < 0.05 * expected.abs().max()  # power


def squared_errors(factors, *args) -> dict[str, float]:
    """Per estimator, the summed squared error of ``factors(source, *args)`` against the exact
    source's over 30 batches of 256 trajectories of a 3-state game at gamma 0.9."""
    game = random_game(3, 2, 3, seed=0, gamma=0.9)
    expected = factors(ExactObjectives(game), *args)
    sampler = Sampler(TabularVectorEnv(game, 256), seed=8, probe_discount=0.9)
    errors = {"pooled": 0.0, "reinforce": 0.0}
    for _ in range(30):
        batch = sampler.collect(args[0], args[1], 256, 90)
        for estimator in errors:
            errors[estimator] += float(
                ((factors(SampledObjectives(batch, 0.9, estimator=estimator), *args) - expected) ** 2).sum()
            )
    return errors


def test_pooled_leader_terms_have_less_error_than_the_reinforce_forms():
    leader, follower = policies()
    errors = squared_errors(leader_terms, leader, follower, seeded_logits(3, 3, 5))
    assert errors["pooled"] < 0.5 * errors["reinforce"], errors


def curvature_factors(source, leader, follower, v, w):
    """``grad_1 V1``, ``grad_2 V1``, ``H v`` and ``d/d theta1 (grad_2 V2 . w)`` from a source's
    curvature objectives."""
    v1, v2, mixed = source.curvature_objectives(leader.logits, follower.logits, LAM)
    g11, g12 = torch.autograd.grad(v1, (leader.logits, follower.logits), retain_graph=True)
    (g2,) = torch.autograd.grad(v2, follower.logits, create_graph=True)
    (hv,) = torch.autograd.grad(g2, follower.logits, v, retain_graph=True)
    (g2_mixed,) = torch.autograd.grad(mixed if mixed is not None else v2, follower.logits, create_graph=True)
    (cross,) = torch.autograd.grad(g2_mixed, leader.logits, w)
    return torch.cat([x.detach().flatten() for x in (g11, g12, hv, cross)])


@pytest.mark.parametrize("probes", [False, True])
def test_pooled_curvature_factors_match_the_exact_ones_at_the_soft_best_response(probes):
    # where eq. (19) holds (the follower at its soft best response), the Rao-Blackwellised factors
    # of the conjugate-gradient solve have the exact derivatives' expectations: grad V1, the
    # follower's Hessian along v, and the mixed derivative along w (v, w centred under pi2, as the
    # solve keeps them: the exact derivatives ignore per-state constants only then)
    game = random_game(3, 2, 3, seed=0, gamma=GAMMA)  # rho = mu: both values at the same start
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(3, 3, logits=exact.soft_best_response(game, leader.probs().detach(), LAM).logits)
    pi2 = follower.probs().detach()
    v, w = (x - (pi2 * x).sum(-1, keepdim=True) for x in (seeded_logits(3, 3, 7), seeded_logits(3, 3, 8)))
    expected = curvature_factors(ExactObjectives(game), leader, follower, v, w)
    sampler = Sampler(TabularVectorEnv(game, 2000), seed=9, probe_discount=GAMMA if probes else None)
    samples = []
    for _ in range(40):
        batch = sampler.collect(leader, follower, 2000, LONG)
        samples.append(curvature_factors(SampledObjectives(batch, GAMMA), leader, follower, v, w))
    samples = torch.stack(samples)
    z = z_scores(samples, expected)
    assert z.abs().max() < 4.0, z
    assert samples.std(0).max() / 40**0.5 < 0.05 * expected.abs().max()  # power


def test_pooled_curvature_factors_have_less_error_than_the_loaded_dice_ones():
    game = random_game(3, 2, 3, seed=0, gamma=0.9)  # squared_errors' game
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(3, 3, logits=exact.soft_best_response(game, leader.probs().detach(), LAM).logits)
    pi2 = follower.probs().detach()
    v, w = (x - (pi2 * x).sum(-1, keepdim=True) for x in (seeded_logits(3, 3, 7), seeded_logits(3, 3, 8)))
    errors = squared_errors(curvature_factors, leader, follower, v, w)
    assert errors["pooled"] < 0.5 * errors["reinforce"], errors
