"""Exact solver: every quantity of the paper computed from the model, differentiable by autograd
(double backward included), for use as an algorithm and as ground truth for the estimators.

Under policies ``pi1, pi2`` the game is a Markov chain ``P_pi[s, s'] = sum pi1 pi2 P`` and

    V1 = (I - gamma P_pi)^-1 r1_pi,        V2^lam = (I - gamma P_pi)^-1 (r2_pi + lam H(pi2))  (eqs. 1-4)

with ``H(pi2)(s) = -sum_a pi2(a|s) log pi2(a|s)``. Values at a distribution ``d`` are ``d . V``
(eqs. 5-6). Terminal states (``game.terminal``) have value 0 for both players: their rows of
``P_pi`` are zero (a substochastic chain) and they pay no reward and no entropy bonus. Fixing
``pi1`` leaves the follower the averaged MDP of eqs. (13)-(14), whose unique
soft-optimal policy ``pi2 = softmax(Q_soft / lam)`` soft policy iteration reaches.

Sparse games (:class:`~spg.sparse_game.SparseTabularGame`) are evaluated by iterative methods
(value iteration on the successor lists, to ``ITERATIVE_TOLERANCE`` in the sup norm; a terminal
state is a zero-reward self-loop there, which keeps its value 0 and the chain stochastic);
exact derivatives densify games of up to ``DENSIFY_LIMIT`` states.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from spg.game import TabularGame
from spg.sparse_game import DENSIFY_LIMIT, SparseTabularGame
from spg.stackelberg import LeaderDirection, leader_direction

Game = TabularGame | SparseTabularGame
ITERATIVE_TOLERANCE = 1e-8


def entropy(pi: torch.Tensor) -> torch.Tensor:
    """``-sum_a pi log pi`` along the last axis (``0 log 0 = 0``), twice differentiable for pi > 0."""
    tiny = torch.finfo(pi.dtype).tiny
    return -(pi * torch.log(pi.clamp_min(tiny))).sum(-1)


def entropy_bonus(game: Game, pi2: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam H(pi2)(s)`` per state, 0 at terminal states (never collected)."""
    return lam * entropy(pi2) * game.continues()


def dense_for_derivatives(game: Game) -> TabularGame:
    """The dense form of a game for autograd (exact derivatives need the dense solve)."""
    if not isinstance(game, SparseTabularGame):
        return game
    if game.num_states > DENSIFY_LIMIT:
        raise ValueError(
            f"exact derivatives need a dense model, and this sparse game has {game.num_states} states "
            f"(> {DENSIFY_LIMIT}): use a sampled algorithm (algo=spg or algo=pg)"
        )
    return game.dense()


def _csr(weights: torch.Tensor, successors: torch.Tensor, num_states: int) -> torch.Tensor:
    """A sparse CSR matrix ``[rows, S]`` from per-row successor weights and indices ``[rows, M]``
    (repeated successors add up in the product)."""
    rows, M = weights.shape
    crow = torch.arange(0, rows * M + 1, M, device=weights.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, successors.reshape(-1), weights.reshape(-1), size=(rows, num_states))


def _fixed_point(
    step, v: torch.Tensor, gamma: float, tol: float, what: str, max_iterations: int = 100000
) -> torch.Tensor:
    """The fixed point of a monotone ``step`` with ``step(v + c) = step(v) + gamma c`` (policy
    evaluation of a Markov chain, (soft) Bellman operators), to ``tol`` in the sup norm.

    MacQueen's bounds: with ``d = step(v) - v``, the fixed point lies between
    ``step(v) + gamma/(1-gamma) min d`` and ``step(v) + gamma/(1-gamma) max d`` (per column), so the
    midpoint is within ``gamma/(1-gamma) (max d - min d)/2``. The span of ``d`` shrinks with the
    chain's second eigenvalue, far faster than ``gamma^k``."""
    scale = gamma / (1.0 - gamma)
    for _ in range(max_iterations):
        v_next = step(v)
        d = v_next - v
        low, high = d.min(0).values, d.max(0).values
        v = v_next
        if float((high - low).max()) * scale <= 2 * tol:
            return v + scale * (low + high) / 2
    raise RuntimeError(f"{what} did not converge to {tol} in {max_iterations} iterations")


def _looped_successors(game: SparseTabularGame) -> torch.Tensor:
    """The successor lists with each terminal state's row pointing to itself: with its zero
    rewards the state keeps value 0 under value iteration from 0, and every row stays stochastic,
    as the bounds of :func:`_fixed_point` need."""
    if not game.episodic:
        return game.successors
    own = torch.arange(game.num_states, device=game.device).reshape(-1, 1, 1, 1).expand_as(game.successors)
    return torch.where(game.terminal.reshape(-1, 1, 1, 1), own, game.successors)


@torch.no_grad()
def _iterative_policy_values(game: SparseTabularGame, pi1: torch.Tensor, pi2: torch.Tensor, lam: float) -> PolicyValues:
    joint = pi1[:, :, None] * pi2[:, None, :]
    rewards = torch.stack(
        [(joint * game.R1).sum((1, 2)), (joint * game.R2).sum((1, 2)) + entropy_bonus(game, pi2, lam)], -1
    )
    values = _iterative_values(game, joint, rewards)
    return _with_q_functions(game, values)


@torch.no_grad()
def _iterative_values(game: SparseTabularGame, joint: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Values ``[S, k]`` of per-state rewards ``[S, k]`` under the joint policy ``[S, A1, A2]``."""
    S = game.num_states
    chain = _csr((joint[..., None] * game.successor_probs).reshape(S, -1), _looped_successors(game).reshape(S, -1), S)
    step = lambda v: rewards + game.gamma * (chain @ v)  # noqa: E731
    values = _fixed_point(step, torch.zeros_like(rewards), game.gamma, ITERATIVE_TOLERANCE, "policy evaluation")
    return values * game.continues()[:, None]


def leader_values(game: Game, pi1: torch.Tensor, pi2: torch.Tensor) -> torch.Tensor:
    """Per-state ``V1`` alone (one value iteration, not two, on sparse games)."""
    if not isinstance(game, SparseTabularGame):
        return policy_values(game, pi1, pi2, 0.0).v1
    joint = pi1[:, :, None] * pi2[:, None, :]
    return _iterative_values(game, joint, (joint * game.R1).sum((1, 2))[:, None])[:, 0]


@torch.no_grad()
def _soft_value_iteration(game: SparseTabularGame, pi1: torch.Tensor, lam: float, tol: float) -> BestResponse:
    """Soft (or hard, ``lam = 0``) value iteration on the averaged MDP from successor lists."""
    S, A2 = game.num_states, game.num_actions[1]
    R2 = torch.einsum("sa,sab->sb", pi1, game.R2)
    weights = (pi1[:, :, None, None] * game.successor_probs).transpose(1, 2).reshape(S * A2, -1)
    averaged = _csr(weights, _looped_successors(game).transpose(1, 2).reshape(S * A2, -1), S)  # eq. (14), [S A2, S]

    def backup(v: torch.Tensor) -> torch.Tensor:
        return R2 + game.gamma * (averaged @ v[:, None]).reshape(S, A2)

    episodic = game.episodic

    def soft_max(q: torch.Tensor) -> torch.Tensor:
        value = lam * torch.logsumexp(q / lam, -1) if lam > 0 else q.max(-1).values
        # a terminal state's self-loop pays nothing, not even the entropy bonus
        return torch.where(game.terminal, q[:, 0], value) if episodic else value

    v = _fixed_point(
        lambda v: soft_max(backup(v)),
        torch.zeros(S, dtype=game.dtype, device=game.device),
        game.gamma,
        tol,
        "soft value iteration",
    )
    q = backup(v * game.continues())
    if lam > 0:
        logits = q / lam - (q / lam).mean(-1, keepdim=True)
        return BestResponse(torch.softmax(q / lam, -1), logits, q, 0)
    return BestResponse(torch.nn.functional.one_hot(q.argmax(-1), A2).to(game.dtype), None, q, 0)


def markov_chain(game: TabularGame, pi1: torch.Tensor, pi2: torch.Tensor) -> torch.Tensor:
    """``P_pi[s, s'] = sum_{a1, a2} pi1(a1|s) pi2(a2|s) P(s'|s, a1, a2)``, with zero rows at
    terminal states."""
    return torch.einsum("sa,sb,sabt->st", pi1, pi2, game.P) * game.continues()[:, None]


@dataclass
class PolicyValues:
    """Per-state values ``v1, v2 [S]`` (``v2`` entropy-regularised) and the Q functions
    ``q1, q2 [S, A1, A2]`` with ``V1 = E[q1]`` and ``V2^lam = E[q2] + lam H(pi2)``."""

    v1: torch.Tensor
    v2: torch.Tensor
    q1: torch.Tensor
    q2: torch.Tensor


def policy_values(game: Game, pi1: torch.Tensor, pi2: torch.Tensor, lam: float) -> PolicyValues:
    """Exact ``V1``, ``V2^lam`` and Q functions of both players under ``(pi1, pi2)`` (eqs. 1-4)."""
    if isinstance(game, SparseTabularGame):
        return _iterative_policy_values(game, pi1, pi2, lam)
    joint = pi1[:, :, None] * pi2[:, None, :]
    r1 = (joint * game.R1).sum((1, 2))
    r2 = (joint * game.R2).sum((1, 2)) + entropy_bonus(game, pi2, lam)
    eye = torch.eye(game.num_states, dtype=game.dtype, device=game.device)
    A = eye - game.gamma * markov_chain(game, pi1, pi2)
    return _with_q_functions(game, torch.linalg.solve(A, torch.stack([r1, r2], dim=-1)))


def _with_q_functions(game: Game, values: torch.Tensor) -> PolicyValues:
    """Both players' values ``[S, 2]`` with their Q functions ``R + gamma E[V(s')]``."""
    continuation = game.gamma * game.expected_next(values)  # [S, A1, A2, 2]
    return PolicyValues(values[:, 0], values[:, 1], game.R1 + continuation[..., 0], game.R2 + continuation[..., 1])


def occupancy(game: Game, pi1: torch.Tensor, pi2: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Discounted state occupancy ``d^T (I - gamma P_pi)^-1`` (sums to ``1 / (1 - gamma)`` without
    terminal states; with them, a terminal state counts once, at the step it is entered)."""
    game = dense_for_derivatives(game)
    eye = torch.eye(game.num_states, dtype=game.dtype, device=game.device)
    return torch.linalg.solve(eye - game.gamma * markov_chain(game, pi1, pi2).T, d)


def averaged_mdp(game: TabularGame, pi1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The follower's averaged MDP (eqs. 13-14): ``P^pi1 [S, A2, S]`` (zero rows at terminal
    states) and ``R2^pi1 [S, A2]``."""
    P2 = torch.einsum("sa,sabt->sbt", pi1, game.P) * game.continues()[:, None, None]
    return P2, torch.einsum("sa,sab->sb", pi1, game.R2)


@dataclass
class BestResponse:
    """The follower's (soft) best response: ``probs [S, A2]``; ``logits`` (per-state centred
    ``Q_soft / lam``) when ``lam > 0``; the soft Q function; iterations used."""

    probs: torch.Tensor
    logits: torch.Tensor | None
    q: torch.Tensor
    iterations: int


@torch.no_grad()
def soft_best_response(
    game: Game, pi1: torch.Tensor, lam: float, *, tol: float = 1e-10, max_iterations: int = 1000
) -> BestResponse:
    """Soft policy iteration on the averaged MDP: evaluate ``pi2`` exactly, then
    ``pi2 <- softmax(Q / lam)``, until ``Q`` moves less than ``tol``. For ``lam = 0`` the hard best
    response by policy iteration (ties to the lowest action index)."""
    if lam < 0:
        raise ValueError(f"lam = {lam}: the follower's entropy weight must be >= 0")
    if isinstance(game, SparseTabularGame):
        return _soft_value_iteration(game, pi1.detach(), lam, max(tol, ITERATIVE_TOLERANCE))
    P2, R2 = averaged_mdp(game, pi1.detach())
    S, A2 = R2.shape
    eye = torch.eye(S, dtype=game.dtype, device=game.device)
    pi2 = torch.full((S, A2), 1.0 / A2, dtype=game.dtype, device=game.device)
    q = torch.zeros_like(R2)
    for iteration in range(1, max_iterations + 1):
        reward = (pi2 * R2).sum(-1) + entropy_bonus(game, pi2, lam)
        v = torch.linalg.solve(eye - game.gamma * torch.einsum("sb,sbt->st", pi2, P2), reward)
        q_next = R2 + game.gamma * P2 @ v
        change = float((q_next - q).abs().max())
        q = q_next
        if lam > 0:
            pi2 = torch.softmax(q / lam, dim=-1)
        else:
            pi2 = torch.nn.functional.one_hot(q.argmax(-1), A2).to(game.dtype)
        if change <= tol:
            break
    else:
        raise RuntimeError(f"soft policy iteration did not reach tol={tol} in {max_iterations} iterations")
    logits = None if lam == 0 else q / lam - (q / lam).mean(-1, keepdim=True)
    return BestResponse(pi2, logits, q, iteration)


def objectives(
    game: Game,
    theta1: torch.Tensor,
    theta2: torch.Tensor,
    lam: float,
    d1: torch.Tensor | None = None,
    d2: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``V1(theta1, theta2)(d1)`` and ``V2^lam(theta1, theta2)(d2)`` as differentiable scalars
    (``d1, d2`` default to the training distribution ``mu``, as in eqs. 8-9)."""
    game = dense_for_derivatives(game)
    d1 = game.mu if d1 is None else d1
    d2 = game.mu if d2 is None else d2
    values = policy_values(game, torch.softmax(theta1, -1), torch.softmax(theta2, -1), lam)
    return d1 @ values.v1, d2 @ values.v2


def exact_leader_direction(
    game: Game,
    theta1: torch.Tensor,
    theta2: torch.Tensor,
    lam: float,
    *,
    d1: torch.Tensor | None = None,
    d2: torch.Tensor | None = None,
    damping: float = 0.0,
    cg_tol: float = 1e-10,
    cg_iterations: int | None = None,
    warm_start: torch.Tensor | None = None,
) -> LeaderDirection:
    """Eq. (19) at any ``(theta1, theta2)`` with exact derivatives (CG to ``cg_tol``)."""
    theta1 = theta1.detach().requires_grad_()
    theta2 = theta2.detach().requires_grad_()
    with torch.enable_grad():
        v1, v2 = objectives(game, theta1, theta2, lam, d1, d2)
        return leader_direction(
            v1, v2, theta1, theta2, damping=damping, cg_tol=cg_tol, cg_iterations=cg_iterations, warm_start=warm_start
        )


def stackelberg_objective(game: Game, theta1: torch.Tensor, lam: float) -> float:
    """``J(theta1) = V1(theta1, B(theta1))(rho)``: the leader's value against the follower's
    (soft) best response, the number a run is judged by."""
    pi1 = torch.softmax(theta1.detach(), -1)
    response = soft_best_response(game, pi1, lam)
    with torch.no_grad():
        return float(game.rho @ leader_values(game, pi1, response.probs))


def stackelberg_gradient(game: Game, theta1: torch.Tensor, lam: float, **cg_options) -> LeaderDirection:
    """``grad J(theta1)``: eq. (19) at ``(theta1, B(theta1))`` with the leader's value at ``rho``."""
    if lam <= 0:
        raise ValueError(f"lam = {lam}: grad J needs a differentiable best response, i.e. lam > 0 (Assumption 2)")
    response = soft_best_response(game, torch.softmax(theta1.detach(), -1), lam)
    return exact_leader_direction(game, theta1, response.logits, lam, d1=game.rho, **cg_options)


def best_response_gap(
    game: Game, pi1: torch.Tensor, pi2: torch.Tensor, lam: float, d: torch.Tensor | None = None
) -> float:
    """``V2^lam(pi1, B(pi1))(d) - V2^lam(pi1, pi2)(d)`` (>= 0; 0 exactly at the best response),
    ``d`` defaulting to ``rho``."""
    d = game.rho if d is None else d
    pi1, pi2 = pi1.detach(), pi2.detach()
    response = soft_best_response(game, pi1, lam)
    with torch.no_grad():
        best = d @ policy_values(game, pi1, response.probs, lam).v2
        current = d @ policy_values(game, pi1, pi2, lam).v2
    return float(best - current)


def implicit_best_response(game: Game, theta1: torch.Tensor, lam: float) -> torch.Tensor:
    """The soft best response's logits ``Q*/lam`` with first derivatives in ``theta1`` by implicit
    differentiation of the soft Bellman fixed point ``Q = T(Q, theta1)``:
    ``dQ*/dtheta1 = (I - gamma P^pi1 Pi2)^-1 dT/dtheta1`` (a dense ``S A2`` solve). An
    independent route to ``grad J`` (eq. 18), used for reference solutions and as a check of eq. (19)."""
    if lam <= 0:
        raise ValueError(f"lam = {lam}: the implicit best response needs lam > 0")
    game = dense_for_derivatives(game)
    pi1 = torch.softmax(theta1, -1)
    response = soft_best_response(game, pi1.detach(), lam)
    q, pi2 = response.q, response.probs
    S, A2 = q.shape
    P2, R2 = averaged_mdp(game, pi1)
    live = game.continues()
    v = lam * torch.logsumexp(q / lam, -1) * live  # the soft value of the fixed point (no graph; 0 at terminal states)
    backup = R2 + game.gamma * P2 @ v  # T(Q*, theta1), differentiable in theta1
    with torch.no_grad():
        expectation = torch.zeros(S, S * A2, dtype=q.dtype, device=q.device)  # dV/dQ: pi2, and 0 at terminal states
        expectation[torch.arange(S).repeat_interleave(A2), torch.arange(S * A2)] = (pi2 * live[:, None]).reshape(-1)
        M = (
            torch.eye(S * A2, dtype=q.dtype, device=q.device)
            - game.gamma * P2.detach().reshape(S * A2, S) @ expectation
        )
        M_inverse = torch.linalg.inv(M)
    q_out = q + (M_inverse @ (backup - backup.detach()).reshape(-1)).reshape(S, A2)
    return q_out / lam - (q_out / lam).mean(-1, keepdim=True)


def differentiable_stackelberg_objective(game: Game, theta1: torch.Tensor, lam: float) -> torch.Tensor:
    """``J(theta1)`` as a scalar whose gradient is ``grad J`` (first order only)."""
    game = dense_for_derivatives(game)
    pi1 = torch.softmax(theta1, -1)
    pi2 = torch.softmax(implicit_best_response(game, theta1, lam), -1)
    return game.rho @ policy_values(game, pi1, pi2, lam).v1
