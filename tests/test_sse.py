"""The SSE of small stochastic games (spg/sse.py) against references derived independently: the
one-state LP, closed forms of repeated games, brute force over the follower's pure stationary
policies with a constrained local solver, and a grid of leader policies."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from envs.matrix_games import MATRIX_GAMES
from spg.game import TabularGame, matrix_game, random_game
from spg.reference import strong_stackelberg
from spg.sse import SSEError, cache_path, run_reference, solution_json, strong_response, strong_stackelberg_game
from spg.trainer import train
from tests.helpers import ROOT, TINY, config

# -- independent evaluation: V1, V2 of (pi1, pure b) by a linear solve ----------------------------


def values(P, R1, R2, gamma, pi1, b):
    S = R1.shape[0]
    idx = np.arange(S)
    T = np.einsum("sa,sat->st", pi1, P[idx, :, b])
    r1 = np.einsum("sa,sa->s", pi1, R1[idx, :, b])
    r2 = np.einsum("sa,sa->s", pi1, R2[idx, :, b])
    A = np.eye(S) - gamma * T
    return np.linalg.solve(A, r1), np.linalg.solve(A, r2)


def follower_q(P, R2, gamma, pi1, V2):
    return np.einsum("sa,sab->sb", pi1, R2 + gamma * P @ V2)


def brute_force(game: TabularGame, starts: int = 6, seed: int = 0) -> float:
    """Max over the follower's pure stationary policies ``b`` of the leader's best ``J`` over
    ``pi1`` keeping ``b`` a best response at every state (SLSQP from several starts)."""
    P, R1, R2, rho = (x.numpy() for x in (game.P, game.R1, game.R2, game.rho))
    gamma = game.gamma
    S, A1, A2 = R1.shape
    rng = np.random.default_rng(seed)
    best = -np.inf
    for b in itertools.product(range(A2), repeat=S):
        b = np.array(b)

        def incentive(x, b=b):
            pi1 = x.reshape(S, A1)
            _, V2 = values(P, R1, R2, gamma, pi1, b)
            Q = follower_q(P, R2, gamma, pi1, V2)
            return (V2[:, None] - Q).ravel()

        def objective(x, b=b):
            return -rho @ values(P, R1, R2, gamma, x.reshape(S, A1), b)[0]

        sums = np.kron(np.eye(S), np.ones((1, A1)))
        cons = [{"type": "eq", "fun": lambda x: sums @ x - 1}, {"type": "ineq", "fun": incentive}]
        for k in range(starts):
            x0 = np.full(S * A1, 1.0 / A1) if k == 0 else rng.dirichlet(np.ones(A1), S).ravel()
            result = minimize(
                objective,
                x0,
                method="SLSQP",
                bounds=[(0, 1)] * (S * A1),
                constraints=cons,
                options={"ftol": 1e-12, "maxiter": 300},
            )
            if incentive(result.x).min() >= -1e-8 and abs(sums @ result.x - 1).max() < 1e-8:
                best = max(best, -result.fun)
    return best


# -- one-state games: the LP ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MATRIX_GAMES))
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_matrix_games_match_the_lp(name, gamma):
    spec = MATRIX_GAMES[name]
    game = matrix_game(spec.leader_payoff, spec.follower_payoff, gamma=gamma)
    solution = strong_stackelberg_game(game)
    lp = strong_stackelberg(np.array(spec.leader_payoff), np.array(spec.follower_payoff))
    assert solution.value == pytest.approx(lp.value / (1 - gamma), abs=1e-8)
    assert solution.value == pytest.approx(spec.stackelberg_value / (1 - gamma), abs=1e-8)  # the literature's value
    assert solution.bits == 0 and solution.gap < 1e-5


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (2, 5), (5, 5), (6, 4)])
def test_random_bimatrix_games_match_the_lp(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        L, F = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
        solution = strong_stackelberg_game(matrix_game(L, F))
        assert solution.value == pytest.approx(strong_stackelberg(L, F).value, abs=1e-8)
        x, b = solution.leader_policy[0], solution.follower_policy[0]
        assert x @ L[:, b] == pytest.approx(solution.value, abs=1e-8)
        assert (x @ F[:, b] >= x @ F - 1e-8).all()  # the follower's action is a best response


# -- repeated games: closed forms -----------------------------------------------------------------


def test_alternating_repeated_game_closed_form():
    """Two bimatrix games played in turn (s0 -> s1 -> s0, whatever the actions). The continuation
    does not depend on the actions, so a stationary follower is optimal iff it best-responds to
    each stage game, and the leader's values are V1(s0) = (u0 + g u1) / (1 - g^2): the SSE value
    from s0 is (3.5 + g (-0.6)) / (1 - g^2) with the stage games' SSE values 3.5 (Commitment)
    and -0.6 (the security game), both from the literature."""
    gamma = 0.9
    c, s = MATRIX_GAMES["Commitment"], MATRIX_GAMES["SecurityGame"]
    R1 = np.array([c.leader_payoff, s.leader_payoff])
    R2 = np.array([c.follower_payoff, s.follower_payoff])
    P = np.zeros((2, 2, 2, 2))
    P[0, :, :, 1] = P[1, :, :, 0] = 1.0
    game = TabularGame(P, R1, R2, gamma, [1.0, 0.0])
    solution = strong_stackelberg_game(game)
    assert solution.value == pytest.approx((3.5 + gamma * -0.6) / (1 - gamma**2), abs=1e-8)
    assert solution.leader_policy[0] == pytest.approx([0.5, 0.5], abs=1e-7)
    assert solution.leader_policy[1] == pytest.approx([0.6, 0.4], abs=1e-7)
    assert list(solution.follower_policy) == [1, 1]


def test_repeated_game_is_one_shot_over_one_minus_gamma():
    """A one-state game repeated with discount g: a stationary pair pays u / (1 - g) to each player,
    so the follower's stationary best response is the one-shot one and J_sse = SSE / (1 - g)."""
    spec = MATRIX_GAMES["Commitment"]
    for gamma in (0.5, 0.9, 0.99):
        game = matrix_game(spec.leader_payoff, spec.follower_payoff, gamma=gamma)
        assert strong_stackelberg_game(game).value == pytest.approx(3.5 / (1 - gamma), rel=1e-9)


# -- stochastic games: brute force and a grid -----------------------------------------------------


@pytest.mark.parametrize(
    "S, A1, A2, seed",
    [(2, 2, 2, 0), (2, 2, 2, 1), (2, 2, 3, 2), (3, 2, 2, 3), pytest.param(3, 2, 3, 4, marks=pytest.mark.slow)],
)
def test_random_stochastic_games_match_brute_force(S, A1, A2, seed):
    game = random_game(S, A1, A2, gamma=0.8, seed=seed)
    solution = strong_stackelberg_game(game, time_limit=600)  # decided by the bits, not by the machine's speed
    reference = brute_force(game)
    scale = 1.0 / (1 - 0.8)
    assert solution.upper_bound >= reference - 1e-7 * scale  # the bound holds
    assert solution.value >= reference - 1e-6 * scale  # and the answer is as good as brute force finds
    assert solution.gap <= 1e-3 * scale
    # the answer is attained: its leader policy against its pure follower, the follower optimal everywhere
    P, R1, R2 = (x.numpy() for x in (game.P, game.R1, game.R2))
    V1, V2 = values(P, R1, R2, 0.8, solution.leader_policy, solution.follower_policy)
    assert game.rho.numpy() @ V1 == pytest.approx(solution.value, abs=1e-9)
    assert (V2[:, None] >= follower_q(P, R2, 0.8, solution.leader_policy, V2) - 1e-7).all()


def test_grid_of_leader_policies_on_the_smallest_game():
    """S = 2, A1 = A2 = 2: every leader policy on a 201 x 201 grid, judged against all four pure
    follower policies (those optimal at every state, the best for the leader among them)."""
    game = random_game(2, 2, 2, gamma=0.8, seed=0)
    P, R1, R2, rho = (x.numpy() for x in (game.P, game.R1, game.R2, game.rho))
    p = np.linspace(0, 1, 201)
    grid = np.stack(np.meshgrid(p, p, indexing="ij"), -1).reshape(-1, 2)
    pi1 = np.stack([grid, 1 - grid], -1)  # [K, S, A1]
    best = np.full(len(grid), -np.inf)
    for b in itertools.product(range(2), repeat=2):
        b = np.array(b)
        T = np.einsum("ksa,sat->kst", pi1, P[np.arange(2), :, b])
        A = np.eye(2) - 0.8 * T
        V1 = np.linalg.solve(A, np.einsum("ksa,sa->ks", pi1, R1[np.arange(2), :, b])[..., None])[..., 0]
        V2 = np.linalg.solve(A, np.einsum("ksa,sa->ks", pi1, R2[np.arange(2), :, b])[..., None])[..., 0]
        Q = np.einsum("ksa,ksab->ksb", pi1, R2[None] + 0.8 * np.einsum("sabt,kt->ksab", P, V2))
        optimal = (V2[..., None] >= Q - 1e-12).all((1, 2))
        best = np.where(optimal, np.maximum(best, V1 @ rho), best)
    solution = strong_stackelberg_game(game)
    assert best.max() <= solution.upper_bound + 1e-9
    assert solution.value >= best.max() - 1e-9
    assert solution.value - best.max() <= 0.01  # a grid step of 0.005 costs at most this here


# -- judging a leader against the exact best response ---------------------------------------------


def test_strong_response_breaks_ties_for_the_leader():
    spec = MATRIX_GAMES["Commitment"]
    game = matrix_game(spec.leader_payoff, spec.follower_payoff)
    J, b = strong_response(game, [[0.5, 0.5]])  # the follower is indifferent: R, the leader's choice
    assert J == pytest.approx(3.5) and b[0] == 1
    J, b = strong_response(game, [[0.51, 0.49]])  # follower payoffs 0.51 (L) > 0.49 (R): L
    assert J == pytest.approx(0.51 * 2 + 0.49 * 1) and b[0] == 0


# -- limits, errors, the script, the cache --------------------------------------------------------


def test_too_large_game_is_one_line():
    with pytest.raises(SSEError) as error:
        strong_stackelberg_game(random_game(12, 3, 3, seed=0))
    message = str(error.value)
    assert "\n" not in message and len(message) < 300 and "docs/sse.md" in message


def test_time_limit_without_solution_is_one_line():
    game = random_game(3, 3, 3, gamma=0.9, seed=0)  # within the limits, far from solved in 0.5 s
    try:
        solution = strong_stackelberg_game(game, time_limit=0.5)
    except SSEError as error:
        assert "\n" not in str(error) and "time" in str(error)
    else:
        assert solution.status in ("optimal", "gap above tol")


def test_reference_script_sse(tmp_path):
    spec = MATRIX_GAMES["SecurityGame"]
    path = tmp_path / "security.npz"
    matrix_game(spec.leader_payoff, spec.follower_payoff).to_npz(path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reference.py"), "--sse", str(path), "--write-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "-0.6" in done.stdout and "gap" in done.stdout
    cached = json.loads(cache_path(path).read_text())
    assert cached["value"] == pytest.approx(-0.6, abs=1e-8)
    big = tmp_path / "big.npz"
    random_game(12, 3, 3, seed=0).to_npz(big)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reference.py"), "--sse", str(big)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_run_reference_computes_exact_programs_at_startup():
    spec = MATRIX_GAMES["SecurityGame"]
    value, line = run_reference(matrix_game(spec.leader_payoff, spec.follower_payoff, gamma=0.5))
    assert value == pytest.approx(-0.6 / 0.5, abs=1e-8) and "SSE value" in line
    value, line = run_reference(random_game(3, 2, 2, seed=0))  # bilinear: only from a cache
    assert value is None and "--write-cache" in line and "\n" not in line


def test_solution_json_round_trip():
    spec = MATRIX_GAMES["Chicken"]
    game = matrix_game(spec.leader_payoff, spec.follower_payoff)
    out = solution_json(game, strong_stackelberg_game(game))
    assert json.loads(json.dumps(out))["value"] == pytest.approx(1.0) and out["fingerprint"] == game.fingerprint()


# -- the dashboard ----------------------------------------------------------------------------------


TINY_FILE_RUN = [o for o in TINY if not o.startswith("env.")]


def _scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return events


def test_tiny_run_on_a_game_file_reads_the_cached_sse(tmp_path):
    """A 2-state game with leader-dependent transitions, its SSE cached beside it: game/J_sse_gap at
    each evaluation is brute force's SSE value minus the returned leader's J against the exact response."""
    game = random_game(2, 2, 2, gamma=0.8, seed=0)
    path = tmp_path / "game.npz"
    game.to_npz(path)
    cache_path(path).write_text(json.dumps(solution_json(game, strong_stackelberg_game(game))))
    run_dir = tmp_path / "run"
    train(config(*TINY_FILE_RUN, "env=file", f"env.path={path}"), run_dir=run_dir)
    events = _scalars(run_dir)
    assert "game/J_sse_gap" in events.Tags()["scalars"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["game/J_sse_gap"] == pytest.approx(events.Scalars("game/J_sse_gap")[-1].value, rel=1e-5, abs=1e-6)
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    J, _ = strong_response(game, torch.softmax(state["leader"]["logits"], -1).numpy())
    assert metrics["game/J_sse_gap"] == pytest.approx(brute_force(game) - J, abs=1e-6)


def test_tiny_run_without_a_reference_has_no_tag(tiny_run):
    """The tiny run's 3-state game has leader-dependent transitions and no cache: no tag, same numbers."""
    assert "game/J_sse_gap" not in _scalars(tiny_run).Tags()["scalars"]
