"""The equilibrium check's local-ascent probe (``spg.evaluation.local_ascent_metrics``): a leader
on a plateau of ``J`` passes the gradient test yet is flagged; a leader at a local maximum passes."""

import pytest
import torch

from envs.matrix_games import MATRIX_GAMES
from spg import exact
from spg.evaluation import (
    PROBE_SHARE,
    equilibrium_problems,
    exact_metrics,
    j_motion,
    last_quarter,
    local_ascent_metrics,
    value_scale,
)
from spg.game import matrix_game
from spg.policy import TabularSoftmaxPolicy
from spg.reference import ascend, quantal_stackelberg

COMMITMENT = MATRIX_GAMES["Commitment"]
GAME = matrix_game(COMMITMENT.leader_payoff, COMMITMENT.follower_payoff)
LAM = 0.1


def check(logits: list[float]) -> tuple[dict, list[str]]:
    leader = TabularSoftmaxPolicy(1, 2, logits=torch.tensor([logits], dtype=torch.float64))
    pi1 = leader.probs().detach()
    follower = TabularSoftmaxPolicy(
        1, 2, logits=exact.soft_best_response(GAME, pi1, LAM).logits
    )  # the follower best-responds
    metrics = {**exact_metrics(GAME, leader, follower, LAM), **local_ascent_metrics(GAME, leader, LAM)}
    return metrics, equilibrium_problems(metrics, value_scale(GAME))


def test_a_leader_on_a_plateau_passes_the_gradient_test_and_fails_the_probe():
    # the leader plays its second row with probability 1 - e^-6: the softmax is saturated, ||grad J||
    # is 0.0035 (under 1% of the value scale 4), and J = 3.002 is 65% of the way from the uniform
    # leader's 2.5 to the quantal Stackelberg value 3.267 (exhaustive search over the simplex)
    metrics, problems = check([0.0, 6.0])
    J_star = quantal_stackelberg(GAME, LAM).value
    assert metrics["game/J_gradient_norm"] < 0.01 * value_scale(GAME) and metrics["game/best_response_gap"] < 1e-9
    assert metrics["game/J_uniform"] == exact.stackelberg_objective(GAME, torch.zeros(1, 2, dtype=torch.float64), LAM)
    assert metrics["game/J"] < 0.7 * J_star + 0.3 * metrics["game/J_uniform"]
    assert metrics["game/J_local_ascent"] > metrics["game/J"] + 0.9 * (
        J_star - metrics["game/J"]
    )  # the probe climbs most of the rest
    assert len(problems) == 1 and "exact ascent steps from the final leader" in problems[0], problems


def test_a_leader_at_the_stackelberg_value_passes_the_probe():
    theta = ascend(GAME, torch.zeros(1, 2, dtype=torch.float64), LAM, iterations=400)
    metrics, problems = check(theta[0].tolist())
    J_star = quantal_stackelberg(GAME, LAM).value
    assert abs(metrics["game/J"] - J_star) < 1e-4 and problems == [], problems
    shortfall = (1 - PROBE_SHARE) * (metrics["game/J_local_ascent"] - metrics["game/J_uniform"])
    assert metrics["game/J_local_ascent"] - metrics["game/J"] < shortfall


# J over the last quarter of a 300-iteration run, from evaluations every 25 iterations: the quarter
# starts at the evaluation at iteration 225 (the last one at or before 3/4 of the run)
EARLY = [(0, -1.52), (100, -1.50), (200, -1.45)]
RISING = EARLY + [(225, -1.60), (250, -1.55), (275, -1.50), (300, -1.45)]  # up 0.05 per evaluation
SWINGING = EARLY + [
    (225, -1.43),
    (250, -1.63),
    (275, -1.63),
    (300, -1.43),
]  # the Inspection swing, ending where it began
SCALE = 2.0  # a value scale: 0.1% of it is 0.002


def quarter(history):
    return {f"game/{key}": value for key, value in last_quarter(history, 300).items()}


def test_a_climb_over_the_last_quarter_is_still_rising_and_asks_for_more_iterations():
    moved = quarter(RISING)
    # a straight line: the least-squares trend is the whole rise, which is the whole spread
    assert moved["game/J_rise_last_quarter"] == pytest.approx(0.15)
    assert moved["game/J_trend_last_quarter"] == pytest.approx(0.15) and moved[
        "game/J_spread_last_quarter"
    ] == pytest.approx(0.15)
    state, advice = j_motion(moved, SCALE)
    assert state.startswith("still rising (trend +0.15") and advice == "more trainer.iterations"
    assert "it is still rising" in equilibrium_problems(moved, SCALE)[0]


def test_a_swing_without_trend_over_the_last_quarter_is_an_oscillation_and_asks_for_smaller_steps():
    moved = quarter(SWINGING)
    # x centred at -1.5, -0.5, 0.5, 1.5 (in evaluations) and J - mean = +0.1, -0.1, -0.1, +0.1: no trend at all
    assert moved["game/J_rise_last_quarter"] == pytest.approx(0.0, abs=1e-12)
    assert moved["game/J_trend_last_quarter"] == pytest.approx(0.0, abs=1e-12)
    assert moved["game/J_spread_last_quarter"] == pytest.approx(0.2)
    state, advice = j_motion(moved, SCALE)
    assert state.startswith("oscillating (spread 0.2") and "more trainer.iterations" not in advice
    assert all(setting in advice for setting in ("algo.leader.lr", "algo.averaging", "trainer.batch_size"))
    assert equilibrium_problems(moved, SCALE) == []  # it ends where it began: no rise to flag
    moved["game/J_rise_last_quarter"] = 0.01  # a swing that happens to end higher is still called what it is
    assert "it is oscillating" in equilibrium_problems(moved, SCALE)[0]


def test_a_settled_J_and_too_few_evaluations_give_no_diagnosis():
    settled = EARLY + [(225, -1.4281), (250, -1.4282), (275, -1.4280), (300, -1.4281)]
    assert j_motion(quarter(settled), SCALE) is None  # a spread of 2e-4 < 0.1% of the scale
    assert last_quarter(EARLY + [(300, -1.43)], 300) == {
        "J_rise_last_quarter": pytest.approx(0.02),
        "J_trend_last_quarter": pytest.approx(0.02),
        "J_spread_last_quarter": pytest.approx(0.02),
    }
    assert last_quarter([(300, -1.43)], 300) == {}
