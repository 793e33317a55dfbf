"""Environments: the Gymnasium contract, Monte Carlo returns against exact values, transition
frequencies against P, seeding, next-step autoreset and bad games."""

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

import envs  # noqa: F401  (registers spg/ ids)
from envs import StochasticGameEnv, TabularVectorEnv
from envs.registry import GAME_BUILDERS, default_kwargs
from spg import exact
from spg.game import TabularGame, random_game
from spg.policy import TabularSoftmaxPolicy
from tests.helpers import ROOT, config

LAM = 0.2


def policies(game, seed):
    g = torch.Generator().manual_seed(seed)
    (S, (A1, A2)) = game.num_states, game.num_actions
    leader = TabularSoftmaxPolicy(S, A1, logits=torch.randn(S, A1, generator=g, dtype=torch.float64))
    follower = TabularSoftmaxPolicy(S, A2, logits=torch.randn(S, A2, generator=g, dtype=torch.float64))
    return leader, follower


def discounted_returns(rewards, entropies, gamma, lam):
    """Per-episode discounted returns of both players (the follower's with its entropy bonus)."""
    discount = gamma ** torch.arange(rewards.shape[1], dtype=torch.float64)
    g1 = (rewards[..., 0] * discount).sum(1)
    g2 = ((rewards[..., 1] + lam * entropies) * discount).sum(1)
    return g1, g2


def assert_within_standard_errors(samples, expected, k=4.0):
    mean, se = float(samples.mean()), float(samples.std() / len(samples) ** 0.5)
    assert abs(mean - expected) < k * se, (mean, expected, se)


def test_registered_ids_make_single_and_native_vector_envs(tmp_path):
    single = gym.make("spg/RandomGame-v0", num_states=4)
    assert isinstance(single.unwrapped, StochasticGameEnv) and single.unwrapped.game.num_states == 4
    vec = gym.make_vec("spg/RandomGame-v0", num_envs=8, num_states=4)
    assert isinstance(vec, TabularVectorEnv) and vec.num_envs == 8
    matrix = gym.make("spg/MatrixGame-v0").unwrapped.game
    assert matrix.num_states == 1 and float(matrix.R1[0, 0, 1]) == 4.0
    game = random_game(3, 2, 2, seed=1)
    game.to_npz(tmp_path / "g.npz")
    from_file = gym.make("spg/GameFile-v0", path=str(tmp_path / "g.npz")).unwrapped.game
    assert torch.equal(from_file.P, game.P)
    assert gym.make("spg/Game-v0", game=game).unwrapped.game is game
    sparse = gym.make_vec("spg/RandomSparseGame-v0", num_envs=4, num_states=50, num_successors=3)
    assert sparse.sparse and sparse.game.num_states == 50 and sparse.game.num_successors == 3


GAME_CONFIGS = [
    p
    for p in sorted((ROOT / "configs" / "env").glob("*.yaml"))
    if yaml.safe_load(p.read_text()).get("id") in GAME_BUILDERS
]


def test_every_registered_game_with_defaults_has_a_config_file():
    configured = {yaml.safe_load(p.read_text())["id"] for p in GAME_CONFIGS}
    assert {env_id for env_id in GAME_BUILDERS if default_kwargs(env_id)} <= configured


@pytest.mark.parametrize("path", GAME_CONFIGS, ids=lambda p: p.stem)
def test_env_defaults_are_written_once_and_the_config_builds_what_gym_make_builds(path):
    assert "kwargs" not in yaml.safe_load(path.read_text())  # env.kwargs come from the builder's signature
    env = config(f"env={path.stem}").env
    kwargs = OmegaConf.to_container(env.kwargs)
    assert kwargs == OmegaConf.to_container(OmegaConf.create(default_kwargs(env.id)))
    assert gym.make(env.id, **kwargs).unwrapped.game.fingerprint() == gym.make(env.id).unwrapped.game.fingerprint()
    key, value = ("num_states", 5) if "num_states" in kwargs else ("gamma", 0.5)  # overridable without +
    assert OmegaConf.to_container(config(f"env={path.stem}", f"env.kwargs.{key}={value}").env.kwargs) == {
        **kwargs,
        key: value,
    }


def test_bad_game_gives_validation_error_not_a_torch_trace(tmp_path):
    P = np.ones((2, 1, 1, 2)) / 2
    P[1, 0, 0] = [0.7, 0.7]
    np.savez(tmp_path / "bad.npz", P=P, R1=np.zeros((2, 1, 1)), R2=np.zeros((2, 1, 1)), gamma=0.9, rho=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"P\[1, 0, 0, :\] sums to 1.4"):
        gym.make("spg/GameFile-v0", path=str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match=r"payoff matrices"):
        gym.make_vec("spg/MatrixGame-v0", num_envs=2, leader_payoff=[[1, 2]], follower_payoff=[[1]])
    with pytest.raises(ValueError, match=r"gamma = 1.5"):
        gym.make("spg/RandomGame-v0", gamma=1.5)


def test_single_env_monte_carlo_returns_match_exact_values():
    game = random_game(4, 2, 3, seed=2, gamma=0.7, reward_range=(-1, 1))
    leader, follower = policies(game, 0)
    env = StochasticGameEnv(game, start="rho")
    gen = torch.Generator().manual_seed(0)
    episodes, horizon = 1500, 60  # 0.7^60 ~ 5e-10: truncation is negligible
    rewards = torch.zeros(episodes, horizon, 2, dtype=torch.float64)
    entropies = torch.zeros(episodes, horizon, dtype=torch.float64)
    for i in range(episodes):
        s, _ = env.reset(seed=i)
        for t in range(horizon):
            st = torch.tensor([s])
            a1, a2 = int(leader.sample(st, gen)), int(follower.sample(st, gen))
            entropies[i, t] = follower.entropy(st).detach()
            s, _, _, _, info = env.step(np.array([a1, a2]))
            rewards[i, t] = torch.from_numpy(info["reward_pair"].astype(np.float64))
    values = exact.policy_values(game, leader.probs().detach(), follower.probs().detach(), LAM)
    g1, g2 = discounted_returns(rewards, entropies, game.gamma, LAM)
    assert_within_standard_errors(g1, float(game.rho @ values.v1))
    assert_within_standard_errors(g2, float(game.rho @ values.v2))


def test_vector_env_monte_carlo_returns_match_exact_values():
    game = random_game(6, 3, 2, seed=3, gamma=0.8, reward_range=(0, 5))
    leader, follower = policies(game, 1)
    N, horizon = 20000, 110  # 0.8^110 ~ 2e-11
    env = TabularVectorEnv(game, N)  # starts from mu
    gen = torch.Generator().manual_seed(1)  # the policies' stream, independent of the env's
    s = env.reset_torch(seed=2)
    rewards = torch.zeros(N, horizon, 2, dtype=torch.float64)
    entropies = torch.zeros(N, horizon, dtype=torch.float64)
    for t in range(horizon):
        a1, a2 = leader.sample(s, gen), follower.sample(s, gen)
        entropies[:, t] = follower.entropy(s).detach()
        s, r, terminated, truncated = env.step_torch(a1, a2)
        rewards[:, t] = r.double()
        assert not (terminated | truncated).any()
    values = exact.policy_values(game, leader.probs().detach(), follower.probs().detach(), LAM)
    g1, g2 = discounted_returns(rewards, entropies, game.gamma, LAM)
    assert_within_standard_errors(g1, float(game.mu @ values.v1))
    assert_within_standard_errors(g2, float(game.mu @ values.v2))


def test_vector_env_transition_frequencies_match_P():
    game = random_game(7, 2, 3, seed=4, concentration=0.5)
    N = 40000
    env = TabularVectorEnv(game, N)
    env.reset_torch(seed=5)
    for s, a1, a2 in [(0, 0, 0), (3, 1, 2), (6, 1, 0)]:
        env.states = torch.full((N,), s)
        next_states, rewards, *_ = env.step_torch(torch.full((N,), a1), torch.full((N,), a2))
        freq = torch.bincount(next_states, minlength=7).double() / N
        p = game.P[s, a1, a2]
        se = (p * (1 - p) / N).sqrt().clamp_min(1e-12)
        assert ((freq - p).abs() <= 4 * se + 1e-12).all(), (freq, p)
        assert torch.allclose(rewards[:, 0].double(), game.R1[s, a1, a2].expand(N), atol=1e-6)


def test_vector_env_start_distribution_and_zero_probability_successors():
    P = np.zeros((3, 1, 1, 3))
    P[:, 0, 0] = [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    game = TabularGame(P, np.zeros((3, 1, 1)), np.zeros((3, 1, 1)), 0.9, [0.0, 1.0, 0.0], mu=[0.2, 0.3, 0.5])
    N = 30000
    env = TabularVectorEnv(game, N)
    starts = env.reset_torch(seed=0)
    freq = torch.bincount(starts, minlength=3).double() / N
    assert ((freq - game.mu).abs() < 4 * (game.mu * (1 - game.mu) / N).sqrt()).all()
    assert (TabularVectorEnv(game, 100, start="rho").reset_torch(seed=0) == 1).all()
    env.states = torch.zeros(N, dtype=torch.long)
    nxt, *_ = env.step_torch(torch.zeros(N, dtype=torch.long), torch.zeros(N, dtype=torch.long))
    assert (nxt != 0).all()


def test_vector_env_seeding_and_next_step_autoreset():
    game = random_game(5, 2, 2, seed=6)
    first = TabularVectorEnv(game, 16, max_episode_steps=3)
    second = TabularVectorEnv(game, 16, max_episode_steps=3)
    actions = np.ones((16, 2), dtype=np.int64)
    o1, _ = first.reset(seed=42)
    o2, _ = second.reset(seed=42)
    assert np.array_equal(o1, o2)
    for t in range(1, 6):
        o1, r1, te1, tr1, _ = first.step(actions)
        o2, r2, te2, tr2, _ = second.step(actions)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2)
        assert not te1.any()
        assert tr1.all() == (t == 3)
        if t == 4:  # the step after truncation restarts every copy: reward 0
            assert np.all(r1 == 0.0)
        else:
            assert np.all(r1 != 0.0) or t == 4
    with pytest.raises(ValueError, match="MultiDiscrete"):
        first.step(np.full((16, 2), 7))
