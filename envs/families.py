"""Seeded game families for studying convergence: security games with ``n`` targets, random
bimatrix games (one-shot or repeated), and games whose follower payoff arrives only after a delay.

Every builder returns a :class:`~spg.game.TabularGame`; together with :func:`spg.game.random_game`,
:func:`spg.sparse_game.random_sparse_game`, :func:`envs.patrolling.patrolling_game` and
:func:`envs.epidemic.epidemic_game` they make the games of ``scripts/convergence.py``.
"""

from __future__ import annotations

import numpy as np

from spg.game import TabularGame, matrix_game, random_game
from spg.sparse_game import SparseTabularGame, random_sparse_game


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


def random_matrix_game(
    num_leader_actions: int, num_follower_actions: int, *, seed: int = 0, gamma: float = 0.0
) -> TabularGame:
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


def convergence_games() -> list[tuple[str, str, TabularGame | SparseTabularGame, float]]:
    """The games of ``scripts/convergence.py``: ``(name, family, game, lam)``, seeded and varied
    (one-state classics, random bimatrix games one-shot and repeated, security games with 2 to 6
    targets, patrolling on several graphs, epidemic testing, random stochastic games from 3 to 30
    states dense and sparse, delayed-payoff games), with ``lam`` in {0.02, 0.05, 0.1, 0.5}."""
    from envs.epidemic import epidemic_game
    from envs.matrix_games import MATRIX_GAMES
    from envs.patrolling import patrolling_game

    games = []
    for name, spec in MATRIX_GAMES.items():
        games.append((name, "one-state classic", matrix_game(spec.leader_payoff, spec.follower_payoff), 0.1))
    commitment = MATRIX_GAMES["Commitment"]
    for gamma, lam in ((0.5, 0.05), (0.9, 0.1)):
        game = matrix_game(commitment.leader_payoff, commitment.follower_payoff, gamma=gamma)
        games.append((f"Commitment-repeated-g{gamma}", "repeated matrix game", game, lam))
    for i, (A1, A2, lam) in enumerate(((2, 2, 0.05), (3, 3, 0.05), (2, 5, 0.02), (4, 3, 0.1), (5, 5, 0.05))):
        games.append((f"random-{A1}x{A2}", "random matrix game", random_matrix_game(A1, A2, seed=10 + i), lam))
    for i, (A1, A2, gamma, lam) in enumerate(
        ((2, 2, 0.5, 0.05), (3, 3, 0.5, 0.1), (3, 3, 0.9, 0.05), (5, 5, 0.9, 0.1), (4, 2, 0.9, 0.02))
    ):
        game = random_matrix_game(A1, A2, seed=20 + i, gamma=gamma)
        games.append((f"random-{A1}x{A2}-repeated-g{gamma}", "repeated matrix game", game, lam))
    for n, lam in ((2, 0.05), (3, 0.02), (4, 0.05), (5, 0.1), (6, 0.05)):
        games.append((f"security-{n}-targets", "security game", security_game(n, seed=30 + n), lam))
    games.append(("security-3-targets-repeated-g0.5", "security game", security_game(3, seed=40, gamma=0.5), 0.05))
    for graph, n, lam in (("ring", 4, 0.05), ("line", 4, 0.1), ("ring", 5, 0.5), ("line", 3, 0.05)):
        games.append((f"patrolling-{graph}-{n}", "patrolling", patrolling_game(graph, n), lam))
    games.append(("epidemic-5-levels", "epidemic testing", epidemic_game(), 0.05))
    games.append(("epidemic-4-levels", "epidemic testing", epidemic_game(levels=4, gamma=0.8), 0.1))
    for S, A1, A2, gamma, lam in (
        (3, 2, 2, 0.8, 0.1),
        (5, 3, 3, 0.9, 0.05),
        (10, 3, 3, 0.9, 0.05),
        (20, 4, 4, 0.8, 0.1),
        (30, 3, 3, 0.9, 0.5),
        (8, 2, 4, 0.9, 0.02),
    ):
        games.append(
            (f"random-{S}-states", "random stochastic game", random_game(S, A1, A2, gamma=gamma, seed=50 + S), lam)
        )
    for S, lam in ((10, 0.05), (30, 0.1)):
        games.append(
            (f"sparse-{S}-states", "random sparse game", random_sparse_game(S, 3, 3, 3, gamma=0.9, seed=60 + S), lam)
        )
    for A1, delay, lam in ((2, 1, 0.05), (3, 2, 0.05), (3, 3, 0.1)):
        games.append(
            (
                f"delayed-{A1}-actions-delay-{delay}",
                "delayed payoff",
                delayed_payoff_game(A1, delay, seed=70 + delay),
                lam,
            )
        )
    return games


def scaled(game: TabularGame, factor: float) -> TabularGame:
    """``game`` with both players' rewards multiplied by ``factor`` (values scale alike)."""
    terminal = game.terminal.cpu().numpy() if game.terminal is not None else None
    return TabularGame(game.P, factor * game.R1, factor * game.R2, game.gamma, game.rho, game.mu, terminal)


def holdout_games() -> list[tuple[str, str, TabularGame | SparseTabularGame, float]]:
    """Games the shipped defaults were not chosen on (``scripts/convergence.py --suite holdout``):
    rewards 100 times larger, security games at other ``lam``, grid soccer (goals worth 100)
    episodic and absorbing, and random games of 50 and 100 states."""
    from envs.soccer import soccer_game

    games = [
        ("security-3-targets-x100", "rewards x100", scaled(security_game(3, seed=81), 100.0), 5.0),
        ("random-6-states-x100", "rewards x100", scaled(random_game(6, 3, 3, gamma=0.9, seed=82), 100.0), 5.0),
    ]
    for n, lam, seed in ((2, 0.1, 83), (4, 0.02, 84), (6, 0.1, 85)):
        games.append((f"security-{n}-targets-lam{lam}", "security game, other lam", security_game(n, seed=seed), lam))
    for episodic in (True, False):
        games.append(
            (
                f"soccer-2x3-{'episodic' if episodic else 'absorbing'}",
                "soccer",
                soccer_game(2, 3, episodic=episodic),
                1.0,
            )
        )
    games.append(("random-50-states", "large random game", random_game(50, 3, 3, gamma=0.8, seed=86), 0.1))
    games.append(("sparse-100-states", "large random game", random_sparse_game(100, 3, 3, 4, gamma=0.9, seed=87), 0.05))
    return games


def drawn_games(count: int = 16, *, seed: int = 2026) -> list[tuple[str, str, TabularGame | SparseTabularGame, float]]:
    """``count`` games drawn at random from the families above (``scripts/convergence.py --suite
    drawn``), for judging defaults on games nobody looked at first: dense random stochastic games of
    4 to 40 states, sparse ones of 10 to 60, security games of 2 to 8 targets (one-shot or
    repeated), repeated random bimatrix games and delayed-payoff games, with 2 to 5 actions a
    player, ``gamma`` in {0.8, 0.9} and ``lam`` in {0.02, 0.05, 0.1, 0.3}. Same ``seed``, same games."""
    rng = np.random.default_rng(seed)
    families = (
        "random stochastic game",
        "random sparse game",
        "security game",
        "repeated matrix game",
        "delayed payoff",
    )
    games = []
    for k in range(count):
        family = families[k % len(families)]
        s = int(rng.integers(1_000_000))
        A1, A2 = (int(a) for a in rng.integers(2, 6, size=2))
        gamma = float(rng.choice([0.8, 0.9]))
        lam = float(rng.choice([0.02, 0.05, 0.1, 0.3]))
        if family == "random stochastic game":
            S = int(rng.integers(4, 41))
            name, game = f"drawn-{k}-random-{S}-states-{A1}x{A2}", random_game(S, A1, A2, gamma=gamma, seed=s)
        elif family == "random sparse game":
            S = int(rng.integers(10, 61))
            name, game = (
                f"drawn-{k}-sparse-{S}-states-{A1}x{A2}",
                random_sparse_game(S, A1, A2, int(rng.integers(2, 5)), gamma=gamma, seed=s),
            )
        elif family == "security game":
            n, repeated = int(rng.integers(2, 9)), bool(rng.integers(2))
            name, game = (
                f"drawn-{k}-security-{n}-targets{'-repeated' if repeated else ''}",
                security_game(n, seed=s, gamma=0.5 if repeated else 0.0),
            )
        elif family == "repeated matrix game":
            name, game = (
                f"drawn-{k}-random-{A1}x{A2}-repeated-g{gamma}",
                random_matrix_game(A1, A2, seed=s, gamma=gamma),
            )
        else:
            delay = int(rng.integers(1, 4))
            name, game = (
                f"drawn-{k}-delayed-{A1}-actions-delay-{delay}",
                delayed_payoff_game(A1, delay, seed=s, gamma=gamma),
            )
        games.append((name, family, game, lam))
    return games
