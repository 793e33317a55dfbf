"""Reference solutions to judge learned leaders against.

- :func:`strong_stackelberg`: the strong Stackelberg equilibrium (SSE) of a one-state game by one
  linear program per follower action (Conitzer and Sandholm, 2006), ties broken for the leader.
- :func:`quantal_stackelberg`: the entropy-regularised (quantal) Stackelberg value
  ``max J(theta1)`` -- by exhaustive search over the leader's simplex for one-state games with
  up to 3 leader actions, else by multi-start exact optimisation of ``J``.
- :func:`simultaneous_play`: where exact simultaneous gradient play (``exact_pg``) settles, for contrast.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linprog

from spg import exact
from spg.game import TabularGame
from spg.policy import TabularSoftmaxPolicy


@dataclass
class StackelbergSolution:
    leader_policy: np.ndarray  # [A1] (one-state) or [S, A1]
    follower_action: int | None
    value: float


def strong_stackelberg(leader_payoff, follower_payoff) -> StackelbergSolution:
    """SSE of a bimatrix game: for each follower action ``j``, maximise the leader's payoff over
    mixed commitments ``x`` under which ``j`` is a follower best response; keep the best LP."""
    L = np.asarray(leader_payoff, dtype=float)
    F = np.asarray(follower_payoff, dtype=float)
    A1, A2 = L.shape
    best = StackelbergSolution(np.full(A1, np.nan), None, -np.inf)
    for j in range(A2):
        # x . F[:, j] >= x . F[:, k]  <=>  x . (F[:, k] - F[:, j]) <= 0 for every k != j
        A_ub = np.stack([F[:, k] - F[:, j] for k in range(A2) if k != j]) if A2 > 1 else None
        b_ub = np.zeros(A2 - 1) if A2 > 1 else None
        result = linprog(
            -L[:, j], A_ub=A_ub, b_ub=b_ub, A_eq=np.ones((1, A1)), b_eq=[1.0], bounds=[(0, 1)] * A1, method="highs"
        )
        if result.status == 0 and -result.fun > best.value + 1e-12:
            best = StackelbergSolution(result.x, j, float(-result.fun))
    return best


def _one_state_objective(game: TabularGame, pi1: torch.Tensor, lam: float) -> torch.Tensor:
    """``J`` of one-state games for a batch of leader mixes ``[K, A1]``: the follower's quantal
    response ``softmax(pi1 R2 / lam)`` (its soft best response), then ``pi1 R1 pi2 / (1 - gamma)``."""
    R1, R2 = game.R1[0], game.R2[0]
    pi2 = torch.softmax(pi1 @ R2 / lam, -1)
    return ((pi1 @ R1) * pi2).sum(-1) / (1.0 - game.gamma)


def quantal_stackelberg(
    game: TabularGame, lam: float, *, starts: int = 6, iterations: int = 400, lr: float = 0.1, seed: int = 0
) -> StackelbergSolution:
    """``max_theta1 J(theta1)`` with the follower's soft best response at weight ``lam > 0``."""
    if lam <= 0:
        raise ValueError(f"lam = {lam}: the quantal Stackelberg value needs lam > 0 (use strong_stackelberg for 0)")
    S, (A1, _) = game.num_states, game.num_actions
    if S == 1 and A1 <= 3:  # exhaustive search over the simplex, then a local refinement
        grid = _simplex_grid(A1, 400 if A1 == 3 else 20000).to(game.dtype)
        best = grid[_one_state_objective(game, grid, lam).argmax()]
        candidates = [torch.log(best.clamp_min(1e-12))[None]]
    else:
        generator = torch.Generator().manual_seed(seed)
        candidates = [torch.zeros(S, A1, dtype=game.dtype)]
        candidates += [torch.randn(S, A1, generator=generator, dtype=game.dtype) for _ in range(starts - 1)]
    best_theta, best_value = None, -np.inf
    for theta in candidates:
        theta = ascend(game, theta, lam, iterations=iterations, lr=lr)
        value = exact.stackelberg_objective(game, theta, lam)
        if value > best_value:
            best_theta, best_value = theta, value
    return StackelbergSolution(torch.softmax(best_theta, -1).numpy().squeeze(), None, best_value)


def ascend(
    game: TabularGame, theta: torch.Tensor, lam: float, *, iterations: int = 400, lr: float = 0.1
) -> torch.Tensor:
    """Adam ascent on ``J`` from ``theta`` with exact gradients (implicit differentiation of the
    soft best response): the leader a local method from ``theta`` can hope to reach."""
    return _adam_ascent(game, theta, lam, iterations, lr)[0]


def local_ascent_value(
    game: TabularGame, theta: torch.Tensor, lam: float, *, iterations: int = 100, lr: float = 0.1
) -> float:
    """The largest ``J`` that exact Adam ascent meets within ``iterations`` steps from ``theta``
    (``J(theta)`` included): where ``J(theta)`` falls short of it, ``theta`` is no local maximum,
    however small ``||grad J||`` is there (a plateau, a saddle)."""
    return _adam_ascent(game, theta, lam, iterations, lr)[1]


def _adam_ascent(
    game: TabularGame, theta: torch.Tensor, lam: float, iterations: int, lr: float
) -> tuple[torch.Tensor, float]:
    """The last iterate of ``iterations`` Adam steps on ``J`` from ``theta``, and the best ``J`` met."""
    theta = theta.detach().clone().to(game.dtype).requires_grad_()
    optimizer = torch.optim.Adam([theta], lr=lr, maximize=True)
    best = -math.inf
    for _ in range(iterations):
        optimizer.zero_grad()
        J = exact.differentiable_stackelberg_objective(game, theta, lam)
        (grad,) = torch.autograd.grad(J, theta)
        best = max(best, float(J.detach()))
        theta.grad = grad
        optimizer.step()
    return theta.detach(), max(best, exact.stackelberg_objective(game, theta.detach(), lam))


def _simplex_grid(dim: int, resolution: int) -> torch.Tensor:
    """All points of the probability simplex in ``dim`` dimensions with coordinates ``k / resolution``."""
    if dim == 1:
        return torch.ones(1, 1)
    if dim == 2:
        p = torch.linspace(0.0, 1.0, resolution + 1)
        return torch.stack([p, 1 - p], -1)
    points = [
        (i, j, resolution - i - j) for i, j in itertools.product(range(resolution + 1), repeat=2) if i + j <= resolution
    ]
    return torch.tensor(points, dtype=torch.float64) / resolution


@dataclass
class SimultaneousOutcome:
    leader_value: float  # V1(pi1, pi2)(rho) where the dynamics settle
    J: float  # the leader's Stackelberg objective at that pi1


def simultaneous_play(game: TabularGame, lam: float, *, iterations: int = 2000) -> SimultaneousOutcome:
    """Run exact simultaneous gradient play (``exact_pg`` at its defaults: the leader ignores the
    follower's response) from uniform policies and report where it settles: the "Nash-like"
    outcome commitment is compared to."""
    from spg.algorithms import CGSettings, FollowerSettings, TwoTimescalePolicyGradient
    from spg.objectives import ExactObjectives
    from spg.schedules import StepSize

    S, (A1, A2) = game.num_states, game.num_actions
    leader, follower = TabularSoftmaxPolicy(S, A1, dtype=game.dtype), TabularSoftmaxPolicy(S, A2, dtype=game.dtype)
    algorithm = TwoTimescalePolicyGradient(
        "exact_pg",
        leader,
        follower,
        lam=lam,
        leader_step=StepSize(0.1, 0.6, 50.0),
        leader_optimizer="adam",
        leader_betas=(0.9, 0.9),
        follower_settings=FollowerSettings(kappa=1.0, power=0.0, steps=100),
        solve="closed_form",
        cg=CGSettings(),
        sub_batches=1,
        averaging=0.0,
    )
    source = ExactObjectives(game)
    for _ in range(iterations):
        algorithm.step(source)
    values = exact.policy_values(game, leader.probs().detach(), follower.probs().detach(), lam)
    return SimultaneousOutcome(float(game.rho @ values.v1), exact.stackelberg_objective(game, leader.logits, lam))
