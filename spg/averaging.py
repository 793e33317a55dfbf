"""Averages of the learners' iterates: the policies a sampled run returns.

Stochastic approximation with a decaying step settles only as fast as its step shrinks; near a
sharp optimum of ``J`` (a leader whose best commitment leaves the follower nearly indifferent) the
last iterate keeps swinging across it. Polyak-Ruppert averaging returns the mean of the iterates
instead, which has the optimal asymptotic variance (Polyak and Juditsky, 1992). The
polynomial-decay average (Shamir and Zhang, ICML 2013)

    bar_theta_t = (1 - c_t) bar_theta_{t-1} + c_t theta_t,    c_t = min(1, (eta + 1) / (t + eta)),

needs no horizon: it weighs the last ``~t / (eta + 1)`` iterates, so the early climb drops out.
``eta = 0`` is the last iterate itself. Both players' logits are averaged with the same weights:
in logits the follower's soft best response moves smoothly with the leader's, so the averaged
follower stays near the averaged leader's best response.
"""

from __future__ import annotations

import torch

from spg.policy import TabularSoftmaxPolicy


class IterateAverage:
    """Polynomial-decay averages (weight ``eta``) of a leader's and a follower's logits: ``leader``
    and ``follower`` are the averaged policies (the iterates themselves when ``eta = 0``)."""

    def __init__(self, leader: TabularSoftmaxPolicy, follower: TabularSoftmaxPolicy, eta: float) -> None:
        if eta < 0:
            raise ValueError(f"eta = {eta}: the averaging weight must be >= 0 (0: the last iterate)")
        self.eta = eta
        self.iterates = (leader, follower)
        if eta == 0:
            self.leader, self.follower = leader, follower
        else:
            self.leader = TabularSoftmaxPolicy(
                leader.num_states, leader.num_actions, logits=leader.logits, dtype=leader.logits.dtype
            )
            self.follower = TabularSoftmaxPolicy(
                follower.num_states, follower.num_actions, logits=follower.logits, dtype=follower.logits.dtype
            )
            self.leader.requires_grad_(False)
            self.follower.requires_grad_(False)

    def weight(self, t: int) -> float:
        """``c_t``, the newest iterate's weight after ``t`` leader updates (1 while ``t <= 1``)."""
        return 1.0 if self.eta == 0 else min(1.0, (self.eta + 1.0) / (t + self.eta))

    @torch.no_grad()
    def update(self, t: int) -> None:
        """Fold in the iterates after ``t`` leader updates (follower-only updates come with ``t = 0``)."""
        if self.eta == 0:
            return
        c = self.weight(t)
        for average, iterate in zip((self.leader, self.follower), self.iterates):
            average.logits.lerp_(iterate.logits.detach(), c)

    def state_dict(self) -> dict:
        """The averages (the iterates live in their own modules)."""
        return {"leader": self.leader.state_dict(), "follower": self.follower.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.eta == 0:
            return
        self.leader.load_state_dict(state["leader"])
        self.follower.load_state_dict(state["follower"])
