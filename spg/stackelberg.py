"""The leader's implicit (Stackelberg) gradient of eq. (19), from any pair of differentiable
objectives: the exact values of the model or sampled DiCE surrogates.

    grad J = grad_1 V1 - (d2 V2 / d1 d2) (d2 V2 / d2^2)^-1 grad_2 V1                     (19)

computed matrix-free (:func:`leader_direction`): solve ``(-H + delta I) w = grad_2 V1`` by conjugate
gradient with Hessian-vector products ``H v = d/d theta2 (g2 . v)``, ``g2 = grad_2 V2`` taken once
with ``create_graph``, then ``grad J = grad_1 V1 + d/d theta1 (g2 . w)`` by double backpropagation.

At the follower's soft best response both factors have closed forms (docs/mathematics.md):
``-H`` is block-diagonal, ``lam d(s) (diag(pi2) - pi2 pi2^T)`` per state, so
``w(s, a2) = A1(s, a2) / lam`` (:func:`closed_form_solution`), and the implicit term is
``sum_s d(s) sum_a2 pi2(a2|s) w(s, a2) grad_1 Q2^lam(s, a2)`` (the sources' ``implicit_objective``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spg.cg import CGResult, conjugate_gradient, project_state_means


@dataclass
class LeaderDirection:
    """``total = direct + implicit`` (eq. 19), the follower's own gradient, and the CG report."""

    total: torch.Tensor
    direct: torch.Tensor
    implicit: torch.Tensor
    follower_gradient: torch.Tensor
    leader_gradient_wrt_follower: torch.Tensor
    cg: CGResult


def _grad(output: torch.Tensor, inputs, grad_outputs=None, **kwargs):
    grads = torch.autograd.grad(output, inputs, grad_outputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def leader_direction(
    v1: torch.Tensor,
    v2: torch.Tensor,
    theta1: torch.Tensor,
    theta2: torch.Tensor,
    *,
    damping: float = 0.0,
    cg_tol: float = 1e-10,
    cg_iterations: int | None = None,
    warm_start: torch.Tensor | None = None,
    v2_mixed: torch.Tensor | None = None,
    trust_region: bool = True,
) -> LeaderDirection:
    """Eq. (19) at ``(theta1, theta2)`` from the leader's objective ``v1`` and the follower's
    regularised objective ``v2`` (scalars differentiable twice in both logits).

    ``v2_mixed``, when given, is an independent estimate of ``V2`` used for the mixed product
    (its own sub-batch); ``v2`` then serves the follower gradient and the Hessian.
    ``cg_iterations`` defaults to the number of follower parameters (exact in exact arithmetic).
    With ``damping > 0`` the solve is confined to ``||w|| <= ||grad_2 V1|| / damping``, the bound
    that holds whenever ``-H`` is positive semidefinite (noisy Hessian estimates can break it);
    ``trust_region=False`` lifts it.
    """
    direct, b = _grad(v1, (theta1, theta2), retain_graph=True)
    (g2,) = _grad(v2, (theta2,), create_graph=True)
    if not g2.requires_grad:  # v2 is linear in theta2: H = 0 and no mixed term
        g2 = g2.requires_grad_()

    def negative_hessian_product(v: torch.Tensor) -> torch.Tensor:
        (hv,) = _grad(g2, (theta2,), v, retain_graph=True)
        return -hv + damping * v

    cg = conjugate_gradient(
        negative_hessian_product,
        b,
        x0=warm_start,
        tol=cg_tol,
        max_iterations=cg_iterations if cg_iterations is not None else theta2.numel(),
        project=project_state_means,
        radius=float(b.norm()) / damping if trust_region and damping > 0 else None,
    )
    if v2_mixed is None:
        (implicit,) = _grad(g2, (theta1,), cg.solution)
    else:
        (g2_mixed,) = _grad(v2_mixed, (theta2,), create_graph=True)
        (implicit,) = _grad(g2_mixed, (theta1,), cg.solution) if g2_mixed.requires_grad else [torch.zeros_like(theta1)]
    return LeaderDirection(
        total=(direct + implicit).detach(),
        direct=direct.detach(),
        implicit=implicit.detach(),
        follower_gradient=g2.detach(),
        leader_gradient_wrt_follower=b.detach(),
        cg=cg,
    )


@torch.no_grad()
def closed_form_solution(
    q1: torch.Tensor, follower_probs: torch.Tensor, counts: torch.Tensor, lam: float
) -> torch.Tensor:
    """``w = (-H)^-1 grad_2 V1`` at the follower's soft best response: ``A1(s, a2) / lam`` with
    ``A1 = Q1(s, a2) - sum_a pi2(a|s) Q1(s, a)`` the leader's advantage of the follower's action
    (``q1 [S, A2]``, the leader's action averaged under ``pi1``), centred under ``pi2`` as the
    sources' ``implicit_objective`` needs (``sum_a pi2 w = 0``). Entries without samples
    (``counts == 0``) get 0; the advantage is then taken over the sampled actions."""
    seen = (counts > 0).to(q1.dtype)
    weight = follower_probs * seen
    value = (weight * q1).sum(-1, keepdim=True) / weight.sum(-1, keepdim=True).clamp_min(torch.finfo(q1.dtype).tiny)
    return seen * (q1 - value) / lam
