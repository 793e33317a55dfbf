"""Sparse games (successor lists) against their dense form: the same exact values, the same
samples in distribution, files, validation, and training."""

import numpy as np
import pytest
import torch

from envs import StochasticGameEnv, TabularVectorEnv
from spg import exact
from spg.sparse_game import SparseTabularGame, load_game, random_sparse_game
from spg.trainer import train
from tests.helpers import TINY, config, seeded_logits

LAM = 0.2


def test_iterative_exact_values_match_the_dense_solver():
    sparse = random_sparse_game(12, 3, 2, num_successors=3, seed=1, gamma=0.85, reward_range=(-1, 2))
    dense = sparse.dense()
    pi1, pi2 = torch.softmax(seeded_logits(12, 3, 0), -1), torch.softmax(seeded_logits(12, 2, 1), -1)
    a, b = exact.policy_values(sparse, pi1, pi2, LAM), exact.policy_values(dense, pi1, pi2, LAM)
    for x, y in ((a.v1, b.v1), (a.v2, b.v2), (a.q1, b.q1), (a.q2, b.q2)):
        assert torch.allclose(x, y, atol=1e-7)
    theta1 = seeded_logits(12, 3, 2)
    assert exact.stackelberg_objective(sparse, theta1, LAM) == pytest.approx(
        exact.stackelberg_objective(dense, theta1, LAM), abs=1e-7
    )
    assert torch.allclose(
        exact.soft_best_response(sparse, pi1, LAM).probs, exact.soft_best_response(dense, pi1, LAM).probs, atol=1e-7
    )
    assert torch.equal(
        exact.soft_best_response(sparse, pi1, 0.0).probs, exact.soft_best_response(dense, pi1, 0.0).probs
    )
    assert exact.best_response_gap(sparse, pi1, pi2, LAM) == pytest.approx(
        exact.best_response_gap(dense, pi1, pi2, LAM), abs=1e-7
    )
    # exact derivatives densify small sparse games
    d_sparse = exact.stackelberg_gradient(sparse, theta1, LAM).total
    d_dense = exact.stackelberg_gradient(dense, theta1, LAM).total
    assert torch.allclose(d_sparse, d_dense, atol=1e-6)


def test_sparse_and_dense_envs_sample_the_same_transitions():
    sparse = random_sparse_game(6, 2, 2, num_successors=3, seed=2, concentration=0.7)
    P = sparse.dense().P
    N = 40000
    env = TabularVectorEnv(sparse, N)
    env.reset_torch(seed=0)
    for s, a1, a2 in [(0, 0, 0), (4, 1, 1)]:
        env.states = torch.full((N,), s)
        nxt, *_ = env.step_torch(torch.full((N,), a1), torch.full((N,), a2))
        freq = torch.bincount(nxt, minlength=6).double() / N
        p = P[s, a1, a2]
        assert ((freq - p).abs() <= 4 * (p * (1 - p) / N).sqrt() + 1e-12).all()
    single = StochasticGameEnv(sparse)
    single.reset(seed=0)
    counts = np.zeros(6)
    for _ in range(4000):
        single._state = 4
        s, *_ = single.step(np.array([1, 1]))
        counts[s] += 1
    p = P[4, 1, 1].numpy()
    assert (np.abs(counts / 4000 - p) <= 4 * np.sqrt(p * (1 - p) / 4000) + 1e-12).all()


def test_sparse_monte_carlo_returns_match_iterative_values():
    from spg.policy import TabularSoftmaxPolicy
    from spg.sampler import Sampler

    game = random_sparse_game(30, 2, 2, num_successors=4, seed=3, gamma=0.6)
    leader = TabularSoftmaxPolicy(30, 2, logits=seeded_logits(30, 2, 4))
    follower = TabularSoftmaxPolicy(30, 2, logits=seeded_logits(30, 2, 5))
    batch = Sampler(TabularVectorEnv(game, 8000), seed=1).collect(leader, follower, 8000, 45)
    values = exact.policy_values(game, leader.probs().detach(), follower.probs().detach(), 0.0)
    for returns, v in zip(batch.discounted_returns(0.6), (values.v1, values.v2)):
        assert abs(float(returns.mean() - game.mu @ v)) < 4 * float(returns.std()) / 8000**0.5


def test_sparse_files_and_validation(tmp_path):
    game = random_sparse_game(5, 2, 3, num_successors=2, seed=4)
    game.to_npz(tmp_path / "g.npz")
    back = load_game(tmp_path / "g.npz")
    assert isinstance(back, SparseTabularGame) and torch.equal(back.successors, game.successors)
    assert not isinstance(load_game_dense(tmp_path, game), SparseTabularGame)
    succ, probs = game.successors.numpy().copy(), game.successor_probs.numpy().copy()
    args = (game.R1.numpy(), game.R2.numpy(), 0.9, game.rho.numpy())
    bad = succ.copy()
    bad[1, 0, 2, 1] = 5
    with pytest.raises(
        ValueError, match=r"successors\[1, 0, 2, 1\] = 5: successor indices must lie in \[0, S\) = \[0, 5\)"
    ):
        SparseTabularGame(bad, probs, *args)
    bad_probs = probs.copy()
    bad_probs[3, 1, 0] = [0.5, 0.4]
    with pytest.raises(ValueError, match=r"successor_probs\[3, 1, 0, :\] sums to 0.9"):
        SparseTabularGame(succ, bad_probs, *args)
    np.savez(tmp_path / "missing.npz", successors=succ, R1=args[0], R2=args[1], gamma=0.9, rho=args[3])
    with pytest.raises(ValueError, match=r"missing the key\(s\) successor_probs"):
        load_game(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="exact derivatives need a dense model"):
        exact.dense_for_derivatives(random_sparse_game(6000, 1, 1, num_successors=1))


def load_game_dense(tmp_path, game):
    game.dense().to_npz(tmp_path / "dense.npz")
    return load_game(tmp_path / "dense.npz")


def test_training_on_a_sparse_game_file(tmp_path):
    random_sparse_game(40, 3, 3, num_successors=4, seed=5, gamma=0.8).to_npz(tmp_path / "sparse.npz")
    final = train(config("env=file", f"env.path={tmp_path / 'sparse.npz'}", *TINY[3:]), run_dir=tmp_path / "run")
    assert np.isfinite(final["game/J"]) and final["env_steps"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["spg", "pg", "exact_spg", "exact_pg", "model_spg"])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_every_algorithm_trains_on_dense_and_sparse_game_files_through_the_cli(algo, kind, scripts, tmp_path):
    game = random_sparse_game(12, 2, 3, num_successors=3, seed=6, gamma=0.8)
    (game if kind == "sparse" else game.dense()).to_npz(tmp_path / "game.npz")
    done = scripts.run(
        "train.py",
        "env=file",
        f"env.path={tmp_path / 'game.npz'}",
        f"algo={algo}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *TINY[3:],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 6 and state["leader"]["logits"].shape == (12, 2)
