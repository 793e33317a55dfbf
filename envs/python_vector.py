"""Copies of a Python env of the two-player contract stepped in one loop in this process: the
``sync`` vectorisation of user envs.

Gymnasium's ``SyncVectorEnv`` (merging each copy's ``info``, a wrapper carrying the reward pair)
costs about 2.6 times the step of a cheap Python env such as the Inspection example of docs/custom_envs.md besides the
step itself; this loop costs about 0.4 times (``scripts/benchmark.py --only python_env``).
It keeps Gymnasium's vector API: batched spaces, next-step autoreset, per-copy seeds ``seed + i``,
the leader's rewards ``[N]`` and ``info["reward_pair"]`` ``[N, 2]``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.contract import CONTRACT, ContractError, check_spaces, reward_pair


class PythonVectorEnv(VectorEnv):
    """``len(env_fns)`` copies, each made by its ``env_fns[i]()``, stepped one after another."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
        self.envs = [make() for make in env_fns]
        self.num_envs = len(self.envs)
        first = self.envs[0]
        self.single_observation_space, self.single_action_space = first.observation_space, first.action_space
        check_spaces(first.observation_space, first.action_space, str(first))
        for env in self.envs[1:]:
            if env.observation_space != first.observation_space or env.action_space != first.action_space:
                raise ContractError(
                    f"the copies of {first} must share their spaces; got {env.observation_space}, {env.action_space}"
                )
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        if seed is None or isinstance(seed, int):
            seed = [None if seed is None else seed + i for i in range(self.num_envs)]
        obs = np.array([env.reset(seed=s, options=options)[0] for env, s in zip(self.envs, seed)], dtype=np.int64)
        self._needs_reset[:] = False
        return obs, {}

    def step(self, actions):
        N = self.num_envs
        obs = np.empty(N, dtype=np.int64)
        pairs = np.zeros((N, 2), dtype=np.float32)
        terminated, truncated = np.zeros(N, dtype=bool), np.zeros(N, dtype=bool)
        stepped = ~self._needs_reset
        restarting = set(np.flatnonzero(self._needs_reset).tolist())
        for i, (env, action) in enumerate(zip(self.envs, np.asarray(actions))):
            if restarting and i in restarting:  # next-step autoreset: the action is ignored, no reward
                obs[i] = env.reset()[0]
                continue
            obs[i], reward, terminated[i], truncated[i], info = env.step(action)
            pairs[i] = reward_pair(reward, info, env)
        _check_step(self.envs, obs, pairs, self.single_observation_space.n)
        self._needs_reset = terminated | truncated
        return (
            obs,
            pairs[:, 0].astype(np.float64),
            terminated,
            truncated,
            {"reward_pair": pairs, "_reward_pair": stepped},
        )

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


def _check_step(envs: Sequence[gym.Env], obs: np.ndarray, pairs: np.ndarray, num_states: int) -> None:
    """Every copy's observation a state index and its rewards finite (two vectorised tests a step)."""
    bad = (obs < 0) | (obs >= num_states)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ContractError(f"{envs[i]} (step): {CONTRACT}; got the observation {obs[i]} from Discrete({num_states})")
    if not np.isfinite(pairs).all():
        i = int(np.flatnonzero(~np.isfinite(pairs).all(-1))[0])
        raise ContractError(f"{envs[i]} (step): {CONTRACT}; got the reward {pairs[i]!r}")
