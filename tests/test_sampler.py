"""The sampler on native and Python-vectorised envs, masks, and envs that break the contract."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from envs import TabularVectorEnv
from envs.contract import ContractError
from envs.vectorize import make_vector_env
from spg import exact
from spg.game import TabularGame, random_game
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Sampler
from spg.task import GEOMETRIC_TAIL, Rollouts, auto_horizon, plan_rollouts
from tests.helpers import seeded_logits


class EndsAfterThreeSteps(gym.Env):
    """A contract-following user env whose episodes terminate after three steps."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.MultiDiscrete([2, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        return self.t % 2, np.array([1.0, 2.0], dtype=np.float32), self.t >= 3, False, {}


class ScalarReward(EndsAfterThreeSteps):
    def step(self, action):
        obs, reward, *rest = super().step(action)
        return obs, 1.0, *rest


class BoxObservation(EndsAfterThreeSteps):
    observation_space = gym.spaces.Box(0, 1, (2,))


class DiscreteAction(EndsAfterThreeSteps):
    action_space = gym.spaces.Discrete(4)


for _cls in (EndsAfterThreeSteps, ScalarReward, BoxObservation, DiscreteAction):
    gym.register(f"test/{_cls.__name__}-v0", entry_point=_cls)


@pytest.mark.parametrize("vectorization", ["native", "sync", "async"])
def test_returns_match_exact_values_whatever_the_vectoriser(vectorization):
    game = random_game(4, 2, 2, seed=1, gamma=0.5)
    kwargs = dict(num_states=4, num_leader_actions=2, num_follower_actions=2, gamma=0.5, seed=1)
    copies, N = (16, 256) if vectorization == "async" else (512, 1024)
    env = make_vector_env("spg/RandomGame-v0", copies, vectorization, **kwargs)
    leader = TabularSoftmaxPolicy(4, 2, logits=seeded_logits(4, 2, 0))
    follower = TabularSoftmaxPolicy(4, 2, logits=seeded_logits(4, 2, 1))
    batch = Sampler(env, seed=3).collect(leader, follower, N, 35)  # 0.5^35: no truncation to speak of
    env.close()
    assert batch.states.shape == (N, 35) and batch.mask.all()
    values = exact.policy_values(game, leader.probs().detach(), follower.probs().detach(), 0.0)
    for returns, v in zip(batch.discounted_returns(0.5), (values.v1, values.v2)):
        se = returns.std() / len(returns) ** 0.5
        assert abs(returns.mean() - game.mu @ v) < 4 * se


def test_sampler_is_reproducible_from_its_seed():
    env_a = make_vector_env("spg/RandomGame-v0", 32)
    env_b = make_vector_env("spg/RandomGame-v0", 32)
    policy = TabularSoftmaxPolicy(10, 3)
    a = Sampler(env_a, seed=7).collect(policy, policy, 32, 10)
    b = Sampler(env_b, seed=7).collect(policy, policy, 32, 10)
    c = Sampler(env_b, seed=8).collect(policy, policy, 32, 10)
    assert torch.equal(a.states, b.states) and torch.equal(a.leader_rewards, b.leader_rewards)
    assert not torch.equal(a.states, c.states)


@pytest.mark.parametrize("episodic", [False, True])
def test_a_native_env_steps_only_the_copies_a_batch_needs(episodic):
    """A batch of 40 from 512 native copies is the batch a 40-copy env gives from the same seed,
    bit for bit; a batch of 600 takes a full round of 512 and one of 88."""
    game = random_game(5, 2, 3, seed=4, gamma=0.8)
    if episodic:
        terminal = torch.tensor([0, 0, 0, 0, 1], dtype=torch.bool)
        R1, R2 = (R.masked_fill(terminal[:, None, None], 0.0) for R in (game.R1, game.R2))  # never collected there
        game = TabularGame(game.P, R1, R2, game.gamma, game.rho, terminal=terminal)
    leader, follower = (
        TabularSoftmaxPolicy(5, 2, logits=seeded_logits(5, 2, 0)),
        TabularSoftmaxPolicy(5, 3, logits=seeded_logits(5, 3, 1)),
    )
    small, large = Sampler(TabularVectorEnv(game, 40), seed=2), Sampler(TabularVectorEnv(game, 512), seed=2)
    for _ in range(2):  # the second batch continues both streams
        a, b = small.collect(leader, follower, 40, 9), large.collect(leader, follower, 40, 9)
        for name in ("states", "leader_actions", "follower_actions", "leader_rewards", "mask", "final_states"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert large.collect(leader, follower, 600, 9).num_trajectories == 600


def test_episodes_that_end_early_are_masked():
    env = make_vector_env("test/EndsAfterThreeSteps-v0", 4)
    policy = TabularSoftmaxPolicy(2, 2)
    batch = Sampler(env, seed=0).collect(policy, policy, 6, 5)  # two rounds of 4 copies, cut to 6
    assert batch.num_trajectories == 6 and batch.env_steps == 18
    assert batch.mask[:, :3].all() and not batch.mask[:, 3:].any()
    assert torch.all(batch.follower_rewards[:, :3] == 2.0) and torch.all(batch.follower_rewards[:, 3:] == 0.0)


@pytest.mark.parametrize(
    "env_id, message",
    [
        ("test/BoxObservation-v0", r"observation_space Discrete\(S\).*got observation_space Box"),
        ("test/DiscreteAction-v0", r"MultiDiscrete\(\[A1, A2\]\).*got action_space Discrete\(4\)"),
        ("no_such_module:Nothing-v0", r"cannot import module .no_such_module."),
        ("test/Nothing-v0", r"unknown environment id"),
    ],
)
def test_envs_breaking_the_contract_are_rejected_before_training(env_id, message):
    with pytest.raises(ContractError, match=message):
        make_vector_env(env_id, 2)


def test_scalar_reward_is_rejected_with_the_contract():
    env = make_vector_env("test/ScalarReward-v0", 2)
    policy = TabularSoftmaxPolicy(2, 2)
    with pytest.raises(ContractError, match=r"reward \[r_leader, r_follower\].*got the reward 1.0"):
        Sampler(env, seed=0).collect(policy, policy, 2, 3)


def test_bad_batch_size_is_rejected():
    policy = TabularSoftmaxPolicy(10, 3)
    with pytest.raises(ValueError, match="batch_size = 0"):
        Sampler(make_vector_env("spg/RandomGame-v0", 2), seed=0).collect(policy, policy, 0, 3)


def test_sampler_state_dict_restores_the_rollout_stream():
    from spg.game import random_game

    game = random_game(4, 2, 3, seed=1)
    leader, follower = TabularSoftmaxPolicy(4, 2), TabularSoftmaxPolicy(4, 3)
    sampler = Sampler(TabularVectorEnv(game, 16), seed=3, probe_discount=game.gamma)
    sampler.collect(leader, follower, 16, 10)
    state = sampler.state_dict()
    expected = sampler.collect(leader, follower, 16, 10)
    other = Sampler(TabularVectorEnv(game, 16), seed=99, probe_discount=game.gamma)
    other.load_state_dict(state)
    again = other.collect(leader, follower, 16, 10)
    assert torch.equal(again.states, expected.states) and torch.equal(again.weights, expected.weights)


def test_geometric_lengths_have_the_discounted_mean_and_cut_the_batch():
    game = random_game(4, 2, 2, seed=1, gamma=0.8)
    follower = TabularSoftmaxPolicy(4, 2)
    batch = Sampler(TabularVectorEnv(game, 4000), seed=2, geometric_discount=0.8).collect(
        TabularSoftmaxPolicy(4, 2), follower, 4000, 30
    )
    lengths = batch.mask.sum(1).double()
    # every trajectory is a prefix of the buffer, and the buffer ends with the longest one
    assert torch.equal(batch.mask, torch.arange(batch.horizon)[None, :] < lengths[:, None])
    assert batch.horizon == int(lengths.max()) <= 30 and lengths.min() >= 1
    expected = (1 - 0.8**30) / (1 - 0.8)  # E[min(1 + Geometric(0.2), 30)]
    assert abs(float(lengths.mean()) - expected) < 4 * float(lengths.std()) / 4000**0.5
    assert batch.env_steps == int(lengths.sum())


def test_rollout_plans():
    assert plan_rollouts(0.9, None, "auto") == Rollouts(auto_horizon(0.9), geometric=False)
    plan = plan_rollouts(0.99, None, "auto")
    assert plan.geometric and 0.99**plan.horizon <= GEOMETRIC_TAIL < 0.99 ** (plan.horizon - 1)
    assert (
        plan_rollouts(0.99, 50, "fixed") == Rollouts(50, geometric=False)
        and plan_rollouts(0.0, None, "geometric").horizon == 1
    )
