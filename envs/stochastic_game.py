"""A tabular two-player stochastic game as a single Gymnasium environment.

The two-player contract (docs/formats.md): observation ``Discrete(S)`` (the state index),
action ``MultiDiscrete([A1, A2])`` = (leader action, follower action), and ``env.unwrapped.game``
the model. The reward follows Gymnasium's API, so Gymnasium's vectorisers and wrappers take the
env as it is: the leader's reward as the float reward, the float32 pair ``[r_leader, r_follower]``
(described by ``reward_space``) in ``info["reward_pair"]``.
"""

from __future__ import annotations

import weakref
from typing import Any

import gymnasium as gym
import numpy as np

from spg.game import TabularGame
from spg.sparse_game import SparseTabularGame

GAME_TYPES = (TabularGame, SparseTabularGame)

START_DISTRIBUTIONS = ("mu", "rho")


def reward_space(game: TabularGame) -> gym.spaces.Box:
    """The Box of the reward pairs ``[r_leader, r_follower]`` a game can emit."""
    low = np.array([game.R1.min().item(), game.R2.min().item()], dtype=np.float32)
    high = np.array([game.R1.max().item(), game.R2.max().item()], dtype=np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


def start_distribution(game: TabularGame, start: str):
    if start not in START_DISTRIBUTIONS:
        raise ValueError(f"start = {start!r}: episodes start from 'mu' (training) or 'rho' (evaluation)")
    return game.mu if start == "mu" else game.rho


_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _sampling_tables(game):
    """Numpy CDFs of the transition rows, successor lists (sparse games) and reward pairs, built
    once per game and shared by all its single envs (a vectoriser may hold thousands)."""
    if game not in _TABLES:
        if isinstance(game, SparseTabularGame):
            tables = (np.cumsum(game.successor_probs.cpu().numpy(), axis=-1), game.successors.cpu().numpy())
        else:
            tables = (np.cumsum(game.P.cpu().numpy(), axis=-1), None)
        rewards = np.stack([game.R1.cpu().numpy(), game.R2.cpu().numpy()], axis=-1).astype(np.float32)
        _TABLES[game] = (*tables, rewards)
    return _TABLES[game]


class StochasticGameEnv(gym.Env):
    """One copy of a :class:`~spg.game.TabularGame`. Entering one of the game's terminal states
    terminates the episode (its rewards are never collected; an episode that starts in one ends
    at its first step with reward 0); without terminal states episodes never end (register with
    ``max_episode_steps`` to truncate them). ``start`` picks the initial distribution: ``mu`` for
    training rollouts, ``rho`` for evaluation."""

    metadata = {"render_modes": []}

    def __init__(self, game: TabularGame | SparseTabularGame, *, start: str = "mu") -> None:
        if not isinstance(game, GAME_TYPES):
            raise TypeError(f"StochasticGameEnv needs a TabularGame or SparseTabularGame, got {type(game).__name__}")
        self.game, self.start = game, start
        S, (A1, A2) = game.num_states, game.num_actions
        self.observation_space = gym.spaces.Discrete(S)
        self.action_space = gym.spaces.MultiDiscrete([A1, A2])
        self.reward_space = reward_space(game)
        self._start_cdf = np.cumsum(start_distribution(game, start).cpu().numpy())
        self._next_cdf, self._successors, self._R = _sampling_tables(game)
        self._terminal = game.terminal.cpu().numpy()
        self._state = 0

    def _draw(self, cdf: np.ndarray) -> int:
        return int(min(np.searchsorted(cdf, self.np_random.random() * cdf[-1], side="right"), len(cdf) - 1))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._state = self._draw(self._start_cdf)
        return self._state, {}

    def step(self, action):
        a1, a2 = (int(a) for a in action)
        if not (0 <= a1 < self.action_space.nvec[0] and 0 <= a2 < self.action_space.nvec[1]):
            raise ValueError(f"action {tuple(action)} is outside MultiDiscrete({self.action_space.nvec.tolist()})")
        if self._terminal[self._state]:  # the episode started in a terminal state: nothing to collect
            return self._state, 0.0, True, False, {"reward_pair": np.zeros(2, dtype=np.float32)}
        pair = self._R[self._state, a1, a2].copy()
        k = self._draw(self._next_cdf[self._state, a1, a2])
        self._state = k if self._successors is None else int(self._successors[self._state, a1, a2, k])
        return self._state, float(pair[0]), bool(self._terminal[self._state]), False, {"reward_pair": pair}
