"""Sparse tabular games: each ``(s, a1, a2)`` stores only its ``K`` successors, so games can grow
to ~10^5 states (a dense ``P`` would need ``S^2 A1 A2`` entries).

File format (an extension of the contract's ``.npz``): ``successors [S, A1, A2, K]`` (integer
state indices), ``successor_probs [S, A1, A2, K]`` (each row summing to 1; repeated successors
add up), in place of ``P``; ``R1``, ``R2``, ``gamma``, ``rho`` and the optional ``mu`` and
``terminal`` as for dense games. :func:`load_game` reads either kind.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from spg.game import (
    DEFAULT_MU_EPSILON,
    REQUIRED_KEYS,
    GameModel,
    TabularGame,
    _first_index,
    _fmt_index,
    _to_numpy,
    check_model_shapes,
    check_probability_rows,
    check_rewards_and_distributions,
    check_terminal,
    default_mu,
    read_npz,
    real_array,
    real_scalar,
)

SPARSE_KEYS = ("successors", "successor_probs", "R1", "R2", "gamma", "rho")
DENSIFY_LIMIT = 5000  # states up to which exact derivatives densify a sparse game


class SparseTabularGame(GameModel):
    """A validated game with successor lists; the same interface as :class:`TabularGame`
    (``num_states``, ``num_actions``, ``R1``, ``R2``, ``gamma``, ``rho``, ``mu``, ``terminal``, ``to``, ``to_npz``)."""

    def __init__(
        self,
        successors,
        successor_probs,
        R1,
        R2,
        gamma: float,
        rho,
        mu=None,
        terminal=None,
        *,
        mu_epsilon: float = DEFAULT_MU_EPSILON,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        succ = np.asarray(_to_numpy(successors))
        names = ("successor_probs", "R1", "R2", "rho")
        probs, R1, R2, rho = (real_array(name, x) for name, x in zip(names, (successor_probs, R1, R2, rho)))
        mu = None if mu is None else real_array("mu", mu)
        terminal = None if terminal is None else _to_numpy(terminal)
        gamma = real_scalar("gamma", gamma)
        if succ.ndim != 4 or probs.shape != succ.shape:
            raise ValueError(f"successors {succ.shape} and successor_probs {probs.shape} must both be [S, A1, A2, K]")
        if not np.issubdtype(succ.dtype, np.integer):
            raise ValueError(f"successors has dtype {succ.dtype}: successor indices must be integers")
        S = succ.shape[0]
        check_model_shapes("successors", succ.shape[:3], R1, R2, rho, mu)
        out = (succ < 0) | (succ >= S)
        if out.any():
            index = _first_index(out)
            raise ValueError(
                f"successors{_fmt_index(index)} = {succ[index]}: successor indices must lie in [0, S) = [0, {S})"
            )
        check_probability_rows("successor_probs", probs)
        check_rewards_and_distributions(R1, R2, gamma, rho, mu, terminal)
        terminal = check_terminal(terminal, S)
        self.mu_is_default = mu is None
        mu = default_mu(rho, mu_epsilon, terminal) if mu is None else mu
        as_tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        self.successors = torch.as_tensor(succ, dtype=torch.long, device=device)
        self.successor_probs, self.R1, self.R2, self.rho, self.mu = (as_tensor(a) for a in (probs, R1, R2, rho, mu))
        self.terminal = torch.as_tensor(terminal, device=device)
        self.gamma = gamma

    _tensors = ("successors", "successor_probs", "R1", "R2", "rho", "mu", "terminal")

    @property
    def num_successors(self) -> int:
        return self.successors.shape[-1]

    def expected_next(self, values: torch.Tensor) -> torch.Tensor:
        """``sum_s' P(s'|s, a1, a2) values[s']`` for ``values [S]`` or ``[S, k]`` -> ``[S, A1, A2(, k)]``;
        0 at terminal states (nothing follows them)."""
        if values.ndim == 1:
            out = (self.successor_probs * values[self.successors]).sum(-1)
        else:
            out = (self.successor_probs[..., None] * values[self.successors]).sum(-2)
        if self.episodic:
            out = out * self.continues().reshape(-1, *[1] * (out.ndim - 1))
        return out

    def dense(self) -> TabularGame:
        """The same game with a dense ``P`` (for small games only)."""
        S, (A1, A2) = self.num_states, self.num_actions
        P = torch.zeros(S, A1, A2, S, dtype=self.dtype, device=self.device)
        P.scatter_add_(-1, self.successors, self.successor_probs)
        game = TabularGame(
            P, self.R1, self.R2, self.gamma, self.rho, self.mu, self.terminal, dtype=self.dtype, device=self.device
        )
        game.mu_is_default = self.mu_is_default
        return game

    def __repr__(self) -> str:
        S, (A1, A2) = self.num_states, self.num_actions
        return f"SparseTabularGame(S={S}, A1={A1}, A2={A2}, K={self.num_successors}, gamma={self.gamma}, device={self.device})"


def random_sparse_game(
    num_states: int,
    num_leader_actions: int,
    num_follower_actions: int,
    num_successors: int = 8,
    *,
    gamma: float = 0.9,
    concentration: float = 1.0,
    reward_range: Sequence[float] = (0.0, 1.0),
    seed: int = 0,
    **kwargs,
) -> SparseTabularGame:
    """A seeded random sparse game: ``num_successors`` uniformly drawn successors per
    ``(s, a1, a2)`` with Dirichlet(``concentration``) probabilities, uniform rewards, ``rho`` uniform."""
    if min(num_states, num_leader_actions, num_follower_actions, num_successors) < 1:
        raise ValueError("random_sparse_game needs at least one state, action per player and successor")
    rng = np.random.default_rng(seed)
    shape = (num_states, num_leader_actions, num_follower_actions)
    successors = rng.integers(0, num_states, size=shape + (num_successors,))
    probs = rng.gamma(concentration, size=shape + (num_successors,))
    probs /= probs.sum(-1, keepdims=True)
    low, high = reward_range
    R1 = rng.uniform(low, high, size=shape)
    R2 = rng.uniform(low, high, size=shape)
    return SparseTabularGame(successors, probs, R1, R2, gamma, np.full(num_states, 1.0 / num_states), **kwargs)


def load_game(path: str | os.PathLike, **kwargs) -> TabularGame | SparseTabularGame:
    """Read a dense (``P``) or sparse (``successors``, ``successor_probs``) game file."""
    arrays = read_npz(path)
    if "P" in arrays or "successors" not in arrays:
        return TabularGame.from_arrays(arrays, path, **kwargs)
    missing = [key for key in SPARSE_KEYS if key not in arrays]
    if missing:
        raise ValueError(
            f"game file {path} is missing the key(s) {', '.join(missing)}: a sparse game file needs "
            f"{', '.join(SPARSE_KEYS)} and optionally mu, terminal (found: {', '.join(arrays)})"
        )
    return SparseTabularGame(
        arrays["successors"],
        arrays["successor_probs"],
        arrays["R1"],
        arrays["R2"],
        arrays["gamma"],
        arrays["rho"],
        arrays.get("mu"),
        arrays.get("terminal"),
        **kwargs,
    )


__all__ = ["SparseTabularGame", "random_sparse_game", "load_game", "REQUIRED_KEYS", "DENSIFY_LIMIT"]
