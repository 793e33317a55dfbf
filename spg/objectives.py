"""Where the learners' objectives come from: one small protocol, two sources.

A source gives, at the current logits, the two objectives ``V1(rho)`` and ``V2^lam(mu)`` as scalars
that autograd differentiates to any order (eqs. 3-6), and both players' Q functions over the
follower's actions in the averaged MDP (eqs. 13-14): the follower's soft Q drives its natural
update, the leader's gives eq. (19)'s Hessian solve in closed form. ``exact`` is a property of the source:

- :class:`ExactObjectives` computes them from a game model (dense, or sparse and densified for
  derivatives);
- :class:`SampledObjectives` estimates them from a batch of rollouts: Loaded-DiCE surrogates with
  the same derivatives in expectation, both players' Q estimates with their sample counts, and the
  leader's two terms either Rao-Blackwellised from those Q estimates (:mod:`spg.pooled`) or in
  REINFORCE form.

Algorithms (:mod:`spg.algorithms`) never ask which one they hold.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Protocol

import torch

from spg import exact
from spg.estimators import (
    Returns,
    implicit_surrogate,
    joint_q_estimates,
    over_leader_actions,
    surrogate_objectives,
    weighted_returns,
)
from spg.game import GameModel
from spg.pooled import PooledLeaderTerms
from spg.sampler import Batch

ESTIMATORS = ("pooled", "reinforce")  # the sampled leader terms: Rao-Blackwellised (spg.pooled) or REINFORCE form


class QFunctions(NamedTuple):
    """The leader's ``q1 [S, A2]`` (it gives eq. 19's ``w``), the follower's soft ``q2 [S, A2]`` (its
    natural update), and how many samples back each entry of each (``inf`` if exact). Each may be
    shifted by a constant per player (centred rewards): the learners use them only through
    advantages over the follower's actions."""

    q1: torch.Tensor
    q2: torch.Tensor
    counts1: torch.Tensor
    counts2: torch.Tensor


class ObjectiveSource(Protocol):
    exact: bool

    def objectives(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V1(rho), V2^lam(mu))``, differentiable to any order in both logits."""

    def leader_objective(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> torch.Tensor:
        """A scalar whose ``theta1``-gradient is ``grad_1 V1(rho)`` (first order only)."""

    def curvature_objectives(
        self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Eq. (19)'s factors for a conjugate-gradient solve: ``(v1, v2, v2_mixed)``, scalars whose
        ``grad_1 v1``, ``grad_2 v1`` and ``theta2``-Hessian of ``v2`` are ``grad_1 V1(rho)``,
        ``grad_2 V1(rho)`` and the follower Hessian, and whose ``d/d theta1 (grad_2 v2_mixed . w)`` is
        eq. (19)'s implicit term (``v2_mixed`` None: that of ``v2``)."""

    def q_functions(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> QFunctions:
        """Both players' Q functions over the follower's actions (:class:`QFunctions`)."""

    def implicit_objective(
        self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float, w: torch.Tensor
    ) -> torch.Tensor:
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

    def leader_objective(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> torch.Tensor:
        return self.objectives(theta1, theta2, lam)[0]

    def curvature_objectives(
        self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        return (*self.objectives(theta1, theta2, lam), None)

    @torch.no_grad()
    def q_functions(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> QFunctions:
        pi1, pi2 = torch.softmax(theta1.detach(), -1), torch.softmax(theta2.detach(), -1)
        values = exact.policy_values(self.game, pi1, pi2, lam)  # q1, q2 [S, A1, A2]
        q1, q2 = (torch.einsum("sa,sab->sb", pi1, q) for q in (values.q1, values.q2))
        exactly = torch.full_like(theta2.detach(), float("inf"))
        return QFunctions(q1, q2, exactly, exactly)

    def implicit_objective(
        self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float, w: torch.Tensor
    ) -> torch.Tensor:
        pi1, pi2 = torch.softmax(theta1, -1), torch.softmax(theta2.detach(), -1)
        with torch.no_grad():
            visits = exact.occupancy(
                self._dense, pi1.detach(), pi2, self._dense.rho
            )  # d(s) from rho, summing to 1 / (1 - gamma)
        q2 = torch.einsum(
            "sa,sab->sb", pi1, exact.policy_values(self._dense, pi1, pi2, lam).q2
        )  # differentiable in theta1
        return (visits[:, None] * pi2 * w.detach() * q2).sum()

    def split(self, parts: int) -> list["ExactObjectives"]:
        return [self] * parts


class SampledObjectives:
    """Estimates of the objectives from a batch of rollouts: the surrogates unbiased for the
    truncated values, the pooled leader terms and Q estimates consistent (:mod:`spg.pooled`).

    ``gamma``: the discount the estimators apply, 1 for rollouts of geometric length (whose
    undiscounted sums estimate the discounted values); ``center``: centred rewards (for those
    rollouts, :func:`spg.estimators.weighted_returns`); ``start_weights [S]``: ``rho(s) / mu(s)``
    when the rollouts start from ``mu != rho`` (:func:`spg.task.start_weights`), so that the
    leader's objective and eq. (19)'s implicit term are estimated at ``rho``, as in
    :class:`ExactObjectives`; ``estimator``: the leader's ``grad_1 V1`` and eq. (19)'s implicit term
    ``pooled`` (Rao-Blackwellised, :mod:`spg.pooled`) or in ``reinforce`` form (Loaded-DiCE,
    :mod:`spg.estimators`)."""

    exact = False

    def __init__(
        self,
        batch: Batch,
        gamma: float,
        *,
        baseline: bool = True,
        center: bool = False,
        start_weights: torch.Tensor | None = None,
        estimator: str = "pooled",
    ) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator = {estimator!r}: choose {' or '.join(ESTIMATORS)}")
        self.batch, self.gamma, self.baseline, self.center = batch, gamma, baseline, center
        self.start_weights, self.estimator = start_weights, estimator
        self._trajectory_weights = None if start_weights is None else start_weights[batch.states[:, 0]]
        self._key: tuple[torch.Tensor, torch.Tensor, float] | None = None
        self._cache: dict[str, object] = {}

    def _once(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float, name: str, compute):
        """``compute()``, computed once per ``(theta1, theta2, lam)`` and shared by all estimators."""
        key = self._key
        if (
            key is None
            or key[2] != lam
            or not (torch.equal(key[0], theta1.detach()) and torch.equal(key[1], theta2.detach()))
        ):
            self._key, self._cache = (theta1.detach().clone(), theta2.detach().clone(), lam), {}
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    def returns(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float, baseline: bool = True) -> Returns:
        """The batch's returns-to-go at ``theta2``, with the state baselines the REINFORCE forms use
        (``baseline``, when the source has them on) or without (for the Q estimates)."""
        baseline = baseline and self.baseline
        compute = partial(
            weighted_returns, self.batch, theta2, gamma=self.gamma, lam=lam, baseline=baseline, center=self.center
        )
        return self._once(theta1, theta2, lam, f"returns{baseline}", compute)

    def joint_q(
        self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both players' bootstrapped ``Q(s, a1, a2)`` and their sample counts."""
        returns = self.returns(theta1, theta2, lam, baseline=False)
        compute = partial(
            joint_q_estimates, self.batch, theta2, theta1.shape[1], gamma=self.gamma, lam=lam, returns=returns
        )
        return self._once(theta1, theta2, lam, "joint_q", compute)

    def pooled(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> PooledLeaderTerms:
        """The batch's Rao-Blackwellised leader terms at ``(theta1, theta2)``."""
        joint, w_before = self.joint_q(theta1, theta2, lam), self.returns(theta1, theta2, lam, baseline=False).w_before
        compute = partial(
            PooledLeaderTerms,
            self.batch,
            theta1,
            theta2,
            joint,
            gamma=self.gamma,
            w_before=w_before,
            start_weights=self._trajectory_weights,
        )
        return self._once(theta1, theta2, lam, "pooled", compute)

    def objectives(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        return surrogate_objectives(
            self.batch,
            theta1,
            theta2,
            gamma=self.gamma,
            lam=lam,
            returns=self.returns(theta1, theta2, lam),
            start_weights=self._trajectory_weights,
        )

    def leader_objective(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> torch.Tensor:
        if self.estimator == "pooled":
            return self.pooled(theta1, theta2, lam).direct_objective(theta1)
        return self.objectives(theta1, theta2, lam)[0]

    def curvature_objectives(
        self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``pooled``: the Rao-Blackwellised factors (:meth:`spg.pooled.PooledLeaderTerms.curvature_objectives`,
        consistent at the follower's soft best response); ``reinforce``: the Loaded-DiCE surrogates."""
        if self.estimator == "pooled":
            return self.pooled(theta1, theta2, lam).curvature_objectives(theta1, theta2, lam)
        return (*self.objectives(theta1, theta2, lam), None)

    def q_functions(self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float) -> QFunctions:
        """The follower's ``Q2`` bootstrapped (:func:`spg.estimators.joint_q_estimates`), the
        leader's ``Q1`` from whole returns-to-go (the choice measured in docs/estimators.md)."""
        returns = self.returns(theta1, theta2, lam, baseline=False)
        q1, _, counts1 = joint_q_estimates(
            self.batch, theta2, theta1.shape[1], gamma=self.gamma, lam=lam, returns=returns, bootstrap=False
        )
        _, q2, counts2 = self.joint_q(theta1, theta2, lam)
        return QFunctions(
            over_leader_actions(q1, counts1), over_leader_actions(q2, counts2), counts1.sum(1), counts2.sum(1)
        )

    def implicit_objective(
        self, theta1: torch.Tensor, theta2: torch.Tensor, lam: float, w: torch.Tensor
    ) -> torch.Tensor:
        if self.estimator == "pooled":
            return self.pooled(theta1, theta2, lam).implicit_objective(theta1, w)
        return implicit_surrogate(
            self.batch,
            theta1,
            theta2,
            w,
            gamma=self.gamma,
            lam=lam,
            returns=self.returns(theta1, theta2, lam),
            start_weights=self._trajectory_weights,
        )

    def split(self, parts: int) -> list["SampledObjectives"]:
        return [
            SampledObjectives(
                part,
                self.gamma,
                baseline=self.baseline,
                center=self.center,
                start_weights=self.start_weights,
                estimator=self.estimator,
            )
            for part in self.batch.split(parts)
        ]
