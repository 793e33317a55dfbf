"""Validation of games and game files: every rule names the array, the index and the rule."""

import numpy as np
import pytest
import torch

from spg.game import TabularGame, matrix_game, random_game


def arrays(S=3, A1=2, A2=2, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A1, A2))
    return dict(P=P, R1=rng.normal(size=(S, A1, A2)), R2=rng.normal(size=(S, A1, A2)), gamma=0.9, rho=np.ones(S) / S)


def test_valid_game_holds_float64_tensors_and_default_mu():
    game = TabularGame(**arrays())
    assert game.P.dtype == torch.float64 and game.num_states == 3 and game.num_actions == (2, 2)
    assert torch.equal(game.mu, game.rho) and game.mu_is_default


def test_mu_defaults_to_mixture_when_rho_lacks_support():
    a = arrays()
    a["rho"] = np.array([1.0, 0.0, 0.0])
    game = TabularGame(**a)
    expected = 0.95 * a["rho"] + 0.05 / 3
    assert np.allclose(game.mu.numpy(), expected)


def test_any_finite_rewards_accepted():
    a = arrays()
    a["R1"] = a["R1"] * 1e6 - 5e5
    game = TabularGame(**a)
    assert np.array_equal(game.R1.numpy(), a["R1"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(P=a["P"][..., :2]), r"P has shape \(3, 2, 2, 2\).*last axis"),
        (lambda a: a.update(P=a["P"][0]), r"P has shape .* 4-D"),
        (lambda a: a.update(R1=a["R1"][:, :1]), r"R1 has shape \(3, 1, 2\).*\[S, A1, A2\]"),
        (lambda a: a.update(rho=np.ones(2) / 2), r"rho has shape \(2,\)"),
        (lambda a: a.update(mu=np.ones(4) / 4), r"mu has shape \(4,\)"),
        (lambda a: a["P"].__setitem__((1, 0, 1, 2), np.nan), r"P\[1, 0, 1, 2\] = nan.*finite"),
        (lambda a: a["P"].__setitem__((2, 1, 0, 0), np.inf), r"P\[2, 1, 0, 0\] = inf.*finite"),
        (lambda a: a["P"].__setitem__((0, 1, 1), [1.2, -0.2, 0.0]), r"P\[0, 1, 1, 1\] = -0.2 is negative"),
        (lambda a: a["P"].__setitem__((1, 1, 0), [0.5, 0.3, 0.1]), r"P\[1, 1, 0, :\] sums to 0.9 \(off by -0.1\)"),
        (lambda a: a["R2"].__setitem__((2, 0, 1), np.nan), r"R2\[2, 0, 1\] = nan: every entry of R2 must be finite"),
        (lambda a: a["R1"].__setitem__((0, 0, 0), -np.inf), r"R1\[0, 0, 0\] = -inf"),
        (lambda a: a.update(gamma=1.0), r"gamma = 1.0: .* \[0, 1\)"),
        (lambda a: a.update(gamma=-0.1), r"gamma = -0.1"),
        (lambda a: a.update(rho=np.array([0.5, 0.6, -0.1])), r"rho\[2\] = -0.1 is negative"),
        (lambda a: a.update(rho=np.array([0.5, 0.4, 0.0])), r"rho sums to 0.9 \(off by -0.1\)"),
        (lambda a: a.update(mu=np.array([0.5, 0.5, 0.0])), r"mu\[2\] = 0.0: mu must have full support"),
        (lambda a: a.update(mu=np.array([0.5, 0.5, 0.5])), r"mu sums to 1.5"),
    ],
)
def test_validation_errors_name_array_index_and_rule(change, message):
    a = arrays()
    change(a)
    with pytest.raises(ValueError, match=message):
        TabularGame(**a)


def test_row_sum_tolerance_is_1e_6():
    a = arrays()
    a["P"][0, 0, 0, 0] += 5e-7
    TabularGame(**a)
    a["P"][0, 0, 0, 0] += 1e-6
    with pytest.raises(ValueError, match=r"P\[0, 0, 0, :\] sums to"):
        TabularGame(**a)


def test_npz_round_trip(tmp_path):
    game = random_game(4, 2, 3, seed=3, gamma=0.7)
    game.to_npz(tmp_path / "g.npz")
    back = TabularGame.from_npz(tmp_path / "g.npz")
    for name in ("P", "R1", "R2", "rho", "mu"):
        assert torch.equal(getattr(game, name), getattr(back, name))
    assert back.gamma == 0.7


def test_file_missing_key(tmp_path):
    a = arrays()
    del a["R2"]
    np.savez(tmp_path / "g.npz", **a)
    with pytest.raises(ValueError, match=r"g.npz is missing the key\(s\) R2"):
        TabularGame.from_npz(tmp_path / "g.npz")


def test_file_bad_row_and_unreadable_file(tmp_path):
    a = arrays()
    a["P"][2, 0, 0] = [0.2, 0.2, 0.2]
    np.savez(tmp_path / "g.npz", **a)
    with pytest.raises(ValueError, match=r"P\[2, 0, 0, :\] sums to 0.6"):
        TabularGame.from_npz(tmp_path / "g.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=r"cannot read game file"):
        TabularGame.from_npz(tmp_path / "junk.npz")


def test_random_game_is_seeded_and_matrix_game_shapes():
    g1, g2, g3 = random_game(5, 2, 3, seed=1), random_game(5, 2, 3, seed=1), random_game(5, 2, 3, seed=2)
    assert torch.equal(g1.P, g2.P) and not torch.equal(g1.P, g3.P)
    low, high = -2.0, 3.0
    g = random_game(5, 2, 3, seed=1, reward_range=(low, high))
    assert g.R1.min() >= low and g.R1.max() <= high
    m = matrix_game([[1, 2, 3]], [[0, 1, 0]])
    assert m.num_states == 1 and m.num_actions == (1, 3)
    with pytest.raises(ValueError, match="payoff matrices have shapes"):
        matrix_game([[1, 2]], [[1, 2, 3]])


def test_game_moves_between_dtypes():
    game = random_game(3, 2, 2).to(dtype=torch.float32)
    assert game.P.dtype == torch.float32 and game.gamma == 0.9
