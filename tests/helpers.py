"""Shared test helpers, plain functions and constants: seeded logits, z-scores of Monte Carlo
means, first and second derivatives of two objectives, Gymnasium's vector API check, the shipped
config and learners built from it. The fixtures are in ``tests/conftest.py``."""

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from hydra import compose, initialize_config_dir

from spg.algorithms import make_learner
from spg.config import register_configs
from spg.estimators import joint_q_estimates, over_leader_actions

ROOT = Path(__file__).resolve().parents[1]
# a 3-state random game and a run of a few seconds
TINY = [
    "env.kwargs.num_states=3",
    "env.kwargs.num_leader_actions=2",
    "env.kwargs.num_follower_actions=2",
    "trainer.iterations=6",
    "trainer.batch_size=32",
    "trainer.horizon=12",
    "trainer.eval_every=3",
    "trainer.checkpoint_every=2",
    "trainer.eval_episodes=50",
    "trainer.progress=false",
]


def coordination_env_source(name: str) -> str:
    """A module registering ``name``, a two-state env without a model: the leader earns 1 when the
    actions match, the follower 1 for its action 1; the next state is uniform, the first one 0."""
    return (
        "import gymnasium as gym, numpy as np\n"
        "class Coordination(gym.Env):\n"
        "    observation_space = gym.spaces.Discrete(2)\n"
        "    action_space = gym.spaces.MultiDiscrete([2, 2])\n"
        "    def reset(self, *, seed=None, options=None):\n"
        "        super().reset(seed=seed)\n"
        "        self.s = 0\n"
        "        return self.s, {}\n"
        "    def step(self, action):\n"
        "        a1, a2 = int(action[0]), int(action[1])\n"
        "        self.s = int(self.np_random.integers(2))\n"
        "        return self.s, np.array([a1 == a2, a2], dtype=np.float32), False, False, {}\n"
        f"if {name!r} not in gym.registry:\n"
        f"    gym.register({name!r}, entry_point=Coordination)\n"
    )


def sampled_trajectories(cfg, updates: int) -> int:
    """Trajectories a sampled run draws: ``follower_warmup`` batches of ``batch_size``, then
    ``batch_size (1 + t / t0)^batch_growth`` (rounded up) for leader update ``t`` (the leader's
    step ``lr t0 / (t + t0)`` with power 1)."""
    b, g, t0 = cfg.trainer.batch_size, cfg.trainer.batch_growth, cfg.algo.leader.t0
    assert cfg.algo.leader.power == 1.0
    return cfg.algo.follower_warmup * b + sum(math.ceil(b * (1 + t / t0) ** g) for t in range(updates))


def follower_q_estimates(
    batch, follower_logits: torch.Tensor, num_leader_actions: int, **kwargs
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's Q estimates of both players over the follower's actions ``[S, A2]`` (the
    leader's actions pooled as sampled) and their sample counts."""
    q1, q2, counts = joint_q_estimates(batch, follower_logits, num_leader_actions, **kwargs)
    return over_leader_actions(q1, counts), over_leader_actions(q2, counts), counts.sum(1)


def seeded_logits(S: int, A: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(S, A, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def z_scores(samples: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """``(mean - expected) / standard error`` entry by entry, over the first axis of ``samples``."""
    standard_error = samples.std(0) / samples.shape[0] ** 0.5
    return (samples.mean(0) - expected) / standard_error.clamp_min(1e-15)


def derivatives(
    v1: torch.Tensor, v2: torch.Tensor, theta1: torch.Tensor, theta2: torch.Tensor, v: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """grad_1 V1, grad_2 V1, grad_2 V2, H v and (d2 V2 / d1 d2) w, flattened into one vector."""
    g11, g12 = torch.autograd.grad(v1, (theta1, theta2), retain_graph=True)
    (g22,) = torch.autograd.grad(v2, theta2, create_graph=True)
    (hv,) = torch.autograd.grad(g22, theta2, v, retain_graph=True)
    (mixed,) = torch.autograd.grad(g22, theta1, w)
    return torch.cat([x.detach().flatten() for x in (g11, g12, g22, hv, mixed)])


def check_vector_env(env: gym.vector.VectorEnv, reward_space: gym.spaces.Box, episode_steps: int) -> list[tuple]:
    """Gymnasium's vector API for an env made with ``max_episode_steps=episode_steps``: batched
    spaces, seeded resets, step shapes and dtypes, the reward pair in ``info``, and next-step
    autoreset (truncation after ``episode_steps`` steps, then a step that only restarts).
    Returns ``(states, actions, reward pairs)`` of every step that was played, for checks
    against a model."""
    N = env.num_envs
    assert env.observation_space == batch_space(env.single_observation_space, N)
    assert env.action_space == batch_space(env.single_action_space, N)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    first, info = env.reset(seed=5)
    again, _ = env.reset(seed=5)
    assert isinstance(info, dict) and np.array_equal(first, again)
    assert first.shape == (N,) and first.dtype == np.int64 and first in env.observation_space
    env.action_space.seed(0)
    played, obs = [], first
    for t in range(1, episode_steps + 3):
        before, actions = obs, env.action_space.sample()
        obs, rewards, terminated, truncated, info = env.step(actions)
        assert obs.shape == (N,) and obs.dtype == np.int64 and obs in env.observation_space
        assert rewards.shape == (N,) and rewards.dtype == np.float64
        assert terminated.shape == truncated.shape == (N,) and terminated.dtype == truncated.dtype == np.bool_
        assert not terminated.any() and np.array_equal(truncated, np.full(N, t == episode_steps))
        if t == episode_steps + 1:  # every copy restarts: no reward, no reward pair
            assert np.all(rewards == 0.0) and not np.any(info.get("_reward_pair", False))
        else:
            pairs = info["reward_pair"]
            assert pairs.shape == (N, 2) and pairs.dtype == np.float32 and info["_reward_pair"].all()
            assert np.array_equal(rewards, pairs[:, 0].astype(np.float64))
            assert all(pair in reward_space for pair in pairs)
            played.append((before, actions, pairs))
    return played


def config(*overrides: str):
    """The shipped Hydra config (``configs/``) with ``overrides``, as ``scripts/train.py`` composes
    it, with ``algo=spg`` unless ``overrides`` choose another algorithm: the trainer's tests run
    the sampled estimators' whole path (runs through ``scripts/train.py`` get the shipped default)."""
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=["algo=spg", *overrides])


def learner(game, name: str, *overrides: str):
    """Uniform policies and algorithm ``name`` at its shipped defaults (plus ``algo.*`` overrides)."""
    return make_learner(config(f"algo={name}", *overrides).algo, game.num_states, game.num_actions)
