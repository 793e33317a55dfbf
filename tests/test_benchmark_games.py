"""Benchmark games and their reference solutions: LP solutions by hand, quantal values tending to
the strong Stackelberg value, hand-computed transition and reward entries, and exact_spg reaching
the reference value."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401
from envs.epidemic import epidemic_game
from envs.matrix_games import MATRIX_GAMES
from envs.patrolling import graph_adjacency, patrolling_game, state_index
from envs.registry import BENCHMARK_GAMES
from spg import exact
from spg.game import matrix_game
from spg.objectives import ExactObjectives
from spg.reference import quantal_stackelberg, simultaneous_play, strong_stackelberg
from tests.helpers import learner


def test_lp_solves_the_conitzer_sandholm_game():
    spec = MATRIX_GAMES["Commitment"]
    sse = strong_stackelberg(spec.leader_payoff, spec.follower_payoff)
    assert sse.value == pytest.approx(3.5) and sse.follower_action == 1
    assert np.allclose(sse.leader_policy, [0.5, 0.5])


def test_lp_breaks_a_three_way_tie_in_the_leaders_favour():
    # follower payoffs: col0 = p, col1 = 1 - p, col2 = 0.5; all tie at p = 1/2, where the leader
    # earns 2(1 - p) = 1 (col0), 3p = 1.5 (col1) or 1 (col2): the SSE picks col1
    L = [[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]]
    F = [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]
    sse = strong_stackelberg(L, F)
    assert sse.value == pytest.approx(1.5) and sse.follower_action == 1
    assert np.allclose(sse.leader_policy, [0.5, 0.5])


@pytest.mark.parametrize("name", list(MATRIX_GAMES))
def test_matrix_games_have_their_documented_stackelberg_value(name):
    spec = MATRIX_GAMES[name]
    assert strong_stackelberg(spec.leader_payoff, spec.follower_payoff).value == pytest.approx(
        spec.stackelberg_value, abs=1e-9
    )
    assert spec.source and spec.note


def test_quantal_value_tends_to_the_strong_stackelberg_value():
    spec = MATRIX_GAMES["Commitment"]
    game = matrix_game(spec.leader_payoff, spec.follower_payoff)
    errors = [3.5 - quantal_stackelberg(game, lam).value for lam in (0.3, 0.1, 0.03, 0.01)]
    assert all(e > 0 for e in errors) and errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.05


@pytest.mark.parametrize("env_id", BENCHMARK_GAMES)
def test_every_benchmark_game_validates_and_passes_check_env(env_id):
    env = gym.make(env_id).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert not [w for w in caught if "must be a float" not in str(w.message)]
    assert env.game.num_states >= 1


def test_patrolling_entries_by_hand():
    values = [1.0, 3.0, 2.0]
    game = patrolling_game(
        "line",
        3,
        defender_values=values,
        attacker_values=[0.5, 4.0, 1.0],
        slip=0.1,
        attack_duration=1,
        capture_reward=1.5,
        penalty=2.0,
    )
    assert game.num_states == 3 and game.num_actions == (3, 4)  # stay + 2 neighbours; wait + 3 targets
    s = state_index(3, 1, 0, None, 0)
    # at node 0 the defender moves to node 1 (its only neighbour) while the attacker hits target 1
    assert float(game.P[s, 1, 2, 1]) == pytest.approx(0.9) and float(game.P[s, 1, 2, 0]) == pytest.approx(0.1)
    assert float(game.R1[s, 1, 2]) == pytest.approx(0.9 * 1.5 - 0.1 * 3.0)
    assert float(game.R2[s, 1, 2]) == pytest.approx(-0.9 * 2.0 + 0.1 * 4.0)
    assert float(game.P[s, 2, 0, 0]) == 1.0  # no second neighbour at an end of the line: stay
    assert float(game.R1[s, 1, 0]) == 0.0 and float(game.R2[s, 1, 0]) == 0.0  # waiting pays nothing


def test_patrolling_attack_in_progress_by_hand():
    game = patrolling_game("ring", 3, slip=0.0, attack_duration=2, capture_reward=1.0, penalty=2.0)
    D, n = 2, 3
    start = state_index(n, D, 0, None, 0)
    # attacking node 2 from idle: the defender goes to node 1 (not 2), so the attack continues
    assert float(game.P[start, 1, 3, state_index(n, D, 1, 2, 1)]) == 1.0
    assert float(game.R1[start, 1, 3]) == 0.0
    middle = state_index(n, D, 1, 2, 1)
    # one visit left; the defender stays at node 1: the attack succeeds, whatever the attacker does
    for a2 in range(4):
        assert float(game.P[middle, 0, a2, state_index(n, D, 1, None, 0)]) == 1.0
        assert float(game.R2[middle, 0, a2]) == pytest.approx(2.0)  # default values linspace(1, 2, 3)[2]
    assert np.array_equal(graph_adjacency("grid", 4), [[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0]])
    with pytest.raises(ValueError, match="symmetric 0/1 adjacency"):
        patrolling_game([[0, 1], [0, 0]])


def test_epidemic_entries_by_hand():
    game = epidemic_game(levels=3)
    # level 1 (prevalence 1/2), subsidy 0.5, the citizen tests
    up = 0.6 * (2 / 3) * (1 - 0.6)
    down = 0.15 + 0.6 * 0.5
    assert float(game.P[1, 1, 1, 2]) == pytest.approx(up)
    assert float(game.P[1, 1, 1, 0]) == pytest.approx(down)
    assert float(game.P[1, 1, 1, 1]) == pytest.approx(1 - up - down)
    assert float(game.R1[1, 1, 1]) == pytest.approx(-6.0 * 0.5 - 0.5)
    assert float(game.R2[1, 1, 1]) == pytest.approx(-1.0 * 0.5 * 0.8 - 0.5)
    assert float(game.R2[2, 0, 0]) == pytest.approx(-1.0)  # full prevalence, no test
    assert float(game.P[0, 2, 0, 1]) == pytest.approx(0.6 / 3)  # infections rise from level 0


def exact_spg(game, lam, iterations=300):
    """``exact_spg`` at its shipped defaults from uniform policies; the final ``J``."""
    leader, _, algorithm = learner(game, "exact_spg", f"algo.lam={lam}")
    source = ExactObjectives(game)
    for _ in range(iterations):
        algorithm.step(source)
    return exact.stackelberg_objective(game, leader.logits, lam)


@pytest.mark.parametrize("env_id", [g for g in BENCHMARK_GAMES if "BattleOfTheSexes" not in g])
def test_exact_spg_reaches_the_reference_value(env_id):
    game = gym.make(env_id).unwrapped.game
    lam = 0.1 if game.num_states == 1 else 0.5  # the multi-state games' values are ~10x larger
    reference = quantal_stackelberg(game, lam).value
    scale = float(game.R1.max() - game.R1.min()) / (1 - game.gamma)
    assert exact_spg(game, lam) >= reference - 0.01 * scale


def test_battle_of_the_sexes_uniform_start_lies_in_the_other_basin():
    # J'(p) at the uniform leader is negative: ascent from there reaches the local maximum
    # J = 1 (commit to the follower's event), not the quantal optimum near 2.
    game = gym.make("spg/BattleOfTheSexes-v0").unwrapped.game
    lam = 0.1
    gradient = exact.stackelberg_gradient(game, torch.zeros(1, 2, dtype=torch.float64), lam).total
    assert float(gradient[0, 0] - gradient[0, 1]) < 0
    assert quantal_stackelberg(game, lam).value > 1.99
    assert exact_spg(game, lam) == pytest.approx(1.0, abs=0.01)


def test_simultaneous_play_misses_commitment():
    spec = MATRIX_GAMES["Commitment"]
    outcome = simultaneous_play(matrix_game(spec.leader_payoff, spec.follower_payoff), 0.1, iterations=500)
    assert outcome.J == pytest.approx(2.0, abs=0.01) and outcome.leader_value == pytest.approx(2.0, abs=0.01)
