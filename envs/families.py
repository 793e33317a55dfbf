"""Seeded game families for studying convergence: security games with ``n`` targets, random
bimatrix games (one-shot or repeated), and games whose follower payoff arrives only after a delay.

Every builder returns a :class:`~spg.game.TabularGame`; together with :func:`spg.game.random_game`,
:func:`spg.sparse_game.random_sparse_game`, :func:`envs.patrolling.patrolling_game` and
:func:`envs.epidemic.epidemic_game` they make the games of ``scripts/convergence.py``.
"""

from __future__ import annotations

import numpy as np

from spg.game import TabularGame, matrix_game


def security_game(num_targets: int = 3, *, seed: int = 0, gamma: float = 0.0) -> TabularGame:
    """A one-resource security game (Kiekintveld et al., AAMAS 2009): the defender (leader)
    covers one of ``num_targets`` targets, the attacker (follower) attacks one. Seeded payoffs:
    a covered attack rewards the defender ``U_d^c[t] in [0, 1]`` and costs the attacker
    ``U_a^c[t] in [-1, 0]``; an uncovered one costs the defender ``U_d^u[t] in [-1, 0]`` and
    rewards the attacker ``U_a^u[t] in [0, 1]``. With ``gamma > 0`` the game is repeated."""
    if num_targets < 2:
        raise ValueError(f"num_targets = {num_targets}: a security game needs at least 2 targets")
    rng = np.random.default_rng(seed)
    covered_d, uncovered_d = rng.uniform(0, 1, num_targets), rng.uniform(-1, 0, num_targets)
    covered_a, uncovered_a = rng.uniform(-1, 0, num_targets), rng.uniform(0, 1, num_targets)
    is_covered = np.eye(num_targets, dtype=bool)  # [covered target, attacked target]
    leader = np.where(is_covered, covered_d[None, :], uncovered_d[None, :])
    follower = np.where(is_covered, covered_a[None, :], uncovered_a[None, :])
    return matrix_game(leader, follower, gamma=gamma)


def random_matrix_game(num_leader_actions: int, num_follower_actions: int, *, seed: int = 0, gamma: float = 0.0) -> TabularGame:
    """A bimatrix game with payoffs uniform in [0, 1] (repeated when ``gamma > 0``)."""
    rng = np.random.default_rng(seed)
    shape = (num_leader_actions, num_follower_actions)
    return matrix_game(rng.uniform(0, 1, shape), rng.uniform(0, 1, shape), gamma=gamma)


def delayed_payoff_game(
    num_leader_actions: int = 3, delay: int = 2, *, seed: int = 0, gamma: float = 0.9, cost: float = 0.3
) -> TabularGame:
    """A game in which the follower gains only by far-sighted play. In the home state 0 the
    follower either takes a myopic payoff ``m[a1]`` (stays home) or invests at ``cost`` and
    enters a chain of ``delay`` states that remembers the leader's action ``a1`` at investment;
    leaving the chain pays the follower ``F[a1]`` and the leader ``L[a1]``, then returns home.
    The leader's home payoffs ``u[a1, a2]`` make what it commits to at home matter. States:
    ``0`` (home), then ``1 + k * A1 + a1`` for chain step ``k < delay``; ``rho`` = home."""
    if delay < 1 or num_leader_actions < 2:
        raise ValueError("delayed_payoff_game needs delay >= 1 and at least 2 leader actions")
    rng = np.random.default_rng(seed)
    A1, A2 = num_leader_actions, 2
    S = 1 + delay * A1
    myopic, home_leader = rng.uniform(0, 1, A1), rng.uniform(0, 1, (A1, A2))
    final_follower, final_leader = rng.uniform(0, 3, A1), rng.uniform(0, 3, A1)
    P = np.zeros((S, A1, A2, S))
    R1 = np.zeros((S, A1, A2))
    R2 = np.zeros((S, A1, A2))
    for a1 in range(A1):
        R1[0, a1] = home_leader[a1]
        R2[0, a1, 0], R2[0, a1, 1] = myopic[a1], -cost
        P[0, a1, 0, 0] = 1.0
        P[0, a1, 1, 1 + a1] = 1.0
        for k in range(delay):
            s = 1 + k * A1 + a1
            P[s, :, :, 1 + (k + 1) * A1 + a1 if k + 1 < delay else 0] = 1.0
            if k + 1 == delay:
                R1[s], R2[s] = final_leader[a1], final_follower[a1]
    rho = np.zeros(S)
    rho[0] = 1.0
    return TabularGame(P, R1, R2, gamma, rho)
