"""Matrix-free conjugate gradient for ``(-H + delta I) w = b`` (the linear solve inside eq. 19)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Projection = Callable[[torch.Tensor], torch.Tensor]


def project_state_means(v: torch.Tensor) -> torch.Tensor:
    """Remove each state's mean over actions: the projection onto the complement of the softmax
    invariance directions (adding a constant to ``theta[s, :]`` changes no policy)."""
    return v - v.mean(dim=-1, keepdim=True)


@dataclass
class CGResult:
    """The solution and what a log needs: iterations, relative residual ``||b - A w|| / ||b||``,
    whether the tolerance was met, and whether a direction of non-positive curvature stopped it."""

    solution: torch.Tensor
    iterations: int
    residual: float
    converged: bool
    nonpositive_curvature: bool
    hit_radius: bool = False


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    tol: float = 1e-8,
    max_iterations: int = 50,
    project: Projection | None = project_state_means,
    radius: float | None = None,
) -> CGResult:
    """Solve ``A x = b`` for a symmetric ``A`` given only ``x -> A x``.

    ``project`` (default: per-state mean removal) is applied to ``b``, ``x0`` and every product so
    the iterates stay in the subspace where the softmax Hessian is non-singular. ``x0`` warm-starts
    the solve. If ``p^T A p <= 0`` (``A`` not positive definite there, e.g. a follower away from
    its best response) the solve stops and returns the last iterate, flagged; it never returns NaN.
    """
    proj = project if project is not None else (lambda v: v)
    b = proj(b.detach())
    b_norm = float(b.norm())
    x = torch.zeros_like(b) if x0 is None else proj(x0.detach().clone())
    if b_norm == 0.0 or not torch.isfinite(b).all():
        return CGResult(torch.zeros_like(b), 0, 0.0, b_norm == 0.0, False)
    if x0 is not None and not torch.isfinite(x).all():
        x = torch.zeros_like(b)
    r = b - proj(matvec(x)) if x.any() else b.clone()
    p = r.clone()
    rr = float((r * r).sum())
    iterations, curvature_failed = 0, False
    while iterations < max_iterations and rr**0.5 > tol * b_norm:
        Ap = proj(matvec(p))
        curvature = float((p * Ap).sum())
        if not (curvature > 0.0) or not torch.isfinite(Ap).all():
            curvature_failed = True
            break
        step = rr / curvature
        if radius is not None and float((x + step * p).norm()) > radius:
            x = x + _step_to_boundary(x, p, radius) * p
            iterations += 1
            return CGResult(x, iterations, float((proj(b - matvec(x))).norm()) / b_norm, False, False, True)
        x = x + step * p
        r = r - step * Ap
        rr_next = float((r * r).sum())
        p = r + (rr_next / rr) * p
        rr = rr_next
        iterations += 1
    residual = rr**0.5 / b_norm
    return CGResult(x, iterations, residual, residual <= tol, curvature_failed)


def _step_to_boundary(x: torch.Tensor, p: torch.Tensor, radius: float) -> float:
    """The ``tau >= 0`` with ``||x + tau p|| = radius`` (``||x|| <= radius``)."""
    pp, xp, xx = float((p * p).sum()), float((x * p).sum()), float((x * x).sum())
    return (-xp + max(xp * xp + pp * (radius * radius - xx), 0.0) ** 0.5) / pp
