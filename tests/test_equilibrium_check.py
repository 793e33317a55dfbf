"""The equilibrium check's local-ascent probe (``spg.evaluation.local_ascent_metrics``): a leader
on a plateau of ``J`` passes the gradient test yet is flagged; a leader at a local maximum passes."""

import torch

from envs.matrix_games import MATRIX_GAMES
from spg import exact
from spg.evaluation import PROBE_SHARE, equilibrium_problems, exact_metrics, local_ascent_metrics, value_scale
from spg.game import matrix_game
from spg.policy import TabularSoftmaxPolicy
from spg.reference import ascend, quantal_stackelberg

COMMITMENT = MATRIX_GAMES["Commitment"]
GAME = matrix_game(COMMITMENT.leader_payoff, COMMITMENT.follower_payoff)
LAM = 0.1


def check(logits: list[float]) -> tuple[dict, list[str]]:
    leader = TabularSoftmaxPolicy(1, 2, logits=torch.tensor([logits], dtype=torch.float64))
    pi1 = leader.probs().detach()
    follower = TabularSoftmaxPolicy(1, 2, logits=exact.soft_best_response(GAME, pi1, LAM).logits)  # the follower best-responds
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
    assert metrics["game/J_local_ascent"] > metrics["game/J"] + 0.9 * (J_star - metrics["game/J"])  # the probe climbs most of the rest
    assert len(problems) == 1 and "exact ascent steps from the final leader" in problems[0], problems


def test_a_leader_at_the_stackelberg_value_passes_the_probe():
    theta = ascend(GAME, torch.zeros(1, 2, dtype=torch.float64), LAM, iterations=400)
    metrics, problems = check(theta[0].tolist())
    J_star = quantal_stackelberg(GAME, LAM).value
    assert abs(metrics["game/J"] - J_star) < 1e-4 and problems == [], problems
    shortfall = (1 - PROBE_SHARE) * (metrics["game/J_local_ascent"] - metrics["game/J_uniform"])
    assert metrics["game/J_local_ascent"] - metrics["game/J"] < shortfall
