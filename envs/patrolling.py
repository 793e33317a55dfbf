"""Adversarial patrolling: a defender (leader) patrols the nodes of a graph; an attacker
(follower) observes the defender's position and waits or attacks a target.

State ``(p, k, r)``: the defender at node ``p``; ``k`` the target under attack (or none) with
``r`` more visits to survive. Actions: the defender stays (0) or moves to its ``i``-th neighbour
(``i = 1..max_degree``; an action beyond a node's degree stays); the attacker waits (0) or attacks
target ``k`` (``k + 1``), ignored while an attack is in progress. The defender's move succeeds
with probability ``1 - slip`` and otherwise leaves it in place.

An attack on ``k`` lasts ``attack_duration`` steps, counting the one it starts in: after each
of these steps, if the defender stands on ``k`` the attacker is caught (attacker ``-penalty``,
defender ``+capture_reward``); if it survives all of them it succeeds (attacker
``+attacker_values[k]``, defender ``-defender_values[k]``). Rewards are expectations over the
defender's slip, so ``R[s, a1, a2]`` is what the step pays on average. General-sum whenever
the values differ or ``penalty != capture_reward``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spg.game import TabularGame


def graph_adjacency(graph: str | Sequence[Sequence[int]], num_nodes: int = 5) -> np.ndarray:
    """A symmetric 0/1 adjacency matrix: ``ring``, ``line`` or ``grid`` (``num_nodes`` a square)
    of ``num_nodes`` nodes, or a user's matrix."""
    if not isinstance(graph, str):
        A = np.asarray(graph, dtype=int)
        if A.ndim != 2 or A.shape[0] != A.shape[1] or not np.array_equal(A, A.T) or not np.isin(A, (0, 1)).all():
            raise ValueError("a patrolling graph must be a symmetric 0/1 adjacency matrix [n, n]")
        np.fill_diagonal(A, 0)
        return A
    n = num_nodes
    if n < 2:
        raise ValueError(f"num_nodes = {n}: a patrolling graph needs at least 2 nodes")
    A = np.zeros((n, n), dtype=int)
    if graph in ("ring", "line"):
        for i in range(n - 1):
            A[i, i + 1] = A[i + 1, i] = 1
        if graph == "ring" and n > 2:
            A[0, n - 1] = A[n - 1, 0] = 1
    elif graph == "grid":
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"num_nodes = {n}: a grid needs a square number of nodes")
        for i in range(n):
            r, c = divmod(i, side)
            if c + 1 < side:
                A[i, i + 1] = A[i + 1, i] = 1
            if r + 1 < side:
                A[i, i + side] = A[i + side, i] = 1
    else:
        raise ValueError(f"graph = {graph!r}: choose ring, line, grid or an adjacency matrix")
    return A


def patrolling_game(
    graph: str | Sequence[Sequence[int]] = "ring",
    num_nodes: int = 5,
    defender_values: Sequence[float] | None = None,
    attacker_values: Sequence[float] | None = None,
    slip: float = 0.1,
    attack_duration: int = 2,
    capture_reward: float = 1.0,
    penalty: float = 2.0,
    gamma: float = 0.9,
) -> TabularGame:
    """The patrolling game as a :class:`TabularGame` (states indexed as in :func:`state_index`)."""
    A = graph_adjacency(graph, num_nodes)
    n = A.shape[0]
    default_values = np.linspace(1.0, 2.0, n)
    dv = np.asarray(default_values if defender_values is None else defender_values, dtype=float)
    av = np.asarray(dv if attacker_values is None else attacker_values, dtype=float)
    if dv.shape != (n,) or av.shape != (n,):
        raise ValueError(f"defender_values and attacker_values need one value per node ({n})")
    if not 0.0 <= slip <= 1.0:
        raise ValueError(f"slip = {slip}: a probability in [0, 1]")
    if attack_duration < 1:
        raise ValueError(f"attack_duration = {attack_duration}: at least 1 step")
    neighbours = [np.flatnonzero(A[p]) for p in range(n)]
    A1 = 1 + max(len(nb) for nb in neighbours)
    A2 = 1 + n
    D = attack_duration
    S = n * (1 + n * (D - 1))
    P = np.zeros((S, A1, A2, S))
    R1 = np.zeros((S, A1, A2))
    R2 = np.zeros((S, A1, A2))
    for p in range(n):
        for k in [None, *range(n)]:
            for r in [0] if k is None else range(1, D):
                s = state_index(n, D, p, k, r)
                for a1 in range(A1):
                    target = neighbours[p][a1 - 1] if 1 <= a1 <= len(neighbours[p]) else p
                    moves = [(target, 1.0 - slip), (p, slip)] if target != p else [(p, 1.0)]
                    for a2 in range(A2):
                        attacked, remaining = (k, r) if k is not None else ((a2 - 1, D) if a2 > 0 else (None, 0))
                        for q, prob in moves:
                            if prob == 0.0:
                                continue
                            if attacked is None:
                                P[s, a1, a2, state_index(n, D, q, None, 0)] += prob
                            elif q == attacked:  # caught
                                R1[s, a1, a2] += prob * capture_reward
                                R2[s, a1, a2] -= prob * penalty
                                P[s, a1, a2, state_index(n, D, q, None, 0)] += prob
                            elif remaining == 1:  # the attack succeeds
                                R1[s, a1, a2] -= prob * dv[attacked]
                                R2[s, a1, a2] += prob * av[attacked]
                                P[s, a1, a2, state_index(n, D, q, None, 0)] += prob
                            else:
                                P[s, a1, a2, state_index(n, D, q, attacked, remaining - 1)] += prob
    rho = np.zeros(S)
    rho[[state_index(n, D, p, None, 0) for p in range(n)]] = 1.0 / n
    return TabularGame(P, R1, R2, gamma, rho)


def state_index(num_nodes: int, attack_duration: int, position: int, target: int | None, remaining: int) -> int:
    """Index of state ``(position, target, remaining)``: first the ``n`` idle states, then
    attacks in progress ordered by position, target and remaining visits ``1..D-1``."""
    if target is None:
        return position
    D = attack_duration
    return num_nodes + (position * num_nodes + target) * (D - 1) + (remaining - 1)
