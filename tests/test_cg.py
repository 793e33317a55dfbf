"""Conjugate gradient against dense solves, including the singular softmax directions."""

import pytest
import torch

from spg import exact
from spg.cg import conjugate_gradient, project_state_means
from spg.game import random_game
from tests.helpers import seeded_logits

LAM = 0.2


def follower_hessian_at_best_response(seed):
    game = random_game(4, 2, 3, seed=seed, gamma=0.8)
    theta1 = seeded_logits(4, 2, seed)
    theta2 = exact.soft_best_response(game, torch.softmax(theta1, -1), LAM).logits
    t1, t2 = theta1.clone().requires_grad_(), theta2.clone().requires_grad_()
    V1, _ = exact.objectives(game, t1, t2, LAM)
    (b,) = torch.autograd.grad(V1, t2)
    H = torch.autograd.functional.hessian(lambda x: exact.objectives(game, theta1, x, LAM)[1], theta2)
    return H.reshape(12, 12), b


def test_cg_matches_dense_solve_on_the_non_singular_subspace():
    H, b = follower_hessian_at_best_response(0)
    # H is singular along the per-state constant directions (softmax invariance)
    eigenvalues = torch.linalg.eigvalsh(-H)
    assert (eigenvalues.abs() < 1e-10).sum() == 4 and eigenvalues.max() > 0
    result = conjugate_gradient(lambda v: (-H @ v.reshape(-1)).reshape(4, 3), b, tol=1e-12, max_iterations=100)
    dense = torch.linalg.pinv(-H, hermitian=True) @ b.reshape(-1)  # minimum-norm solution
    assert result.converged and not result.nonpositive_curvature
    assert torch.allclose(result.solution.reshape(-1), dense, atol=1e-9)
    assert torch.allclose(result.solution.sum(-1), torch.zeros(4, dtype=torch.float64), atol=1e-12)


def test_cg_with_damping_matches_damped_dense_solve_and_warm_start_helps():
    H, b = follower_hessian_at_best_response(1)
    A = -H + 0.05 * torch.eye(12, dtype=torch.float64)
    P = torch.eye(12, dtype=torch.float64) - torch.block_diag(*[torch.full((3, 3), 1 / 3, dtype=torch.float64)] * 4)
    matvec = lambda v: (A @ v.reshape(-1)).reshape(4, 3)  # noqa: E731
    cold = conjugate_gradient(matvec, b, tol=1e-10, max_iterations=100)
    dense = torch.linalg.pinv(P @ A @ P, hermitian=True) @ (P @ b.reshape(-1))
    assert torch.allclose(cold.solution.reshape(-1), dense, atol=1e-9)
    warm = conjugate_gradient(matvec, b, x0=cold.solution + 1e-6, tol=1e-10, max_iterations=100)
    assert warm.iterations < cold.iterations


def test_cg_exits_safely_on_nonpositive_curvature_and_zero_rhs():
    A = torch.diag(torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64))
    b = torch.ones(1, 4, dtype=torch.float64)
    result = conjugate_gradient(lambda v: (A @ v.reshape(-1)).reshape(1, 4), b, project=None, max_iterations=10)
    assert result.nonpositive_curvature and torch.isfinite(result.solution).all()
    nan = conjugate_gradient(lambda v: v * float("nan"), b, project=None)
    assert nan.nonpositive_curvature and torch.isfinite(nan.solution).all()
    zero = conjugate_gradient(lambda v: v, torch.zeros(2, 3), max_iterations=10)
    assert zero.iterations == 0 and not zero.solution.any()


def test_projection_removes_state_means():
    v = seeded_logits(3, 4, 0)
    assert torch.allclose(project_state_means(v).mean(-1), torch.zeros(3, dtype=torch.float64), atol=1e-15)


def test_trust_region_radius_stops_on_the_boundary():
    # nearly singular A: the unconstrained solution is huge, the radius keeps it bounded
    A = torch.diag(torch.tensor([1.0, 1e-9], dtype=torch.float64))
    b = torch.ones(1, 2, dtype=torch.float64)
    result = conjugate_gradient(lambda v: (A @ v.reshape(-1)).reshape(1, 2), b, project=None, radius=10.0, tol=1e-12)
    assert result.hit_radius and float(result.solution.norm()) == pytest.approx(10.0)
    free = conjugate_gradient(lambda v: (A @ v.reshape(-1)).reshape(1, 2), b, project=None, radius=1e12, tol=1e-12)
    assert not free.hit_radius and torch.allclose(free.solution, torch.tensor([[1.0, 1e9]], dtype=torch.float64))
