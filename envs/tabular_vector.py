"""A natively vectorised Gymnasium ``VectorEnv`` over one tabular game: all copies step together
with batched torch ops on the game's device.

Successors are drawn without scanning a row of ``P``. Dense games use a guide table (Chen and
Asau, 1974): for each row and each ``m < M`` (``M = 4 S``), ``guide[row, m]`` is the first successor
whose cumulative probability exceeds ``m / M``; a uniform ``u`` starts at ``guide[row, floor(u M)]``
and steps forward while the cumulative probability is ``<= u``, an expected O(1) number of steps.
Sparse games invert the ``K`` successor probabilities of the row directly (O(K) per step,
whatever ``S``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.stochastic_game import GAME_TYPES, reward_space, start_distribution
from spg.game import TabularGame
from spg.sparse_game import SparseTabularGame


class GuideTable:
    """Exact inverse-CDF sampling from the rows of ``probs [R, S]`` in expected O(1) per draw,
    with ``4 S`` guide buckets per row (int32)."""

    def __init__(self, probs: torch.Tensor, buckets_per_entry: int = 4) -> None:
        cdf = torch.cumsum(probs.to(torch.float64), dim=-1)
        cdf = cdf / cdf[:, -1:]
        rows, size = cdf.shape
        buckets = buckets_per_entry * size
        grid = torch.arange(buckets, dtype=torch.float64, device=cdf.device) / buckets
        guide = torch.searchsorted(cdf, grid.expand(rows, buckets).contiguous(), right=True).clamp_max_(size - 1)
        self.size, self.buckets = size, buckets
        self.cdf, self.guide = cdf.reshape(-1), guide.to(torch.int32).reshape(-1)

    def sample(self, rows: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """For each ``rows[i]``, the first column ``j`` with ``cdf[rows[i], j] > u[i]``."""
        bucket = rows * self.buckets + (u * self.buckets).long().clamp_max_(self.buckets - 1)
        j = self.guide.index_select(0, bucket).long()  # index_select: the fastest 1-D gather on CPU
        base = rows * self.size
        while True:
            behind = self.cdf.index_select(0, base + j) <= u
            if not behind.any():
                return j
            j = (j + behind.long()).clamp_max_(self.size - 1)


class TabularVectorEnv(VectorEnv):
    """``num_envs`` copies of a :class:`~spg.game.TabularGame` with Gymnasium's next-step autoreset.

    ``step`` follows Gymnasium's vector API, as ``SyncVectorEnv`` over the single envs does: it takes
    actions ``[N, 2]`` and returns numpy observations ``[N]``, the leader's rewards ``[N]`` (float64),
    termination flags and ``info["reward_pair"]`` (float32 ``[N, 2]``: leader, follower; with
    ``info["_reward_pair"]`` False on autoreset steps). ``step_torch`` is the same step on torch
    tensors of the game's device, returning the pairs ``[N, 2]`` as the rewards, for samplers that
    stay in torch. Entering a terminal state of the game terminates the episode (a copy that starts
    in one terminates at its first step, with reward 0); with ``max_episode_steps`` episodes are
    also truncated. A copy whose episode ended restarts from the start distribution at the next
    step (its action ignored, reward 0).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        game: TabularGame | SparseTabularGame,
        num_envs: int,
        *,
        start: str = "mu",
        max_episode_steps: int | None = None,
    ) -> None:
        if not isinstance(game, GAME_TYPES):
            raise TypeError(f"TabularVectorEnv needs a TabularGame or SparseTabularGame, got {type(game).__name__}")
        if num_envs < 1:
            raise ValueError(f"num_envs = {num_envs}: a vector env needs at least one copy")
        self.game, self.num_envs, self.max_episode_steps, self.start = game, num_envs, max_episode_steps, start
        S, (A1, A2) = game.num_states, game.num_actions
        self.single_observation_space = gym.spaces.Discrete(S)
        self.single_action_space = gym.spaces.MultiDiscrete([A1, A2])
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.reward_space = reward_space(game)
        self.device = game.device
        self._starts = GuideTable(start_distribution(game, start)[None])
        self.sparse = isinstance(game, SparseTabularGame)
        if self.sparse:
            K = game.num_successors
            self._successor_cdf = torch.cumsum(game.successor_probs.reshape(S * A1 * A2, K), -1).to(torch.float64)
            self._successors = game.successors.reshape(S * A1 * A2, K)
        else:
            self._next = GuideTable(game.P.reshape(S * A1 * A2, S))
        self._rewards = torch.stack([game.R1, game.R2], dim=-1).reshape(S * A1 * A2, 2).to(torch.float32)
        self._generator = torch.Generator(device=self.device)
        self._generator.seed()
        self.states = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._elapsed = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._never = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self.terminal = game.terminal if game.episodic else None  # [S] flags, None when no state is terminal

    @property
    def generator(self) -> torch.Generator:
        """The torch generator all randomness of this env draws from (seeded by ``reset(seed=...)``)."""
        return self._generator

    def _uniform(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self._generator, dtype=torch.float64, device=self.device)

    def _draw_starts(self, n: int) -> torch.Tensor:
        return self._starts.sample(torch.zeros(n, dtype=torch.long, device=self.device), self._uniform(n))

    def reset_torch(self, seed: int | None = None, num_copies: int | None = None) -> torch.Tensor:
        """Reset all copies, or only the first ``num_copies`` (the others are left as they are and
        must not be stepped until reset); returns the reset copies' states."""
        if seed is not None:
            self._generator.manual_seed(seed)
        if num_copies is None or num_copies == self.num_envs:
            self.states = self._draw_starts(self.num_envs)
            self._elapsed.zero_()
            self._needs_reset.zero_()
            return self.states
        if not 1 <= num_copies <= self.num_envs:
            raise ValueError(f"num_copies = {num_copies}: reset between 1 and num_envs = {self.num_envs} copies")
        starts = self._draw_starts(num_copies)
        self.states = self.states.clone()  # the states a caller holds stay as they were
        self.states[:num_copies] = starts
        self._elapsed[:num_copies] = 0
        self._needs_reset[:num_copies] = False
        return starts

    def step_torch(
        self, leader_actions: torch.Tensor, follower_actions: torch.Tensor, copies: torch.Tensor | slice | None = None
    ):
        """One batched step: ``(next_states, rewards [n, 2] float32, terminated, truncated)``. With
        ``copies`` (indices, or a slice of the first copies), only those copies step (the actions
        are theirs; the others stay as they are): a sampler stops stepping copies whose episodes
        have ended, and steps only as many as its batch needs."""
        A1, A2 = self.game.num_actions
        states = self._select(self.states, copies)
        row = (states * A1 + leader_actions) * A2 + follower_actions
        n = row.shape[0]
        u = self._uniform(n)
        if self.sparse:
            cdf = self._successor_cdf.index_select(0, row)
            k = (cdf < u[:, None] * cdf[:, -1:]).sum(-1).clamp_max_(cdf.shape[1] - 1)
            next_states = self._successors.reshape(-1).index_select(0, row * cdf.shape[1] + k)
        else:
            next_states = self._next.sample(row, u)
        rewards = self._rewards.index_select(0, row)
        never = self._never[:n]
        if self.max_episode_steps is None and self.terminal is None:  # episodes never end: no autoreset bookkeeping
            self._store(copies, next_states)
            return next_states, rewards, never, never
        restarting, elapsed = self._select(self._needs_reset, copies), self._select(self._elapsed, copies)
        if self.terminal is not None:  # a copy that started in a terminal state stays there, collecting nothing
            stuck = self.terminal.index_select(0, states) & ~restarting
            next_states = torch.where(stuck, states, next_states)
            rewards = rewards.masked_fill(stuck[:, None], 0.0)
        if restarting.any():  # next-step autoreset: ignore the action, restart, reward 0
            next_states = torch.where(restarting, self._draw_starts(n), next_states)
            rewards = rewards.masked_fill(restarting[:, None], 0.0)
            elapsed = elapsed.masked_fill(restarting, 0)
        elapsed = elapsed + (~restarting).long()
        terminated = never if self.terminal is None else self.terminal.index_select(0, next_states) & ~restarting
        truncated = never if self.max_episode_steps is None else (elapsed >= self.max_episode_steps) & ~restarting
        self._store(copies, next_states, elapsed, terminated | truncated)
        return next_states, rewards, terminated, truncated

    @staticmethod
    def _select(values: torch.Tensor, copies: torch.Tensor | slice | None) -> torch.Tensor:
        if copies is None:
            return values
        return values[copies] if isinstance(copies, slice) else values.index_select(0, copies)

    def _store(self, copies: torch.Tensor | slice | None, states: torch.Tensor, elapsed=None, needs_reset=None) -> None:
        """Write the stepped copies' states (and autoreset bookkeeping) back."""

        def put(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            if copies is None:
                return new
            if isinstance(copies, slice):  # in place: a partial reset gave this env its own buffers
                old[copies] = new
                return old
            return old.index_copy(0, copies, new)

        self.states = put(self.states, states)
        if elapsed is not None:
            self._elapsed, self._needs_reset = put(self._elapsed, elapsed), put(self._needs_reset, needs_reset)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        if isinstance(seed, (list, tuple)):
            seed = seed[0]
        return self.reset_torch(seed).cpu().numpy(), {}

    def step(self, actions):
        actions = torch.as_tensor(np.asarray(actions), dtype=torch.long, device=self.device).reshape(self.num_envs, 2)
        nvec = torch.as_tensor(self.single_action_space.nvec, device=self.device)
        if (actions < 0).any() or (actions >= nvec).any():
            raise ValueError(f"actions must lie in MultiDiscrete({self.single_action_space.nvec.tolist()}) per copy")
        stepped = ~self._needs_reset.cpu().numpy()  # copies that step rather than restart
        obs, rewards, terminated, truncated = self.step_torch(actions[:, 0], actions[:, 1])
        pairs = rewards.cpu().numpy()
        info = {"reward_pair": pairs, "_reward_pair": stepped}
        return (
            obs.cpu().numpy(),
            pairs[:, 0].astype(np.float64),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            info,
        )
