"""Episodic games: entering a terminal state ends the episode. The game file's ``terminal`` key and
its validation; the exact solver against the absorbing-state encoding of the same game; the envs;
the sampler's early stop and trimmed batches; every estimator unbiased against the exact values."""

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from envs import StochasticGameEnv, TabularVectorEnv
from envs.contract import RewardPairInInfo
from envs.soccer import soccer_game
from spg import exact
from spg.estimators import implicit_surrogate, surrogate_objectives
from spg.evaluation import evaluation_sampler
from spg.game import TabularGame, random_game
from spg.objectives import ExactObjectives, SampledObjectives
from spg.policy import TabularSoftmaxPolicy
from spg.reference import quantal_stackelberg
from spg.sampler import Sampler
from spg.sparse_game import SparseTabularGame, load_game
from spg.task import Rollouts, start_weights
from tests.helpers import derivatives, follower_q_estimates, seeded_logits, z_scores

LAM, HORIZON = 0.3, 60


def episodic(game: TabularGame, terminal, shift: float = 0.0) -> TabularGame:
    """``game`` with the states flagged in ``terminal`` terminal (their rewards zeroed) and the
    other states' rewards shifted by ``+shift`` (leader) and ``-shift`` (follower)."""
    live = torch.tensor([not t for t in terminal], dtype=game.dtype)[:, None, None]
    return TabularGame(game.P, (game.R1 + shift) * live, (game.R2 - shift) * live, game.gamma, game.rho, None, terminal)


def absorbing(game: TabularGame, follower_reward: float) -> TabularGame:
    """The absorbing-state encoding of an episodic game: each terminal state loops to itself
    forever, paying the leader 0 and the follower ``follower_reward`` per step."""
    P, R2 = game.P.clone(), game.R2.clone()
    for s in game.terminal.nonzero().flatten():
        P[s] = 0.0
        P[s, :, :, s] = 1.0
        R2[s] = follower_reward
    return TabularGame(P, game.R1, R2, game.gamma, game.rho)


def five_state_game() -> TabularGame:
    return episodic(random_game(5, 2, 3, seed=0, gamma=0.9), [False, False, False, True, True])


def four_state_game(shift: float = 0.0) -> TabularGame:
    # about a quarter of each row's mass enters the terminal state: 400 episodes all end within
    # ~30 steps, and the value lost at the horizon (60) is ~1e-10
    return episodic(random_game(4, 2, 3, seed=0, gamma=0.9), [False, False, False, True], shift)


# --- the format and its validation ------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(terminal=np.array([True, False])), r"terminal has shape \(2,\).*\[S\] = \(3,\)"),
        (lambda a: a.update(terminal=np.array([0, 2, 0])), r"terminal has entries other than True/False"),
        (
            lambda a: a["R2"].__setitem__((2, 1, 0), 0.5),
            r"R2\[2, 1, 0\] = 0.5 at terminal state 2: the rewards of a terminal state are never collected",
        ),
        (
            lambda a: a.update(rho=np.array([0.0, 0.0, 1.0])),
            r"rho puts all its mass on terminal states \(rho\[2\] = 1.0, terminal\[2\] = True\): every episode would be empty",
        ),
        (
            lambda a: a.update(mu=np.array([0.5, 0.4, 0.1])),
            r"mu\[2\] = 0.1 on a terminal state: a training episode starting there is empty",
        ),
        (
            lambda a: a.update(mu=np.array([1.0, 0.0, 0.0])),
            r"mu\[1\] = 0.0: mu must have full support \(every non-terminal state > 0\)",
        ),
    ],
)
def test_terminal_validation_names_the_state_and_the_rule(change, message):
    rng = np.random.default_rng(0)
    R1, R2 = rng.normal(size=(3, 2, 2)), rng.normal(size=(3, 2, 2))
    R1[2] = R2[2] = 0.0
    a = dict(
        P=rng.dirichlet(np.ones(3), size=(3, 2, 2)),
        R1=R1,
        R2=R2,
        gamma=0.9,
        rho=np.ones(3) / 3,
        terminal=np.array([False, False, True]),
    )
    change(a)
    with pytest.raises(ValueError, match=message):
        TabularGame(**a)


def test_default_mu_avoids_terminal_states_and_files_round_trip(tmp_path):
    game = five_state_game()  # rho uniform over all five states, two of them terminal
    assert torch.allclose(game.mu, torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0], dtype=torch.float64))
    game.to_npz(tmp_path / "dense.npz")
    loaded = load_game(tmp_path / "dense.npz")
    assert torch.equal(loaded.terminal, game.terminal) and torch.equal(loaded.P, game.P)
    sparse = SparseTabularGame(
        torch.arange(5).expand(5, 2, 3, 5), game.P, game.R1, game.R2, 0.9, game.rho, None, game.terminal
    )
    sparse.to_npz(tmp_path / "sparse.npz")
    assert torch.equal(load_game(tmp_path / "sparse.npz").terminal, game.terminal)
    assert torch.equal(sparse.dense().terminal, game.terminal)
    random_game(3, 2, 2).to_npz(tmp_path / "plain.npz")
    assert "terminal" not in np.load(tmp_path / "plain.npz").files  # files without terminal states stay as they were


# --- the exact solver: terminal states against the absorbing encoding -------------------------


def test_terminal_states_match_the_absorbing_encoding_to_1e_10():
    # an absorbing state paying the follower -lam log A2 cancels the entropy bonus of its (uniform)
    # soft best response there: both players' values are 0 in it, as in a terminal state
    game = five_state_game()
    twin = absorbing(game, -LAM * math.log(3))
    theta1 = seeded_logits(5, 2, 1)
    pi1 = torch.softmax(theta1, -1)
    assert exact.stackelberg_objective(game, theta1, LAM) == pytest.approx(
        exact.stackelberg_objective(twin, theta1, LAM), abs=1e-10
    )
    response, twin_response = exact.soft_best_response(game, pi1, LAM), exact.soft_best_response(twin, pi1, LAM)
    assert torch.allclose(response.probs, twin_response.probs, rtol=0, atol=1e-10)
    assert torch.allclose(response.probs[3:], torch.full((2, 3), 1 / 3, dtype=torch.float64), rtol=0, atol=1e-12)
    values, twin_values = (
        exact.policy_values(game, pi1, response.probs, LAM),
        exact.policy_values(twin, pi1, response.probs, LAM),
    )
    for ours, theirs in ((values.v1, twin_values.v1), (values.v2, twin_values.v2)):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-10) and (ours[3:] == 0).all()
    assert (values.q1[3:] == 0).all() and (values.q2[3:] == 0).all()
    gradient = exact.stackelberg_gradient(game, theta1, LAM).total  # eq. (19) at the best response
    assert torch.allclose(gradient, exact.stackelberg_gradient(twin, theta1, LAM).total, rtol=0, atol=1e-10)
    theta = theta1.clone().requires_grad_()
    (implicit,) = torch.autograd.grad(exact.differentiable_stackelberg_objective(game, theta, LAM), theta)  # eq. (18)
    assert torch.allclose(implicit, gradient, rtol=0, atol=1e-10) and gradient.norm() > 0.1
    ours, theirs = (quantal_stackelberg(g, LAM, starts=2, iterations=60) for g in (game, twin))
    assert ours.value == pytest.approx(theirs.value, abs=1e-10)
    assert np.allclose(ours.leader_policy[:3], theirs.leader_policy[:3], rtol=0, atol=1e-8)


def test_hard_best_response_matches_the_plain_zero_reward_absorbing_state():
    game = five_state_game()
    twin = absorbing(game, 0.0)
    theta1 = seeded_logits(5, 2, 2)
    pi1 = torch.softmax(theta1, -1)
    assert exact.stackelberg_objective(game, theta1, 0.0) == pytest.approx(
        exact.stackelberg_objective(twin, theta1, 0.0), abs=1e-10
    )
    pi2 = torch.softmax(seeded_logits(5, 3, 3), -1)  # any follower: without entropy the encodings agree
    ours, theirs = exact.policy_values(game, pi1, pi2, 0.0), exact.policy_values(twin, pi1, pi2, 0.0)
    assert torch.allclose(ours.v1, theirs.v1, rtol=0, atol=1e-12) and torch.allclose(
        ours.v2, theirs.v2, rtol=0, atol=1e-12
    )


def test_occupancy_counts_a_terminal_state_once_and_reproduces_values():
    game = five_state_game()
    pi1, pi2 = torch.softmax(seeded_logits(5, 2, 1), -1), torch.softmax(seeded_logits(5, 3, 2), -1)
    d = exact.occupancy(game, pi1, pi2, game.mu)
    values = exact.policy_values(game, pi1, pi2, LAM)
    joint = pi1[:, :, None] * pi2[:, None, :]
    assert float(d @ (joint * game.R1).sum((1, 2))) == pytest.approx(float(game.mu @ values.v1), abs=1e-12)
    # mass enters a terminal state once: its occupancy is the discounted probability of entering it
    chain = exact.markov_chain(game, pi1, pi2)
    entering = sum(0.9 ** (t + 1) * game.mu @ torch.linalg.matrix_power(chain, t) @ chain for t in range(400))
    assert torch.allclose(d[3:], entering[3:], atol=1e-12)
    assert float(d.sum()) < 1 / (1 - 0.9)


def test_sparse_iterative_solver_gives_terminal_states_value_0():
    game = five_state_game()
    sparse = SparseTabularGame(
        torch.arange(5).expand(5, 2, 3, 5), game.P, game.R1, game.R2, 0.9, game.rho, None, game.terminal
    )
    theta1 = seeded_logits(5, 2, 1)
    pi1 = torch.softmax(theta1, -1)
    response, dense_response = exact.soft_best_response(sparse, pi1, LAM), exact.soft_best_response(game, pi1, LAM)
    assert torch.allclose(response.probs, dense_response.probs, atol=1e-8) and (response.q[3:] == 0).all()
    values, dense_values = (
        exact.policy_values(sparse, pi1, response.probs, LAM),
        exact.policy_values(game, pi1, response.probs, LAM),
    )
    assert (
        torch.allclose(values.v2, dense_values.v2, atol=1e-7)
        and (values.v1[3:] == 0).all()
        and (values.v2[3:] == 0).all()
    )
    assert exact.stackelberg_objective(sparse, theta1, LAM) == pytest.approx(
        exact.stackelberg_objective(game, theta1, LAM), abs=1e-7
    )


def test_soccer_by_hand():
    game = soccer_game(rows=1, cols=3)  # cells 0 1 2 in a row: 2 x 3 x 2 + 1 = 13 states
    assert game.num_states == 13 and game.terminal.nonzero().flatten().tolist() == [12]
    STAND, EAST, WEST = 0, 3, 4
    # A on cell 2 with the ball, B on cell 0: A runs east off the grid and scores whatever the order
    # states enumerate (a, b != a, holder): (0,1,A) (0,1,B) (0,2,A) (0,2,B) (1,0,A) (1,0,B) (1,2,A) (1,2,B) (2,0,A) ...
    s = 8  # (2, 0, A)
    assert float(game.P[s, EAST, STAND, 12]) == 1.0 and float(game.R1[s, EAST, STAND]) == 100.0 == -float(
        game.R2[s, EAST, STAND]
    )
    # B (on cell 0, without the ball) runs west: no goal, it stays; A stands
    assert float(game.P[s, STAND, WEST, s]) == 1.0 and float(game.R1[s, STAND, WEST]) == 0.0
    # A on cell 1 with the ball runs into B on cell 2: the ball passes to B, nobody moves
    a1b2_ball_a, a1b2_ball_b = 6, 7
    assert float(game.P[a1b2_ball_a, EAST, STAND, a1b2_ball_b]) == 1.0
    twin = soccer_game(rows=1, cols=3, episodic=False)
    uniform = torch.full((13, 5), 0.2, dtype=torch.float64)
    assert not twin.episodic and torch.allclose(
        exact.policy_values(game, uniform, uniform, 0.1).v1,
        exact.policy_values(twin, uniform, uniform, 0.1).v1,
        atol=1e-12,
    )


# --- the envs ---------------------------------------------------------------------------------


def test_episodic_single_env_passes_gymnasium_checker():
    env = gym.make("spg/Soccer-v0", rows=1, cols=3).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert not caught, [str(w.message) for w in caught]


def test_single_and_vector_env_terminate_on_entering_a_terminal_state():
    game = five_state_game()
    env = StochasticGameEnv(game, start="rho")
    env.reset(seed=0)
    ended = 0
    for _ in range(2000):
        state, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert terminated == bool(game.terminal[state]) and not truncated
        if terminated:
            ended += 1
            env.reset()
    assert ended > 100
    vector = TabularVectorEnv(game, 64, start="rho")
    states = vector.reset_torch(seed=0)
    started_terminal = game.terminal[states]
    a1, a2 = torch.zeros(64, dtype=torch.long), torch.zeros(64, dtype=torch.long)
    next_states, rewards, terminated, _ = vector.step_torch(a1, a2)
    assert started_terminal.any()  # rho puts 2/5 of its mass on terminal states
    # a copy that started in a terminal state ends at once with reward 0; the others end on entering one
    assert torch.equal(terminated, game.terminal[next_states]) and (rewards[started_terminal] == 0).all()
    _, rewards, terminated, _ = vector.step_torch(a1, a2)
    assert (rewards[game.terminal[next_states]] == 0).all() and not terminated[
        game.terminal[next_states]
    ].any()  # next-step autoreset


@pytest.mark.parametrize("vectorization", ["native", "native sparse", "sync"])
def test_monte_carlo_returns_from_rho_match_exact_values(vectorization):
    game = five_state_game()
    leader = TabularSoftmaxPolicy(5, 2, logits=seeded_logits(5, 2, 1))
    follower = TabularSoftmaxPolicy(5, 3, logits=seeded_logits(5, 3, 2))
    if vectorization == "native":
        sampler = evaluation_sampler(game, 4000, seed=0, rollouts=Rollouts(200, geometric=False))
    elif vectorization == "native sparse":
        successors = torch.arange(5).expand(5, 2, 3, 5)
        sampler = evaluation_sampler(
            SparseTabularGame(successors, game.P, game.R1, game.R2, 0.9, game.rho, None, game.terminal),
            4000,
            seed=0,
            rollouts=Rollouts(200, geometric=False),
        )
    else:
        env = gym.vector.SyncVectorEnv([lambda: RewardPairInInfo(StochasticGameEnv(game, start="rho"))] * 200)
        sampler = Sampler(env, seed=0)
    batch = sampler.collect(leader, follower, 4000, 200)
    assert batch.length < 200  # every episode ended before the horizon
    values = exact.policy_values(game, leader.probs().detach(), follower.probs().detach(), 0.0)
    for value, returns in zip((values.v1, values.v2), batch.discounted_returns(game.gamma)):
        assert abs(float(returns.mean() - game.rho @ value)) < 4 * float(returns.std()) / 4000**0.5


# --- the sampler ------------------------------------------------------------------------------


def test_batches_stop_when_every_episode_ended_and_count_only_played_steps():
    game = four_state_game()
    leader, follower = TabularSoftmaxPolicy(4, 2), TabularSoftmaxPolicy(4, 3)
    sampler = Sampler(TabularVectorEnv(game, 300), seed=0, probe_discount=0.9)
    batch = sampler.collect(leader, follower, 500, HORIZON)  # two rounds of 300 copies, cut to 500
    assert batch.num_trajectories == 500 and batch.horizon == HORIZON and batch.length < HORIZON
    lengths = batch.mask.sum(1)
    assert int(lengths.max()) == batch.length and (lengths >= 1).all()
    # a mask is a prefix: True up to the step that entered the terminal state, then False
    assert torch.equal(batch.mask, torch.arange(batch.length)[None] < lengths[:, None])
    assert not game.terminal[batch.states[batch.mask]].any()  # no step is played in a terminal state
    assert (batch.leader_rewards[~batch.mask] == 0).all() and batch.env_steps == int(lengths.sum())


# --- the estimators, as in tests/test_estimators.py, on an episodic game ----------------------


@pytest.mark.parametrize(
    "shift, probes, geometric", [(0.0, False, False), (0.0, True, False), (5.0, True, False), (0.0, True, True)]
)
def test_estimators_are_unbiased_at_first_and_second_order_with_terminal_states(shift, probes, geometric):
    # geometric: trajectories of geometric length (undiscounted sums, centred rewards), which a
    # terminal state may end before their length
    game = four_state_game(shift)
    leader = TabularSoftmaxPolicy(4, 2, logits=seeded_logits(4, 2, 1))
    follower = TabularSoftmaxPolicy(4, 3, logits=seeded_logits(4, 3, 2))
    v, w = seeded_logits(4, 3, 3), seeded_logits(4, 3, 4)
    V1, V2 = exact.objectives(game, leader.logits, follower.logits, LAM)
    # the values themselves, then every derivative eq. (19) needs
    expected = torch.cat([torch.stack([V1, V2]).detach(), derivatives(V1, V2, leader.logits, follower.logits, v, w)])
    sampler = Sampler(
        TabularVectorEnv(game, 400),
        seed=1,
        probe_discount=game.gamma if probes else None,
        geometric_discount=game.gamma if geometric else None,
    )
    samples, lengths = [], []
    for _ in range(150):
        batch = sampler.collect(leader, follower, 400, HORIZON)
        lengths.append(batch.length)
        discount = 1.0 if geometric else game.gamma
        F1, F2 = surrogate_objectives(batch, leader.logits, follower.logits, gamma=discount, lam=LAM, center=geometric)
        samples.append(
            torch.cat([torch.stack([F1, F2]).detach(), derivatives(F1, F2, leader.logits, follower.logits, v, w)])
        )
    samples = torch.stack(samples)
    z = z_scores(samples, expected)
    assert z.abs().max() < 4.0, z
    # power, on the derivatives (geometric lengths are noisier; centring that ignores the early ends
    # of episodes is off by ~90 standard errors here)
    assert samples[:, 2:].std(0).max() / 150**0.5 < (0.3 if geometric else 0.1) * expected[2:].abs().max()
    assert max(lengths) < HORIZON  # every batch was cut short


def test_implicit_surrogate_and_q_estimates_are_unbiased_with_terminal_states():
    game = four_state_game()
    theta1, theta2 = seeded_logits(4, 2, 1), seeded_logits(4, 3, 2)
    leader, follower = TabularSoftmaxPolicy(4, 2, logits=theta1), TabularSoftmaxPolicy(4, 3, logits=theta2)
    w = seeded_logits(4, 3, 5)
    (expected,) = torch.autograd.grad(
        ExactObjectives(game).implicit_objective(leader.logits, follower.logits, LAM, w), leader.logits
    )
    pi1, pi2 = torch.softmax(theta1, -1), torch.softmax(theta2, -1)
    values = exact.policy_values(game, pi1, pi2, LAM)
    expected_q = torch.cat([torch.einsum("sa,sab->sb", pi1, q)[:3].flatten() for q in (values.q1, values.q2)])
    sampler = Sampler(TabularVectorEnv(game, 400), seed=6, probe_discount=game.gamma)
    rho_over_mu = start_weights(game, "mu")  # rollouts from mu, the implicit term at rho
    implicit, q = [], []
    for _ in range(150):
        batch = sampler.collect(leader, follower, 400, HORIZON)
        surrogate = implicit_surrogate(
            batch,
            leader.logits,
            follower.logits,
            w,
            gamma=game.gamma,
            lam=LAM,
            start_weights=rho_over_mu[batch.states[:, 0]],
        )
        (g,) = torch.autograd.grad(surrogate, leader.logits)
        implicit.append(g.flatten())
        q1, q2, counts = follower_q_estimates(batch, follower.logits, leader.num_actions, gamma=game.gamma, lam=LAM)
        assert (counts[:3] > 0).all() and (counts[3] == 0).all()
        q.append(torch.cat([q1[:3].flatten(), q2[:3].flatten()]))
    for samples, exact_value in ((torch.stack(implicit), expected.flatten()), (torch.stack(q), expected_q)):
        z = z_scores(samples, exact_value)
        assert z.abs().max() < 4.0, z
        assert samples.std(0).max() / 150**0.5 < 0.05 * exact_value.abs().max()  # power


def test_pooled_leader_terms_match_the_exact_ones_with_terminal_states():
    # the Rao-Blackwellised grad_1 V1(rho) and implicit term (spg.pooled): bootstrapped targets take
    # no future after the terminal transition; large batches keep their O(1/N) bias below the
    # standard errors resolved here
    game = four_state_game()
    leader = TabularSoftmaxPolicy(4, 2, logits=seeded_logits(4, 2, 1))
    follower = TabularSoftmaxPolicy(4, 3, logits=seeded_logits(4, 3, 2))
    w = seeded_logits(4, 3, 5)

    def terms(source):
        (direct,) = torch.autograd.grad(source.leader_objective(leader.logits, follower.logits, LAM), leader.logits)
        (implicit,) = torch.autograd.grad(
            source.implicit_objective(leader.logits, follower.logits, LAM, w), leader.logits
        )
        return torch.cat([direct[:3].flatten(), implicit[:3].flatten()])  # the terminal state's rows are 0 in both

    expected = terms(ExactObjectives(game))
    sampler = Sampler(TabularVectorEnv(game, 2000), seed=9, probe_discount=game.gamma)
    weights = start_weights(game, "mu")
    samples = torch.stack(
        [
            terms(
                SampledObjectives(sampler.collect(leader, follower, 2000, HORIZON), game.gamma, start_weights=weights)
            )
            for _ in range(40)
        ]
    )
    z = z_scores(samples, expected)
    assert z.abs().max() < 4.0, z
    assert samples.std(0).max() / 40**0.5 < 0.05 * expected.abs().max()  # power
