"""Sampled derivatives against the exact solver: every estimator's mean over many batches equals
the exact derivative within 4 standard errors, at first and second order, with and without
follower probes (importance-weighted exploration); the follower's Monte Carlo soft Q as well."""

import pytest
import torch

from envs import TabularVectorEnv
from spg import exact
from spg.estimators import (
    implicit_surrogate,
    leave_one_out_baseline,
    returns_to_go,
    surrogate_objectives,
    weighted_returns,
)
from spg.game import TabularGame, random_game
from spg.objectives import ExactObjectives, SampledObjectives
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Sampler
from spg.task import start_weights
from tests.helpers import derivatives, follower_q_estimates, seeded_logits, z_scores

LAM, GAMMA, HORIZON = 0.3, 0.6, 40  # 0.6^40 ~ 1e-9: the truncated and infinite values coincide


def shifted(game: TabularGame, shift: float) -> TabularGame:
    return TabularGame(game.P, game.R1 + shift, game.R2 - shift, game.gamma, game.rho, game.mu)


def sampled_derivatives(game, leader, follower, v, w, batches, N, baseline=True, seed=1, probes=0.0, geometric=False):
    """``probes``: the probability of a uniform follower action at the probe step (0: no probes);
    with ``geometric``: rollouts of geometric length, undiscounted, centred rewards."""
    sampler = Sampler(
        TabularVectorEnv(game, N),
        seed=seed,
        probe_discount=game.gamma,
        probe_share=float(probes),
        geometric_discount=game.gamma if geometric else None,
    )
    gamma = 1.0 if geometric else game.gamma
    out = []
    for _ in range(batches):
        batch = sampler.collect(leader, follower, N, HORIZON)
        F1, F2 = surrogate_objectives(
            batch, leader.logits, follower.logits, gamma=gamma, lam=LAM, baseline=baseline, center=geometric
        )
        out.append(derivatives(F1, F2, leader.logits, follower.logits, v, w))
    return torch.stack(out)


@pytest.mark.parametrize(
    "shift, baseline, probes, geometric",
    [
        (0.0, True, 0.0, False),
        (5.0, True, 0.0, False),
        (0.0, False, 0.0, False),
        (0.0, True, 1.0, False),
        (5.0, True, 1.0, False),
        (5.0, True, 0.25, False),
        (0.0, True, 0.0, True),
        (5.0, True, 1.0, True),
    ],
)
def test_estimators_are_unbiased_at_first_and_second_order(shift, baseline, probes, geometric):
    base = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    game = shifted(base, shift)
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(3, 3, logits=seeded_logits(3, 3, 2))
    v, w = seeded_logits(3, 3, 3), seeded_logits(3, 3, 4)
    V1, V2 = exact.objectives(base, leader.logits, follower.logits, LAM)
    expected = derivatives(V1, V2, leader.logits, follower.logits, v, w)
    samples = sampled_derivatives(
        game, leader, follower, v, w, batches=150, N=400, baseline=baseline, probes=probes, geometric=geometric
    )
    z = z_scores(samples, expected)
    assert z.abs().max() < 4.0, z
    # the test has power: the estimates are far from a wrong answer (the pure-score Hessian)
    assert samples.std(0).max() / 150**0.5 < 0.05 * expected.abs().max()


def test_baseline_reduces_variance():
    game = shifted(random_game(3, 2, 3, seed=0, gamma=GAMMA), 5.0)
    leader, follower = TabularSoftmaxPolicy(3, 2), TabularSoftmaxPolicy(3, 3)
    v, w = seeded_logits(3, 3, 3), seeded_logits(3, 3, 4)
    with_baseline = sampled_derivatives(game, leader, follower, v, w, batches=30, N=200)
    without = sampled_derivatives(game, leader, follower, v, w, batches=30, N=200, baseline=False)
    assert with_baseline.std(0).mean() < 0.5 * without.std(0).mean()


def finite_horizon_objectives(game, theta1, theta2, lam, steps):
    """Values of episodes cut after ``steps`` steps, summed step by step (independent of the solver)."""
    pi1, pi2 = torch.softmax(theta1, -1), torch.softmax(theta2, -1)
    joint = pi1[:, :, None] * pi2[:, None, :]
    r1 = (joint * game.R1).sum((1, 2))
    r2 = (joint * game.R2).sum((1, 2)) + lam * exact.entropy(pi2)
    P = exact.markov_chain(game, pi1, pi2)
    d, v1, v2 = game.mu, 0.0, 0.0
    for t in range(steps):
        v1, v2 = v1 + game.gamma**t * d @ r1, v2 + game.gamma**t * d @ r2
        d = d @ P
    return v1, v2


def test_masked_steps_after_episode_end_are_excluded():
    # episodes truncated after 5 steps by the env; the sampler masks the rest of the horizon
    game = random_game(3, 2, 2, seed=3, gamma=0.9)
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 5))
    follower = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 6))
    sampler = Sampler(TabularVectorEnv(game, 500, max_episode_steps=5), seed=2)
    V1, V2 = finite_horizon_objectives(game, leader.logits, follower.logits, LAM, 5)
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(V1 + V2, (leader.logits, follower.logits))])
    samples = []
    for _ in range(100):
        batch = sampler.collect(leader, follower, 500, 12)
        assert batch.mask[:, :5].all() and not batch.mask[:, 5:].any()
        F1, F2 = surrogate_objectives(batch, leader.logits, follower.logits, gamma=game.gamma, lam=LAM)
        samples.append(torch.cat([g.flatten() for g in torch.autograd.grad(F1 + F2, (leader.logits, follower.logits))]))
    assert z_scores(torch.stack(samples), expected).abs().max() < 4.0


def test_returns_to_go_and_leave_one_out_baseline_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    assert torch.allclose(
        returns_to_go(rewards, 0.5), torch.tensor([[1 + 1 + 0.75, 2 + 1.5, 3.0]], dtype=torch.float64)
    )
    states = torch.tensor([[0, 1], [0, 0], [1, 1]])
    values = torch.tensor([[1.0, 2.0], [3.0, 5.0], [7.0, 11.0]], dtype=torch.float64)
    mask = torch.ones(3, 2, dtype=torch.bool)
    baseline = leave_one_out_baseline(states, values, mask, 2)
    # trajectory 0 at state 0: the other visits to state 0 are 3 and 5; at state 1: 7 and 11
    expected = torch.tensor([[4.0, 9.0], [1.0, 1.0], [2.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(baseline, expected)


def test_probes_try_every_follower_action_and_weights_keep_returns_unbiased():
    game = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(
        3, 3, logits=torch.tensor([[12.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    )  # near-deterministic
    plain = Sampler(TabularVectorEnv(game, 2000), seed=3).collect(leader, follower, 2000, HORIZON)
    probed = Sampler(TabularVectorEnv(game, 2000), seed=3, probe_discount=GAMMA).collect(
        leader, follower, 2000, HORIZON
    )
    tried = lambda batch: torch.bincount(batch.follower_actions.flatten(), minlength=3)  # noqa: E731
    # expected without probes: 2000 x 40 x 2 e^-12 ~ 1 other action; with them ~ 2000 / 3 each
    assert tried(plain)[1:].sum() < 10 and (tried(probed)[1:] > 300).all()
    # one probe per trajectory: the weights change once, to A2 pi2(a*|s*) <= A2
    changes = (probed.weights[:, 1:] != probed.weights[:, :-1]).sum(1) + (probed.weights[:, 0] != 1)
    assert (changes <= 1).all() and probed.weights.max() <= 3.0
    with torch.no_grad():
        V1, V2 = exact.objectives(game, leader.logits, follower.logits, 0.0)
    for value, returns in zip((V1, V2), probed.discounted_returns(game.gamma)):
        assert abs(float(returns.mean() - value)) < 4 * float(returns.std()) / 2000**0.5


def test_mixed_probes_try_every_action_with_bounded_weights_and_unbiased_returns():
    # at its probe step a trajectory's follower acts uniformly with probability p = 1/4, else
    # on-policy; the weight pi2 / ((1 - p) pi2 + p / A2) from there on is at most 1 / (1 - p + p / A2)
    # and has mean 1, so returns stay unbiased
    share, N = 0.25, 4000
    game = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(
        3, 3, logits=torch.tensor([[12.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    )  # near-deterministic
    probed = Sampler(TabularVectorEnv(game, N), seed=3, probe_discount=GAMMA, probe_share=share).collect(
        leader, follower, N, HORIZON
    )
    others = torch.bincount(probed.follower_actions.flatten(), minlength=3)[1:]
    # expected: N p / 3 = 333 of each other action (the probe step always lies within the horizon: 0.6^40 ~ 1e-9)
    assert ((others - N * share / 3).abs() < 4 * (N * share / 3) ** 0.5).all(), others
    changes = (probed.weights[:, 1:] != probed.weights[:, :-1]).sum(1) + (probed.weights[:, 0] != 1)
    assert (changes <= 1).all() and probed.weights.max() <= 1 / (1 - share + share / 3) + 1e-12
    final = probed.weights[:, -1]
    assert abs(float(final.mean()) - 1.0) < 4 * float(final.std()) / N**0.5
    with torch.no_grad():
        V1, V2 = exact.objectives(game, leader.logits, follower.logits, 0.0)
    for value, returns in zip((V1, V2), probed.discounted_returns(game.gamma)):
        assert abs(float(returns.mean() - value)) < 4 * float(returns.std()) / N**0.5
    # probability 0: no probes, the very batch of a sampler without them
    off = Sampler(TabularVectorEnv(game, N), seed=3, probe_discount=GAMMA, probe_share=0.0).collect(
        leader, follower, N, HORIZON
    )
    plain = Sampler(TabularVectorEnv(game, N), seed=3).collect(leader, follower, N, HORIZON)
    assert torch.equal(off.follower_actions, plain.follower_actions) and bool((off.weights == 1).all())


def test_q_estimates_match_both_players_q_functions():
    game = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    theta1, theta2 = seeded_logits(3, 2, 1), seeded_logits(3, 3, 2, scale=2.0)
    leader, follower = TabularSoftmaxPolicy(3, 2, logits=theta1), TabularSoftmaxPolicy(3, 3, logits=theta2)
    pi1, pi2 = torch.softmax(theta1, -1), torch.softmax(theta2, -1)
    values = exact.policy_values(game, pi1, pi2, LAM)
    expected = torch.cat([torch.einsum("sa,sab->sb", pi1, q).flatten() for q in (values.q1, values.q2)])
    sampler = Sampler(TabularVectorEnv(game, 500), seed=4, probe_discount=GAMMA)
    estimates = []
    for _ in range(60):
        q1, q2, counts = follower_q_estimates(
            sampler.collect(leader, follower, 500, 2 * HORIZON),
            follower.logits,
            leader.num_actions,
            gamma=GAMMA,
            lam=LAM,
        )
        assert (counts > 0).all()
        estimates.append(torch.cat([q1.flatten(), q2.flatten()]))
    z = z_scores(torch.stack(estimates), expected)
    assert z.abs().max() < 4.0, z
    assert torch.stack(estimates).std(0).max() / 60**0.5 < 0.02 * expected.abs().max()  # power


def test_q_advantages_from_geometric_rollouts_with_centred_rewards():
    # centring shifts every Q of a player by c times the expected remaining length, the same for
    # every action: the advantages over the follower's actions (all that the learners use) stay unbiased
    game = shifted(random_game(3, 2, 3, seed=0, gamma=GAMMA), 5.0)
    theta1, theta2 = seeded_logits(3, 2, 1), seeded_logits(3, 3, 2, scale=2.0)
    leader, follower = TabularSoftmaxPolicy(3, 2, logits=theta1), TabularSoftmaxPolicy(3, 3, logits=theta2)
    pi1, pi2 = torch.softmax(theta1, -1), torch.softmax(theta2, -1)
    values = exact.policy_values(game, pi1, pi2, LAM)
    advantage = lambda q: (q - (pi2 * q).sum(-1, keepdim=True)).flatten()  # noqa: E731
    expected = torch.cat([advantage(torch.einsum("sa,sab->sb", pi1, q)) for q in (values.q1, values.q2)])
    sampler = Sampler(TabularVectorEnv(game, 500), seed=4, probe_discount=GAMMA, geometric_discount=GAMMA)
    estimates = []
    for _ in range(60):
        batch = sampler.collect(leader, follower, 500, HORIZON)
        returns = weighted_returns(batch, follower.logits, gamma=1.0, lam=LAM, baseline=False, center=True)
        q1, q2, _ = follower_q_estimates(
            batch, follower.logits, leader.num_actions, gamma=1.0, lam=LAM, returns=returns
        )
        estimates.append(torch.cat([advantage(q1), advantage(q2)]))
    z = z_scores(torch.stack(estimates), expected)
    assert z.abs().max() < 4.0, z


@pytest.mark.parametrize("probes, geometric", [(False, False), (True, False), (True, True)])
def test_implicit_surrogate_is_unbiased_for_the_exact_implicit_term(probes, geometric):
    # at any (theta1, theta2) and any w, the sampled REINFORCE form has the expectation of the
    # exact sum_s d(s) sum_a pi2 w grad_1 Q2^lam (autograd through the dense model)
    game = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(3, 3, logits=seeded_logits(3, 3, 2))
    w = seeded_logits(3, 3, 5)
    (expected,) = torch.autograd.grad(
        ExactObjectives(game).implicit_objective(leader.logits, follower.logits, LAM, w), leader.logits
    )
    sampler = Sampler(
        TabularVectorEnv(game, 400),
        seed=6,
        probe_discount=GAMMA if probes else None,
        geometric_discount=GAMMA if geometric else None,
    )
    gamma = 1.0 if geometric else GAMMA
    samples = []
    for _ in range(150):
        batch = sampler.collect(leader, follower, 400, HORIZON)
        returns = weighted_returns(batch, follower.logits, gamma=gamma, lam=LAM, center=geometric)
        surrogate = implicit_surrogate(batch, leader.logits, follower.logits, w, gamma=gamma, lam=LAM, returns=returns)
        (g,) = torch.autograd.grad(surrogate, leader.logits)
        samples.append(g.flatten())
    samples = torch.stack(samples)
    z = z_scores(samples, expected.flatten())
    assert z.abs().max() < 4.0, z
    assert samples.std(0).max() / 150**0.5 < 0.05 * expected.abs().max()  # power


def test_probes_of_actions_with_probability_zero_keep_every_estimate_finite():
    # a follower whose other actions underflow to probability 0: a probe of one weighs 0 from then
    # on, and has no on-policy return to divide out (0 / 0)
    game = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(3, 3, logits=torch.tensor([[1000.0, 0.0, 0.0]] * 3, dtype=torch.float64))
    batch = Sampler(TabularVectorEnv(game, 500), seed=3, probe_discount=GAMMA).collect(leader, follower, 500, HORIZON)
    assert (batch.weights == 0).any()
    F1, F2 = surrogate_objectives(batch, leader.logits, follower.logits, gamma=GAMMA, lam=LAM)
    grads = torch.autograd.grad(F1 + F2, (leader.logits, follower.logits))
    w = seeded_logits(3, 3, 5)
    (implicit,) = torch.autograd.grad(
        implicit_surrogate(batch, leader.logits, follower.logits, w, gamma=GAMMA, lam=LAM), leader.logits
    )
    q1, q2, counts = follower_q_estimates(batch, follower.logits, leader.num_actions, gamma=GAMMA, lam=LAM)
    assert all(torch.isfinite(x).all() for x in (F1, F2, *grads, implicit, q1, q2))
    assert (counts[:, 0] > 0).all()


def test_start_weights_estimate_the_leaders_terms_at_rho_from_rollouts_that_start_from_mu():
    # rho on one state, training rollouts from a mu spread over all three: weighted by rho / mu,
    # the leader's gradient and eq. (19)'s implicit term are those at rho (ExactObjectives), the
    # follower's gradient stays the one at mu; unweighted, the leader's terms are measurably off
    base = random_game(3, 2, 3, seed=0, gamma=GAMMA)
    rho, mu = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([0.2, 0.4, 0.4], dtype=torch.float64)
    game = TabularGame(base.P, base.R1, base.R2, GAMMA, rho, mu)
    weights = start_weights(game, "mu")
    leader = TabularSoftmaxPolicy(3, 2, logits=seeded_logits(3, 2, 1))
    follower = TabularSoftmaxPolicy(3, 3, logits=seeded_logits(3, 3, 2))
    w = seeded_logits(3, 3, 5)
    exact_source = ExactObjectives(game)

    def terms(source):
        v1, v2 = source.objectives(leader.logits, follower.logits, LAM)
        (g1,) = torch.autograd.grad(v1, leader.logits, retain_graph=True)
        (g2,) = torch.autograd.grad(v2, follower.logits)
        (implicit,) = torch.autograd.grad(
            source.implicit_objective(leader.logits, follower.logits, LAM, w), leader.logits
        )
        return torch.cat([g1.flatten(), implicit.flatten(), g2.flatten()])

    expected = terms(exact_source)
    sampler = Sampler(TabularVectorEnv(game, 400), seed=7)
    weighted, unweighted = [], []
    for _ in range(150):
        batch = sampler.collect(leader, follower, 400, HORIZON)
        weighted.append(terms(SampledObjectives(batch, GAMMA, start_weights=weights)))
        unweighted.append(terms(SampledObjectives(batch, GAMMA)))
    z = z_scores(torch.stack(weighted), expected)
    assert z.abs().max() < 4.0, z
    assert (
        z_scores(torch.stack(unweighted), expected)[:6].abs().max() > 10.0
    )  # without the weights: the leader's terms at mu
