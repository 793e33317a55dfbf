"""Gymnasium's API on every registered id: ``check_env`` on the single env, and the vector API
(spaces, shapes, dtypes, seeding, next-step autoreset) on the native vector env, on
``gymnasium.make_vec`` with ``sync`` and ``async`` vectorisation, and on the trainer's own ``sync``
vectoriser (envs/python_vector.py)."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector.utils import batch_space

import envs  # noqa: F401  (registers spg/ ids)
from envs.registry import GAME_BUILDERS
from envs.vectorize import make_vector_env
from spg.game import random_game
from tests.helpers import check_vector_env

MODES = ("vector_entry_point", "sync", "async")


@pytest.fixture
def kwargs_of(tmp_path):
    """The constructor arguments an id needs (a game, a game file), small games otherwise."""
    game = random_game(3, 2, 3, seed=1)
    game.to_npz(tmp_path / "g.npz")
    special = {
        "spg/Game-v0": {"game": game},
        "spg/GameFile-v0": {"path": str(tmp_path / "g.npz")},
        "spg/RandomGame-v0": {"num_states": 4},
        "spg/RandomSparseGame-v0": {"num_states": 30, "num_successors": 3},
        "spg/Soccer-v0": {"episodic": False},  # the checks below count on episodes that only truncate
    }
    return lambda env_id: special.get(env_id, {})


@pytest.mark.parametrize("env_id", list(GAME_BUILDERS))
def test_single_env_passes_gymnasium_checker_without_warnings(env_id, kwargs_of):
    env = gym.make(env_id, **kwargs_of(env_id)).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert not caught, [str(w.message) for w in caught]
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    pair = info["reward_pair"]
    assert isinstance(reward, float) and pair.dtype == np.float32 and pair.shape == (2,)
    assert reward == pair[0] and pair in env.reward_space


@pytest.mark.parametrize("env_id", list(GAME_BUILDERS))
def test_make_vec_keeps_gymnasium_vector_api_in_every_mode(env_id, kwargs_of):
    kwargs = kwargs_of(env_id)
    reward_space = gym.make(env_id, **kwargs).unwrapped.reward_space
    spaces = []
    for mode in MODES:
        env = gym.make_vec(env_id, num_envs=3, vectorization_mode=mode, max_episode_steps=2, **kwargs)
        check_vector_env(env, reward_space, episode_steps=2)
        spaces.append((env.observation_space, env.action_space))
        env.close()
    project = make_vector_env(env_id, 3, "sync", max_episode_steps=2, **kwargs)  # the trainer's own sync vectoriser
    check_vector_env(project, reward_space, episode_steps=2)
    spaces.append((project.observation_space, project.action_space))
    assert all(pair == spaces[0] for pair in spaces)  # the native env's spaces are those of Gymnasium's vectorisers


def test_native_action_space_is_gymnasiums_batched_multidiscrete():
    native = gym.make_vec("spg/RandomGame-v0", num_envs=4, num_leader_actions=2, num_follower_actions=3)
    expected = batch_space(gym.spaces.MultiDiscrete([2, 3]), 4)  # a Box of [4, 2] ints, high [1, 2] per row
    assert native.action_space == expected
    assert np.array_equal(native.action_space.high, [[1, 2]] * 4) and native.action_space.dtype == np.int64
    native.reset(seed=0)
    native.step(native.action_space.sample())
    with pytest.raises(ValueError, match="MultiDiscrete"):
        native.step(np.full((4, 2), 3))


class EndsAtRandom(gym.Env):
    """A contract env whose episodes terminate with probability 0.3 per step (Gymnasium's reward form)."""

    observation_space = gym.spaces.Discrete(5)
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return int(self.np_random.integers(5)), {}

    def step(self, action):
        pair = np.array([action[0] + self.np_random.random(), action[1] - 1.0], np.float32)
        return (
            int(self.np_random.integers(5)),
            float(pair[0]),
            bool(self.np_random.random() < 0.3),
            False,
            {"reward_pair": pair},
        )


def test_project_sync_vectoriser_steps_exactly_as_gymnasiums_sync_vector_env():
    gym.register("test/EndsAtRandom-v0", entry_point=EndsAtRandom)
    ours = make_vector_env("test/EndsAtRandom-v0", 6, "sync")
    theirs = gym.make_vec("test/EndsAtRandom-v0", num_envs=6, vectorization_mode="sync")
    assert np.array_equal(ours.reset(seed=3)[0], theirs.reset(seed=3)[0])
    actions = np.random.default_rng(0).integers(0, 2, (40, 6, 2))
    restarts = 0
    for action in actions:
        o1, r1, te1, tr1, info1 = ours.step(action)
        o2, r2, te2, tr2, info2 = theirs.step(action)
        assert (
            np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(te1, te2) and np.array_equal(tr1, tr2)
        )
        stepped = info2.get("_reward_pair", np.zeros(6, bool))
        assert np.array_equal(info1["_reward_pair"], stepped)
        assert np.array_equal(info1["reward_pair"][stepped], info2["reward_pair"][stepped])
        restarts += int((~stepped).sum())
    assert restarts > 20  # copies restarted at different steps
