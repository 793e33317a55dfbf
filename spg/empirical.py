"""The empirical game: a tabular model estimated from the rollouts a run already collects.

Every sampled step ``(s, a1, a2, r1, r2, s')`` of an env without a model (no ``env.unwrapped.game``),
and of any env under ``model_spg``, is counted. The maximum-likelihood model

    P^(s'|s, a1, a2) = n(s, a1, a2, s') / n(s, a1, a2),    R^i(s, a1, a2) = mean of r_i at (s, a1, a2),
    rho^(s) = share of rollouts that start in s (each weighted by rho / mu when they start from mu),

converges to the true one at every pair the rollouts keep visiting, whatever the policies that
visited it (the model does not depend on them). Pairs never visited at a visited state borrow
the state's pooled transitions and mean rewards; states never visited stay where they are with
reward 0. An episode that terminates adds the transition into the state it terminated in; a
state is terminal in the model (value 0, as in game files) when most of its entries ended the
episode and no episode starts there (where one does, as in a one-shot env whose every step ends
where it began, the model goes on from it). Truncated episodes and the horizon's last step add no
transition. The exact solver on this model gives estimates of ``J``, the follower's best-response gap and both values (tag family
``empirical/``), and ``model_spg`` takes its eq. (19) steps on it.
"""

from __future__ import annotations

import torch

from spg.game import TabularGame
from spg.sampler import Batch

# largest S * A1 * A2 * S the dense transition counts may take (float64: 8 bytes an entry)
COUNT_LIMIT = 20_000_000


class EmpiricalGame:
    """Transition counts, reward sums and start counts of every rollout passed to :meth:`update`."""

    def __init__(
        self, num_states: int, num_actions: tuple[int, int], gamma: float, device: torch.device | str = "cpu"
    ) -> None:
        S, (A1, A2) = num_states, num_actions
        if S * A1 * A2 * S > COUNT_LIMIT:
            raise ValueError(
                f"an empirical model of S = {S}, A1 = {A1}, A2 = {A2} needs {S * A1 * A2 * S:,} transition counts "
                f"(at most {COUNT_LIMIT:,})"
            )
        self.shape, self.gamma = (S, A1, A2), gamma
        self.transitions = torch.zeros(S * A1 * A2 * S, dtype=torch.float64, device=device)
        self.rewards = torch.zeros(S * A1 * A2, 3, dtype=torch.float64, device=device)  # sums of r1, r2 and visits
        self.starts = torch.zeros(S, dtype=torch.float64, device=device)
        self.entries = torch.zeros(S, 2, dtype=torch.float64, device=device)  # entries that went on, that terminated

    @classmethod
    def fits(cls, num_states: int, num_actions: tuple[int, int]) -> bool:
        return num_states * num_actions[0] * num_actions[1] * num_states <= COUNT_LIMIT

    @torch.no_grad()
    def update(self, batch: Batch, start_weights: torch.Tensor | None = None) -> None:
        """Adds the batch's steps: every step's rewards, and its transition where the next state
        was recorded (the episode goes on and the step is not the horizon's last); each start
        counts ``start_weights[s_0]`` (``rho / mu`` for rollouts from ``mu``, so that ``rho^``
        estimates ``rho``; 1 when ``None``)."""
        S, A1, A2 = self.shape
        device = self.transitions.device
        states, mask = batch.states.to(device), batch.mask.to(device)
        pair = (states * A1 + batch.leader_actions.to(device)) * A2 + batch.follower_actions.to(device)
        step_rewards = torch.stack(
            [batch.leader_rewards, batch.follower_rewards, torch.ones_like(batch.leader_rewards)], -1
        )
        self.rewards.index_add_(0, pair[mask], step_rewards.to(device, torch.float64)[mask])
        moved = mask[:, 1:]
        ones = torch.ones(int(moved.sum()), dtype=torch.float64, device=device)
        self.transitions.index_add_(0, (pair[:, :-1] * S + states[:, 1:])[moved], ones)
        self.entries[:, 0].index_add_(0, states[:, 1:][moved], ones)
        final = batch.final_states.to(device)
        ended = final >= 0
        if ended.any():
            last = (mask.sum(1, keepdim=True) - 1).clamp_min(0)  # an episode that terminated played >= 1 step
            last_pair = pair.gather(1, last).squeeze(1)[ended]
            ones = torch.ones(len(last_pair), dtype=torch.float64, device=device)
            self.transitions.index_add_(0, last_pair * S + final[ended], ones)
            self.entries[:, 1].index_add_(0, final[ended], ones)
        first = states[:, 0]
        weights = (
            torch.ones(len(first), dtype=torch.float64, device=device)
            if start_weights is None
            else start_weights.to(device, torch.float64)[first]
        )
        self.starts.index_add_(0, first, weights)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "transitions": self.transitions,
            "rewards": self.rewards,
            "starts": self.starts,
            "entries": self.entries,
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            getattr(self, name).copy_(tensor)

    @property
    def num_transitions(self) -> int:
        return int(self.transitions.sum())

    def coverage(self) -> dict[str, float]:
        """How much of the game the rollouts have seen: visited states, visited ``(s, a1, a2)``
        pairs, and the fewest visits of any pair at a visited state."""
        visits = self.rewards[:, 2].reshape(self.shape)
        visited_states = visits.sum((1, 2)) > 0
        return {
            "empirical/visited_states": float(visited_states.sum()),
            "empirical/visited_pairs": float((visits > 0).sum()),
            "empirical/fewest_visits": float(visits[visited_states].min()) if visited_states.any() else 0.0,
            "empirical/transitions": float(self.num_transitions),
        }

    @torch.no_grad()
    def model(self) -> TabularGame:
        """The maximum-likelihood game of the counts so far (module docstring)."""
        S, A1, A2 = self.shape
        counts = self.transitions.reshape(S, A1, A2, S)
        visits = self.rewards[:, 2].reshape(S, A1, A2)
        reward_sums = self.rewards[:, :2].reshape(S, A1, A2, 2)
        pooled_counts = counts.sum((1, 2))  # [S, S]
        stay = torch.eye(S, dtype=counts.dtype, device=counts.device)
        pooled_P = torch.where(
            pooled_counts.sum(1, keepdim=True) > 0,
            pooled_counts / pooled_counts.sum(1, keepdim=True).clamp_min(1),
            stay,
        )
        row = counts.sum(-1, keepdim=True)
        P = torch.where(row > 0, counts / row.clamp_min(1), pooled_P[:, None, None, :])
        pooled_R = reward_sums.sum((1, 2)) / visits.sum((1, 2)).clamp_min(1)[:, None]  # [S, 2], 0 where unvisited
        R = torch.where(visits[..., None] > 0, reward_sums / visits.clamp_min(1)[..., None], pooled_R[:, None, None, :])
        rho = self.starts / self.starts.sum() if self.starts.sum() > 0 else torch.full_like(self.starts, 1.0 / S)
        terminal = (self.entries[:, 1] > self.entries[:, 0]) & (self.starts == 0)
        if terminal.any():  # a terminal state's rewards are never collected
            R = R.masked_fill(terminal[:, None, None, None], 0.0)
        return TabularGame(P, R[..., 0], R[..., 1], self.gamma, rho, terminal=terminal, device=self.transitions.device)
