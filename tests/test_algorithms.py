"""The two-timescale algorithms against the exact solver: the sampled leader direction converges
to eq. (19), the follower's natural update reaches its soft best response, exact_spg reaches a
stationary point of J, spg from samples ends near it, no single step saturates a policy, and on a
matrix game where commitment pays spg beats simultaneous gradient play. Learners are built from
the shipped config, so these are tests of the defaults."""

import math
import warnings

import pytest
import torch
from omegaconf import OmegaConf

from envs import TabularVectorEnv
from envs.registry import COMMITMENT_FOLLOWER_PAYOFF, COMMITMENT_LEADER_PAYOFF
from spg import exact
from spg.algorithms import make_learner
from spg.config import AlgoConfig
from spg.errors import SetupError
from spg.estimators import surrogate_objectives
from spg.game import TabularGame, matrix_game, random_game
from spg.objectives import ExactObjectives, SampledObjectives
from spg.policy import TabularSoftmaxPolicy
from spg.reference import ascend
from spg.sampler import Sampler
from spg.schedules import StepSize, growing_batch
from spg.stackelberg import leader_direction
from tests.helpers import learner, seeded_logits


def train(game, name, lam, iterations, *overrides, N=512, T=60, seed=0):
    leader, follower, algo = learner(game, name, f"algo.lam={lam}", *overrides)
    if algo.spec.source == "model":
        source = ExactObjectives(game)
        for _ in range(iterations):
            algo.step(source)
        return leader, follower
    sampler = Sampler(TabularVectorEnv(game, N), seed=seed, probe_discount=game.gamma)
    for _ in range(iterations):
        algo.step(SampledObjectives(sampler.collect(leader, follower, N, T), game.gamma))
    return leader, follower


def test_sampled_leader_direction_approaches_eq_19_as_batches_grow():
    lam = 0.3
    game = random_game(4, 2, 3, seed=2, gamma=0.7)
    theta1 = seeded_logits(4, 2, 0)
    theta2 = exact.soft_best_response(game, torch.softmax(theta1, -1), lam).logits
    leader = TabularSoftmaxPolicy(4, 2, logits=theta1)
    follower = TabularSoftmaxPolicy(4, 3, logits=theta2)
    reference = exact.exact_leader_direction(game, theta1, theta2, lam).total.flatten()
    mean_cosines = []
    for N in (100, 1000, 10000):
        sampler = Sampler(TabularVectorEnv(game, N), seed=N)
        cosines = []
        for _ in range(10):
            batch = sampler.collect(leader, follower, N, 50)
            F1, F2 = surrogate_objectives(batch, leader.logits, follower.logits, gamma=game.gamma, lam=lam)
            d = leader_direction(F1, F2, leader.logits, follower.logits, damping=1e-3, cg_tol=1e-6, cg_iterations=20)
            cosines.append(float(torch.cosine_similarity(d.total.flatten(), reference, 0)))
        mean_cosines.append(sum(cosines) / len(cosines))
    assert mean_cosines[0] < mean_cosines[1] < mean_cosines[2]
    assert mean_cosines[2] > 0.99, mean_cosines


def test_exact_spg_reaches_stationary_point_and_spg_from_samples_ends_near_it():
    lam = 0.2
    game = random_game(4, 2, 3, seed=2, gamma=0.8)
    leader, follower = train(game, "exact_spg", lam, 400)
    J_exact = exact.stackelberg_objective(game, leader.logits, lam)
    assert exact.stackelberg_gradient(game, leader.logits, lam).total.norm() < 0.01
    assert exact.best_response_gap(game, leader.probs().detach(), follower.probs().detach(), lam) < 1e-8
    # the same local maximum as Adam ascent on J by implicit differentiation (an independent route)
    J_ascent = exact.stackelberg_objective(game, ascend(game, torch.zeros(4, 2, dtype=torch.float64), lam), lam)
    assert J_exact == pytest.approx(J_ascent, rel=1e-3)
    sampled_leader, sampled_follower = train(game, "spg", lam, 250)
    J_sampled = exact.stackelberg_objective(game, sampled_leader.logits, lam)
    assert J_sampled > J_exact - 0.01 * abs(J_exact)  # here its noise even finds a better local maximum
    assert exact.best_response_gap(game, sampled_leader.probs().detach(), sampled_follower.probs().detach(), lam) < 0.01
    # simultaneous play ignores the follower's response and ends clearly lower here
    naive_leader, naive_follower = train(game, "exact_pg", lam, 400)
    assert exact.stackelberg_objective(game, naive_leader.logits, lam) < J_exact - 0.01 * abs(J_exact)
    direct = exact.exact_leader_direction(game, naive_leader.logits, naive_follower.logits, lam).direct
    assert direct.norm() < 0.01  # where it ends: a stationary point of V1 against a best-responding follower


def test_spg_beats_pg_where_commitment_pays():
    # Conitzer-Sandholm: the leader's dominant row U gives Nash payoff 2; committing to a mix earns up to 3.5
    game = matrix_game(COMMITMENT_LEADER_PAYOFF, COMMITMENT_FOLLOWER_PAYOFF)
    lam = 0.1
    J_star = max(
        exact.stackelberg_objective(game, torch.log(torch.tensor([[p, 1 - p]], dtype=torch.float64)), lam)
        for p in torch.linspace(0.01, 0.99, 981).tolist()
    )  # a dense grid of commitments
    results = {}
    for name in ("spg", "pg"):
        leader, _ = train(game, name, lam, 200, N=512, T=1)
        results[name] = exact.stackelberg_objective(game, leader.logits, lam)
    assert results["pg"] < 2.1  # the Nash outcome (U, L)
    assert results["spg"] > J_star - 0.05 * (J_star - 2.5), (results, J_star)  # 95% of the uniform -> J* gap


@pytest.mark.parametrize("kappa", [1.0, 0.3])
def test_natural_follower_update_converges_linearly_to_the_soft_best_response(kappa):
    # Cen et al. (2021), Thm. 1 with eta = kappa (1 - gamma) / lam: ||log pi* - log pi_t|| <= 2 C1 / lam * r^t,
    # r = 1 - kappa (1 - gamma), C1 = ||Q* - Q_0|| + 2 lam (1 - kappa) ||log pi* - log pi_0|| (sup norms)
    lam, game = 0.2, random_game(3, 2, 3, seed=4, gamma=0.8)
    leader, follower, algo = learner(
        game, "exact_pg", f"algo.lam={lam}", f"algo.follower.kappa={kappa}", "algo.follower.steps=1"
    )
    leader.logits.data = seeded_logits(3, 2, 0)
    source = ExactObjectives(game)
    response = exact.soft_best_response(game, leader.probs().detach(), lam)
    log_best = torch.log(response.probs)
    error = lambda: float((torch.log_softmax(follower.logits.detach(), -1) - log_best).abs().max())  # noqa: E731
    q0 = source.q_functions(leader.logits, follower.logits, lam)[1]
    C1 = float((response.q - q0).abs().max()) + 2 * lam * (1 - kappa) * error()
    rate = 1 - kappa * (1 - game.gamma)
    for t in range(1, 31):
        algo.follower_step(source)
        assert error() <= 2 * C1 / lam * rate ** (t - 1) + 1e-12, t
    assert error() < 0.05 * 2 * C1 / lam
    assert torch.equal(leader.logits.detach(), seeded_logits(3, 2, 0))  # the leader did not move


def test_no_single_step_saturates_a_policy():
    # rewards x 1000, gamma 0.95, lam 0.01: eq. (19) at the uniform follower has a huge norm,
    # yet the first update moves every leader logit by at most about the Adam step lr
    base = random_game(4, 3, 3, seed=5, gamma=0.95)
    game = TabularGame(base.P, 1000 * base.R1, 1000 * base.R2, base.gamma, base.rho)
    leader, follower, algo = learner(game, "exact_spg", "algo.lam=0.01")
    result = algo.step(ExactObjectives(game))
    assert result.metrics["leader/direction_norm"] > 100
    lr = algo.leader_lr(0)
    assert float(leader.logits.detach().abs().max()) <= 1.01 * lr
    assert result.metrics["leader/min_prob"] > 0.25  # from 1/3, not a deterministic policy


def test_decaying_schedule_and_its_assumption_1_check():
    schedule = StepSize(2.0, power=0.6, t0=10.0)
    assert schedule(0) == 2.0 and schedule(30) == pytest.approx(2.0 * (10 / 40) ** 0.6)
    with pytest.warns(UserWarning, match="Assumption 1"):
        learner(random_game(3, 2, 2, seed=4), "spg", "algo.leader.power=0.4")


def test_the_batch_grows_as_the_leader_step_shrinks():
    """``batch (lr_0 / lr_t)^g`` rounded up: with ``lr (t0 / (t + t0))`` that is ``batch (1 + t / t0)^g``."""
    step = StepSize(0.1, power=1.0, t0=50.0)
    assert [growing_batch(32, 1.25, step, t) for t in (0, 50, 150)] == [
        32,
        math.ceil(32 * 2**1.25),
        math.ceil(32 * 4**1.25),
    ]
    assert growing_batch(32, 1.25, step, 399) == 498  # the last of 400 updates at the shipped defaults
    assert {growing_batch(64, 0.0, step, t) for t in range(0, 400, 37)} == {64}  # no growth
    assert {growing_batch(32, 1.25, StepSize(0.1), t) for t in range(0, 400, 37)} == {32}  # a constant step: no growth


def test_follower_step_decays_more_slowly_than_the_leaders():
    """From the same batch and the same policies, the sampled follower's logit change after t
    leader updates is (t0 / (t + t0))^power times its change at t = 0; a follower step that decays
    as fast as the leader's breaks Assumption 1."""
    game = random_game(3, 2, 2, seed=4)
    leader, follower, algo = learner(
        game, "spg", "algo.follower.kappa=0.5", "algo.follower.power=0.5", "algo.follower.t0=10"
    )
    sampler = Sampler(TabularVectorEnv(game, 256), seed=0)
    source = SampledObjectives(sampler.collect(leader, follower, 256, 10), game.gamma)
    start = follower.logits.detach().clone()
    changes = {}
    for t in (0, 30):
        with torch.no_grad():
            follower.logits.copy_(start)
        algo.leader_updates = t
        result = algo.follower_step(source)
        changes[t] = follower.logits.detach() - start
        assert result.metrics["charts/follower_step"] == pytest.approx(0.5 * (10 / (t + 10)) ** 0.5)
    assert changes[0].abs().max() > 0.1
    torch.testing.assert_close(changes[30], changes[0] * (10 / 40) ** 0.5)
    with pytest.warns(UserWarning, match="algo.follower.power < algo.leader.power"):
        learner(game, "spg", "algo.follower.power=1.0")
    with pytest.warns(UserWarning, match="algo.follower.power < algo.leader.power"):
        learner(game, "spg", "algo.leader.power=0")  # a constant leader step against a decaying follower
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner(game, "spg")  # the shipped schedules keep two timescales
        learner(game, "exact_spg")


def test_bad_input_is_reported():
    game = random_game(3, 2, 2, seed=4)
    with pytest.warns(UserWarning, match="Assumption 2"):
        learner(game, "spg", "algo.lam=0", "algo.follower.rule=gradient", "algo.solve=cg")
    with pytest.raises(SetupError, match="needs lam > 0"):
        learner(game, "spg", "algo.lam=0", "algo.solve=cg")
    with pytest.raises(SetupError, match="closed-form solve of eq. \\(19\\) divides by lam"):
        learner(game, "spg", "algo.lam=0", "algo.follower.rule=gradient")
    spgg = OmegaConf.structured(AlgoConfig(name="spgg"))  # make_learner checks a config built without Hydra too
    with pytest.raises(SetupError, match=r"algo.name = 'spgg': choose algo="):
        make_learner(spgg, 3, (2, 2))
    with pytest.raises(SetupError, match=r"algo.leader.lr = -1.0: the leader's step must be > 0"):
        learner(game, "spg", "algo.leader.lr=-1")
    leader, follower, algo = learner(game, "exact_spg")
    # non-finite estimates stop the step before the policies change
    broken = random_game(3, 2, 2, seed=4)
    broken.R1[0, 0, 0] = float("nan")
    before = leader.logits.detach().clone()
    with pytest.raises(FloatingPointError, match="non-finite estimate of grad_theta1 V1"):
        algo.step(ExactObjectives(broken))
    assert torch.equal(leader.logits.detach(), before)


def test_sub_batches_give_independent_factors():
    # the errors of the factors of eq. (19) estimated on different sub-batches are uncorrelated:
    # across 200 batches the correlation of the errors of grad_2 V1 (sub-batch 1) and of grad_2 V2
    # (sub-batch 2) stays within 4 / sqrt(200) of 0, while on one batch it is clearly not 0
    lam = 0.3
    game = random_game(2, 2, 2, seed=2, gamma=0.5)
    leader, follower = (
        TabularSoftmaxPolicy(2, 2, logits=seeded_logits(2, 2, 0)),
        TabularSoftmaxPolicy(2, 2, logits=seeded_logits(2, 2, 1)),
    )
    V1, V2 = exact.objectives(game, leader.logits, follower.logits, lam)
    b_exact = torch.autograd.grad(V1, follower.logits, retain_graph=True)[0][0, 0]
    g_exact = torch.autograd.grad(V2, follower.logits)[0][0, 0]
    sampler = Sampler(TabularVectorEnv(game, 200), seed=0)
    split_errors, same_errors = [], []
    for _ in range(200):
        parts = SampledObjectives(sampler.collect(leader, follower, 200, 20), game.gamma).split(2)
        b = torch.autograd.grad(parts[0].objectives(leader.logits, follower.logits, lam)[0], follower.logits)[0][0, 0]
        g_split = torch.autograd.grad(parts[1].objectives(leader.logits, follower.logits, lam)[1], follower.logits)[0][
            0, 0
        ]
        g_same = torch.autograd.grad(parts[0].objectives(leader.logits, follower.logits, lam)[1], follower.logits)[0][
            0, 0
        ]
        split_errors.append((float(b - b_exact), float(g_split - g_exact)))
        same_errors.append((float(b - b_exact), float(g_same - g_exact)))
    corr = lambda pairs: float(torch.corrcoef(torch.tensor(pairs, dtype=torch.float64).T)[0, 1])  # noqa: E731
    assert abs(corr(split_errors)) < 4 / 200**0.5
    assert abs(corr(same_errors)) > 4 / 200**0.5, corr(same_errors)
    for solve, parts in (("cg", 3), ("closed_form", 2)):
        _, _, algo = learner(game, "spg", f"algo.sub_batches={parts}", f"algo.solve={solve}")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = algo.step(SampledObjectives(sampler.collect(leader, follower, 300, 20), game.gamma))
        assert torch.isfinite(result.leader_direction).all()
        assert (result.metrics.get("cg/iterations", 1) >= 1) and result.metrics["leader/implicit_norm"] > 0


def test_exact_algorithms_train_on_sparse_games():
    from spg.sparse_game import random_sparse_game

    sparse = random_sparse_game(6, 2, 3, 3, seed=1, gamma=0.8)
    lam = 0.2
    leader, _ = train(sparse, "exact_spg", lam, 100)
    dense_leader, _ = train(sparse.dense(), "exact_spg", lam, 100)
    assert torch.allclose(leader.logits, dense_leader.logits, atol=1e-6)


def test_resuming_keeps_the_configured_adam_betas():
    # a checkpoint's optimizer state carries its betas; the run's configured ones win on resume
    game = random_game(3, 2, 2, seed=0, gamma=0.5)
    _, _, before = learner(game, "exact_spg", "algo.leader.betas=[0.9,0.999]")
    before.step(ExactObjectives(game))
    _, _, after = learner(game, "exact_spg")  # the shipped [0.9, 0.9]
    after.load_state_dict(before.state_dict())
    assert after.leader_optimizer.param_groups[0]["betas"] == (0.9, 0.9)
    assert after.leader_optimizer.state_dict()["state"][0]["step"] == 1  # the moments themselves were restored
