"""Rao-Blackwellised leader terms: eq. (19)'s two parts from Q functions pooled over a batch.

The REINFORCE forms (:mod:`spg.estimators`) weigh each sampled leader action's score by its own
return. Conditioning every step on its state and (where it matters) on the follower's action, and
integrating the leader's action out under ``pi1`` (Rao-Blackwell), leaves

    grad_1 V1(rho)  = sum_s d(s) sum_a2 pi2(a2|s) sum_a1 grad pi1(a1|s) Q1(s, a1, a2),
    implicit term   = sum_s sum_a2 pi2(a2|s) [M(s) + d(s) w(s, a2)] sum_a1 grad pi1(a1|s) Q2(s, a1, a2),

``d(s) = E sum_t gamma^t 1[s_t = s]`` the discounted visits from ``rho`` and
``M(s) = E sum_t gamma^t W_{t-1} 1[s_t = s]`` the same visits weighted by ``W_{t-1} = sum_{k<t}
w(s_k, a2_k)``: the part of ``grad_1 Q2(s_k, a2_k)`` that flows through later states (eq. 19's
implicit term, ``sum_s d(s) sum_a2 pi2 w grad_1 Q2``, written along trajectories as in
:func:`spg.estimators.implicit_surrogate`). ``Q1, Q2`` are the batch's means of the bootstrapped
targets ``r + gamma V(s')`` of each ``(s, a1, a2)`` (:func:`spg.estimators.joint_q_estimates`);
``d`` and ``M`` its (importance- and start-weighted) visit sums. A leader action never tried at ``(s, a2)`` gets no
advantage there. The estimates are consistent, not unbiased (a ratio of batch means); their
precision against the REINFORCE forms is measured by ``scripts/estimator_error.py``
(docs/estimators.md). :meth:`PooledLeaderTerms.curvature_objectives` gives the same treatment
to the factors of a conjugate-gradient solve.
"""

from __future__ import annotations

import torch

from spg.policy import entropy_from_logits
from spg.sampler import Batch


def _over_tried_leader_actions(
    q: torch.Tensor, counts: torch.Tensor, leader_probs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_a1 pi1(a1|s) Q(s, a1, a2)`` over the leader actions tried at ``(s, a2)``, normalised
    (``[S, A2]``), and the leader probability those actions carry (0: none tried)."""
    weight = leader_probs[:, :, None] * (counts > 0).to(q.dtype)
    mass = weight.sum(1)
    return (weight * q).sum(1) / mass.clamp_min(torch.finfo(q.dtype).tiny), mass


@torch.no_grad()
def leader_advantages(q: torch.Tensor, counts: torch.Tensor, leader_probs: torch.Tensor) -> torch.Tensor:
    """``Q(s, a1, a2) - sum_a1 pi1(a1|s) Q(s, a1, a2)`` over the leader actions tried at ``(s, a2)``
    (``q, counts [S, A1, A2]``); 0 where ``(s, a1, a2)`` was never visited."""
    value, _ = _over_tried_leader_actions(q, counts, leader_probs)
    return (counts > 0).to(q.dtype) * (q - value[:, None, :])


@torch.no_grad()
def follower_q(
    q: torch.Tensor, counts: torch.Tensor, leader_probs: torch.Tensor, follower_probs: torch.Tensor
) -> torch.Tensor:
    """``Q(s, a2) = sum_a1 pi1(a1|s) Q(s, a1, a2)`` over the leader actions tried at ``(s, a2)``
    (``q, counts [S, A1, A2]``); a follower action never tried at ``s`` gets the ``pi2``-mean of the
    tried ones, so that it has no advantage there."""
    marginal, mass = _over_tried_leader_actions(q, counts, leader_probs)
    tried = (mass > 0).to(q.dtype) * follower_probs
    mean = (tried * marginal).sum(-1, keepdim=True) / tried.sum(-1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
    return torch.where(mass > 0, marginal, mean)


@torch.no_grad()
def discounted_visits(
    batch: Batch, gamma: float, w_before: torch.Tensor, start_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Each step's weight ``[N, T]`` in the discounted visits ``d``: ``gamma^t``, times ``w_before``,
    the importance weight of the path that decided ``s_t`` (:class:`spg.estimators.Returns`), and
    its trajectory's ``start_weights [N]``."""
    visit = (gamma ** torch.arange(batch.length, dtype=w_before.dtype, device=w_before.device)) * w_before * batch.mask
    return visit if start_weights is None else visit * start_weights.to(w_before.dtype)[:, None]


class PooledLeaderTerms:
    """The two leader terms of a batch as scalars ``sum_{s, a1} pi1(a1|s) X(s, a1)`` (``X``
    detached), whose ``theta1``-gradient is ``pi1 (X - sum_a1 pi1 X)``: the Rao-Blackwellised
    ``grad_1 V1(rho)`` and implicit term, from the batch's joint-action Q estimates ``joint =
    (q1, q2, counts) [S, A1, A2]`` at the follower's logits (:func:`spg.estimators.joint_q_estimates`).
    ``w_before [N, T]``: the path weights of :class:`spg.estimators.Returns`; ``start_weights [N]``:
    each trajectory's ``rho(s_0) / mu(s_0)``."""

    def __init__(
        self,
        batch: Batch,
        leader_logits: torch.Tensor,
        follower_logits: torch.Tensor,
        joint: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        *,
        gamma: float,
        w_before: torch.Tensor,
        start_weights: torch.Tensor | None = None,
    ) -> None:
        q1, q2, counts = joint
        pi1 = torch.softmax(leader_logits.detach(), -1)
        self.advantage1, self.advantage2 = leader_advantages(q1, counts, pi1), leader_advantages(q2, counts, pi1)
        self.follower_probs = torch.softmax(follower_logits.detach(), -1)
        self.joint, self.leader_probs = joint, pi1
        self.batch = batch
        self.visit = discounted_visits(batch, gamma, w_before, start_weights)
        self.d = self._per_state(self.visit)

    def _per_state(self, values: torch.Tensor) -> torch.Tensor:
        """``values [N, T]`` summed by state and averaged over trajectories."""
        S = self.follower_probs.shape[0]
        total = torch.zeros(S, dtype=values.dtype, device=values.device).index_add_(
            0, self.batch.states.reshape(-1), values.reshape(-1)
        )
        return total / self.batch.num_trajectories

    def direct_objective(self, leader_logits: torch.Tensor) -> torch.Tensor:
        """A scalar whose ``theta1``-gradient estimates ``grad_1 V1(rho)``."""
        X = self.d[:, None] * torch.einsum("sb,sab->sa", self.follower_probs, self.advantage1)
        return (torch.softmax(leader_logits, -1) * X).sum()

    def implicit_objective(self, leader_logits: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """A scalar whose ``theta1``-gradient estimates eq. (19)'s implicit term for ``w [S, A2]``."""
        with torch.no_grad():
            w = w.to(self.visit.dtype)
            m = self.batch.mask.to(self.visit.dtype)
            W = torch.cumsum(w[self.batch.states, self.batch.follower_actions] * m, dim=1)
            earlier = torch.cat([torch.zeros_like(W[:, :1]), W[:, :-1]], dim=1)  # W_{t-1}
            M = self._per_state(self.visit * earlier)
            X = torch.einsum("sb,sab->sa", self.follower_probs * (M[:, None] + self.d[:, None] * w), self.advantage2)
        return (torch.softmax(leader_logits, -1) * X).sum()

    def curvature_objectives(
        self, leader_logits: torch.Tensor, follower_logits: torch.Tensor, lam: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. (19)'s factors for a conjugate-gradient solve, Rao-Blackwellised: scalars ``(v1, v2,
        v2_mixed)`` whose derivatives are

        - ``grad_1 v1``: :meth:`direct_objective`'s ``grad_1 V1``; ``grad_2 v1 = sum_s d(s) sum_a2
          grad pi2(a2|s) Q1(s, a2)``: ``grad_2 V1`` (the policy gradient theorem, at any policies);
        - ``d2 v2 / d theta2^2 = sum_s d(s) d2/d theta2^2 [sum_a2 pi2 Q2^lam(s, a2) + lam H(pi2(.|s))]``
          with ``Q2`` held fixed: the follower Hessian at its soft best response, where the terms
          through ``d`` and ``Q2`` vanish with the soft advantages (block diagonal, docs/mathematics.md);
        - ``d/d theta1 (grad_2 v2_mixed . w)``: :meth:`implicit_objective`'s term for ``w`` centred
          under ``pi2`` (double backpropagation centres any ``w``): the same-state part through
          ``pi1 pi2 A2`` weighted by ``d(s)``, the later-state part through the follower's
          log-probabilities of the earlier steps (``W_{t-1}``, giving ``M(s)``).

        ``Q1, Q2`` over the follower's actions are :func:`follower_q` of the batch's joint estimates."""
        q1, q2, counts = self.joint
        follower_q1, follower_q2 = (follower_q(q, counts, self.leader_probs, self.follower_probs) for q in (q1, q2))
        pi2 = torch.softmax(follower_logits, -1)
        v1 = self.direct_objective(leader_logits) + (self.d[:, None] * pi2 * follower_q1).sum()
        v2 = (self.d * ((pi2 * follower_q2).sum(-1) + lam * entropy_from_logits(follower_logits))).sum()
        pi1 = torch.softmax(leader_logits, -1)
        same_state = torch.einsum("sa,sb,sab->s", pi1, pi2, self.advantage2)  # differentiable in both logits
        log_pi2 = (
            torch.log_softmax(follower_logits, -1)[self.batch.states, self.batch.follower_actions] * self.batch.mask
        )
        scores = torch.cumsum(log_pi2 - log_pi2.detach(), dim=1)
        earlier = torch.cat(
            [torch.zeros_like(scores[:, :1]), scores[:, :-1]], dim=1
        )  # value 0, derivative sum_{k<t} grad log pi2
        later_state = torch.einsum("sa,sb,sab->s", pi1, self.follower_probs, self.advantage2)
        v2_mixed = (self.d * same_state).sum() + (
            self.visit * earlier * later_state[self.batch.states]
        ).sum() / self.batch.num_trajectories
        return v1, v2, v2_mixed
