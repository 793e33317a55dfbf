"""The exact solver against closed forms, finite differences and the soft Bellman equation."""

import pytest
import torch

from spg import exact
from spg.game import matrix_game, random_game
from tests.helpers import seeded_logits

LAM = 0.3


def central_difference(f, x, eps=1e-6):
    """Central finite differences of a scalar function of a tensor, entry by entry."""
    out = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x).view(-1)
        e[i] = eps
        e = e.view_as(x)
        out.view(-1)[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


def test_one_state_values_match_closed_form():
    R1 = torch.tensor([[2.0, 4.0, -1.0], [1.0, 3.0, 0.5]], dtype=torch.float64)
    R2 = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -3.0]], dtype=torch.float64)
    game = matrix_game(R1, R2, gamma=0.6)
    pi1, pi2 = torch.tensor([[0.3, 0.7]], dtype=torch.float64), torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64)
    values = exact.policy_values(game, pi1, pi2, LAM)
    H = -(pi2 * pi2.log()).sum()
    assert torch.allclose(values.v1, pi1 @ R1 @ pi2.T / 0.4)
    assert torch.allclose(values.v2, (pi1 @ R2 @ pi2.T + LAM * H) / 0.4)
    # Q functions: immediate reward plus the discounted value of the (only) next state
    assert torch.allclose(values.q1[0], R1 + 0.6 * values.v1)


def test_one_state_best_response_and_objective_match_closed_form():
    R1 = torch.tensor([[2.0, 4.0], [1.0, 3.0]], dtype=torch.float64)
    R2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    game = matrix_game(R1, R2, gamma=0.5)
    theta1 = torch.tensor([[0.4, -0.3]], dtype=torch.float64)
    pi1 = torch.softmax(theta1, -1)
    response = exact.soft_best_response(game, pi1, LAM)
    closed = torch.softmax(pi1 @ R2 / LAM, -1)  # follower's soft-max over its expected payoffs
    assert torch.allclose(response.probs, closed, atol=1e-12)
    J = exact.stackelberg_objective(game, theta1, LAM)
    assert J == pytest.approx(float(pi1 @ R1 @ closed.T) / 0.5, rel=1e-12)

    # grad J by eq. (19) against autograd through the closed-form best response
    theta = theta1.clone().requires_grad_()
    p1 = torch.softmax(theta, -1)
    (grad_closed,) = torch.autograd.grad((p1 @ R1 @ torch.softmax(p1 @ R2 / LAM, -1).T).sum() / 0.5, theta)
    direction = exact.stackelberg_gradient(game, theta1, LAM)
    assert torch.allclose(direction.total, grad_closed, atol=1e-10)


def test_hard_best_response_for_lam_zero():
    game = matrix_game([[0.0, 0.0, 0.0]], [[1.0, 3.0, 2.0]])
    response = exact.soft_best_response(game, torch.ones(1, 1, dtype=torch.float64), 0.0)
    assert response.logits is None and torch.equal(response.probs, torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))


def test_occupancy_sums_to_horizon_and_reproduces_values():
    game = random_game(7, 3, 2, seed=4, gamma=0.8)
    pi1, pi2 = torch.softmax(seeded_logits(7, 3, 0), -1), torch.softmax(seeded_logits(7, 2, 1), -1)
    occ = exact.occupancy(game, pi1, pi2, game.rho)
    assert float(occ.sum()) == pytest.approx(1 / (1 - 0.8), rel=1e-12)
    joint = pi1[:, :, None] * pi2[:, None, :]
    v1 = exact.policy_values(game, pi1, pi2, LAM).v1
    assert float(occ @ (joint * game.R1).sum((1, 2))) == pytest.approx(float(game.rho @ v1), rel=1e-12)


def test_averaged_mdp_matches_eqs_13_14():
    game = random_game(4, 3, 2, seed=5)
    pi1 = torch.softmax(seeded_logits(4, 3, 2), -1)
    P2, R2 = exact.averaged_mdp(game, pi1)
    s, b, t = 2, 1, 3
    assert float(P2[s, b, t]) == pytest.approx(sum(float(pi1[s, a] * game.P[s, a, b, t]) for a in range(3)))
    assert float(R2[s, b]) == pytest.approx(sum(float(pi1[s, a] * game.R2[s, a, b]) for a in range(3)))


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_and_hessian_vector_products_match_finite_differences(seed):
    game = random_game(5, 3, 4, seed=seed, gamma=0.85, reward_range=(-1, 2))
    theta1, theta2 = seeded_logits(5, 3, seed + 10), seeded_logits(5, 4, seed + 20)

    def v1(t1, t2):
        return exact.objectives(game, t1, t2, LAM)[0]

    def v2(t1, t2):
        return exact.objectives(game, t1, t2, LAM)[1]

    t1, t2 = theta1.clone().requires_grad_(), theta2.clone().requires_grad_()
    V1, V2 = exact.objectives(game, t1, t2, LAM)
    g11, g12 = torch.autograd.grad(V1, (t1, t2), retain_graph=True)
    (g22,) = torch.autograd.grad(V2, t2, create_graph=True)
    assert torch.allclose(g11, central_difference(lambda x: v1(x, theta2), theta1), atol=1e-8)
    assert torch.allclose(g12, central_difference(lambda x: v1(theta1, x), theta2), atol=1e-8)
    assert torch.allclose(g22, central_difference(lambda x: v2(theta1, x), theta2), atol=1e-8)

    # Hessian-vector products by double backward against differences of first-order gradients
    v = seeded_logits(5, 4, seed + 30)
    (hv,) = torch.autograd.grad(g22, t2, v, retain_graph=True)  # H v
    (mixed_w,) = torch.autograd.grad(g22, t1, v)  # d/d theta1 (g2 . v)

    def grad2(a, b):
        a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
        return torch.autograd.grad(v2(a, b), b)[0]

    eps = 1e-6
    hv_fd = (grad2(theta1, theta2 + eps * v) - grad2(theta1, theta2 - eps * v)) / (2 * eps)
    assert torch.allclose(hv, hv_fd, atol=1e-7)
    # mixed product: d/d theta1 of (grad_2 V2 . v), differentiated numerically in theta1
    mixed_fd = central_difference(lambda x: (grad2(x, theta2) * v).sum(), theta1)
    assert torch.allclose(mixed_w, mixed_fd, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leader_direction_at_best_response_matches_finite_differences_of_J(seed):
    game = random_game(6, 3, 4, seed=seed, gamma=0.8)
    theta1 = seeded_logits(6, 3, seed + 100)
    direction = exact.stackelberg_gradient(game, theta1, LAM)
    fd = central_difference(lambda x: exact.stackelberg_objective(game, x, LAM), theta1, eps=1e-5)
    assert float((direction.total - fd).norm() / fd.norm()) < 1e-5
    # the implicit term matters: without it the error is large
    assert float((direction.direct - fd).norm() / fd.norm()) > 1e-2


def test_soft_best_response_satisfies_soft_bellman_and_beats_perturbations():
    game = random_game(8, 3, 4, seed=7, gamma=0.9)
    pi1 = torch.softmax(seeded_logits(8, 3, 3), -1)
    response = exact.soft_best_response(game, pi1, LAM)
    values = exact.policy_values(game, pi1, response.probs, LAM)
    P2, R2 = exact.averaged_mdp(game, pi1)
    q = R2 + game.gamma * P2 @ values.v2
    # soft Bellman optimality: V(s) = lam log sum_a exp(Q(s, a) / lam), pi = softmax(Q / lam)
    assert torch.allclose(values.v2, LAM * torch.logsumexp(q / LAM, -1), atol=1e-9)
    assert torch.allclose(response.probs, torch.softmax(q / LAM, -1), atol=1e-9)
    for k in range(20):
        perturbed = torch.softmax(response.logits + 0.3 * seeded_logits(8, 4, 50 + k), -1)
        other = exact.policy_values(game, pi1, perturbed, LAM).v2
        assert (other <= values.v2 + 1e-12).all()
    gap = exact.best_response_gap(game, pi1, torch.softmax(seeded_logits(8, 4, 99), -1), LAM)
    assert gap > 0 and exact.best_response_gap(game, pi1, response.probs, LAM) == pytest.approx(0.0, abs=1e-9)


def test_exact_direction_cg_reports_nonpositive_curvature_away_from_best_response():
    # far from the best response the follower Hessian may be indefinite: CG must stop cleanly
    game = random_game(6, 2, 3, seed=11, gamma=0.9)
    found = False
    for seed in range(20):
        d = exact.exact_leader_direction(game, seeded_logits(6, 2, seed, 3.0), seeded_logits(6, 3, seed + 1, 3.0), 0.01)
        assert torch.isfinite(d.total).all()
        found |= d.cg.nonpositive_curvature
    assert found


def test_eq_19_matches_implicit_differentiation_of_the_soft_bellman_fixed_point():
    game = random_game(7, 3, 4, seed=9, gamma=0.85)
    theta1 = seeded_logits(7, 3, 5).requires_grad_()
    (grad_J,) = torch.autograd.grad(exact.differentiable_stackelberg_objective(game, theta1, LAM), theta1)
    assert float(exact.differentiable_stackelberg_objective(game, theta1, LAM).detach()) == pytest.approx(
        exact.stackelberg_objective(game, theta1, LAM), rel=1e-12
    )
    direction = exact.stackelberg_gradient(game, theta1.detach(), LAM)
    assert torch.allclose(direction.total, grad_J, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("lam", [0.5, 0.1])
def test_closed_form_solve_and_implicit_term_match_cg_at_the_soft_best_response(lam):
    # at B(theta1): -H is block-diagonal, so w = A1 / lam solves (-H) w = grad_2 V1, and the
    # implicit term is sum_s d(s) sum_a pi2 w grad_1 Q2 (docs/mathematics.md); CG to a relative
    # residual of 1e-13 agrees to 1e-8 (its error is the residual times -H's condition number, ~1e4 here)
    from spg.objectives import ExactObjectives
    from spg.stackelberg import closed_form_solution

    game = random_game(5, 3, 4, seed=3, gamma=0.9)
    theta1 = seeded_logits(5, 3, 7).requires_grad_()
    response = exact.soft_best_response(game, torch.softmax(theta1, -1).detach(), lam)
    reference = exact.exact_leader_direction(game, theta1, response.logits, lam, cg_tol=1e-13)
    source = ExactObjectives(game)
    q1, _, counts, _ = source.q_functions(theta1, response.logits, lam)
    w = closed_form_solution(q1, response.probs, counts, lam)
    centred = lambda x: x - x.mean(-1, keepdim=True)  # noqa: E731  (softmax ignores per-state constants)
    assert torch.allclose(centred(w), centred(reference.cg.solution), rtol=0, atol=1e-8 * float(w.abs().max()))
    (implicit,) = torch.autograd.grad(source.implicit_objective(theta1, response.logits, lam, w), theta1)
    assert torch.allclose(implicit, reference.implicit, rtol=0, atol=1e-8 * float(implicit.abs().max()))
