"""Where the learners' objectives come from: one small protocol, two sources.

A source gives, at the current logits, the two objectives ``V1(rho)`` and ``V2^lam(mu)`` as scalars
that autograd differentiates to any order (eqs. 3-6), and both players' Q functions over the
follower's actions in the averaged MDP (eqs. 13-14): the follower's soft Q drives its natural
update, the leader's gives eq. (19)'s Hessian solve in closed form. ``exact`` is a property of the source:

- :class:`ExactObjectives` computes them from a game model (dense, or sparse and densified for
  derivatives);
- :class:`SampledObjectives` estimates them from a batch of rollouts: Loaded-DiCE surrogates with
  the same derivatives in expectation, and Monte Carlo Q estimates with their visit counts.

Algorithms (:mod:`spg.algorithms`) never ask which one they hold.
"""

from __future__ import annotations

from typing import Protocol

import torch

from spg import exact
from spg.estimators import Returns, implicit_surrogate, q_estimates, surrogate_objectives, weighted_returns
from spg.game import GameModel
from spg.sampler import Batch


class ObjectiveSource(Protocol):
    exact: bool

    def objectives(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V1(rho), V2^lam(mu))``, differentiable to any order in both logits."""

    def q_functions(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The leader's ``Q1 [S, A2]``, the follower's soft ``Q2 [S, A2]``, and how many samples
        back each entry (``inf`` if exact). Each may be shifted by a constant per player (centred
        rewards): the learners use them only through advantages over the follower's actions."""

    def implicit_objective(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float, w: torch.Tensor) -> torch.Tensor:
        """A scalar whose ``theta1``-gradient is eq. (19)'s implicit term at the follower's soft
        best response, ``sum_s d(s) sum_a2 pi2(a2|s) w(s, a2) grad_1 Q2^lam(s, a2)``."""

    def split(self, parts: int) -> list["ObjectiveSource"]:
        """``parts`` independent sources (disjoint sub-batches; the model itself when exact)."""


class ExactObjectives:
    """The objectives of a game model, exactly: the leader's value at ``rho``, where ``J`` is
    defined, the follower's at the training distribution ``mu`` (its best response is the same
    from any start distribution with full support, eq. 14)."""

    exact = True

    def __init__(self, game: GameModel) -> None:
        self.game = game
        self._dense = exact.dense_for_derivatives(game)

    def objectives(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        return exact.objectives(self._dense, theta1, theta2, lam, d1=self._dense.rho)

    @torch.no_grad()
    def q_functions(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pi1, pi2 = torch.softmax(theta1.detach(), -1), torch.softmax(theta2.detach(), -1)
        values = exact.policy_values(self.game, pi1, pi2, lam)  # q1, q2 [S, A1, A2]
        q1, q2 = (torch.einsum("sa,sab->sb", pi1, q) for q in (values.q1, values.q2))
        return q1, q2, torch.full_like(theta2.detach(), float("inf"))

    def implicit_objective(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float, w: torch.Tensor) -> torch.Tensor:
        pi1, pi2 = torch.softmax(theta1, -1), torch.softmax(theta2.detach(), -1)
        with torch.no_grad():
            visits = exact.occupancy(self._dense, pi1.detach(), pi2, self._dense.rho)  # d(s) from rho, summing to 1 / (1 - gamma)
        q2 = torch.einsum("sa,sab->sb", pi1, exact.policy_values(self._dense, pi1, pi2, lam).q2)  # differentiable in theta1
        return (visits[:, None] * pi2 * w.detach() * q2).sum()

    def split(self, parts: int) -> list["ExactObjectives"]:
        return [self] * parts


class SampledObjectives:
    """Estimates of the objectives from a batch of rollouts (unbiased for the truncated values).

    ``gamma``: the discount the estimators apply, 1 for rollouts of geometric length (whose
    undiscounted sums estimate the discounted values); ``center``: centred rewards (for those
    rollouts, :func:`spg.estimators.weighted_returns`); ``start_weights [S]``: ``rho(s) / mu(s)``
    when the rollouts start from ``mu != rho`` (:func:`spg.task.start_weights`), so that the
    leader's objective and eq. (19)'s implicit term are estimated at ``rho``, as in
    :class:`ExactObjectives`."""

    exact = False

    def __init__(
        self, batch: Batch, gamma: float, *, baseline: bool = True, center: bool = False, start_weights: torch.Tensor | None = None
    ) -> None:
        self.batch, self.gamma, self.baseline, self.center = batch, gamma, baseline, center
        self.start_weights = start_weights
        self._trajectory_weights = None if start_weights is None else start_weights[batch.states[:, 0]]
        self._returns: tuple[torch.Tensor, float, Returns] | None = None

    def returns(self, theta2: torch.Tensor, lam: float) -> Returns:
        """The batch's returns-to-go and baselines at ``theta2``, computed once for all estimators."""
        if self._returns is None or self._returns[1] != lam or not torch.equal(self._returns[0], theta2.detach()):
            returns = weighted_returns(self.batch, theta2, gamma=self.gamma, lam=lam, baseline=self.baseline, center=self.center)
            self._returns = (theta2.detach().clone(), lam, returns)
        return self._returns[2]

    def objectives(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        return surrogate_objectives(
            self.batch, theta1, theta2, gamma=self.gamma, lam=lam, returns=self.returns(theta2, lam), start_weights=self._trajectory_weights
        )

    def q_functions(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return q_estimates(self.batch, theta2, gamma=self.gamma, lam=lam, returns=self.returns(theta2, lam))

    def implicit_objective(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float, w: torch.Tensor) -> torch.Tensor:
        return implicit_surrogate(
            self.batch, theta1, theta2, w, gamma=self.gamma, lam=lam, returns=self.returns(theta2, lam), start_weights=self._trajectory_weights
        )

    def split(self, parts: int) -> list["SampledObjectives"]:
        return [
            SampledObjectives(part, self.gamma, baseline=self.baseline, center=self.center, start_weights=self.start_weights)
            for part in self.batch.split(parts)
        ]
