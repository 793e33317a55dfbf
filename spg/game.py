"""Tabular two-player stochastic games ``G = (S, A1, A2, P, R1, R2, gamma, rho)`` (paper, Sec. II).

A :class:`TabularGame` holds the model as torch tensors, validates it on construction and reads
and writes the ``.npz`` game file of the design contract:
``P [S, A1, A2, S]``, ``R1 [S, A1, A2]``, ``R2 [S, A1, A2]``, ``gamma`` (scalar), ``rho [S]``, an
optional ``mu [S]``, the start distribution of training rollouts (full support on the states that
are not terminal), and an optional ``terminal [S]`` (boolean): entering a terminal state ends the
episode, and both players' values there are 0.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
import zlib
from typing import Sequence

import numpy as np
import torch

ROW_SUM_TOLERANCE = 1e-6
DEFAULT_MU_EPSILON = 0.05
REQUIRED_KEYS = ("P", "R1", "R2", "gamma", "rho")


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _fmt_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _check_finite(name: str, array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        index = _first_index(bad)
        raise ValueError(f"{name}{_fmt_index(index)} = {array[index]}: every entry of {name} must be finite")


def _check_distribution(name: str, array: np.ndarray, what: str) -> None:
    _check_finite(name, array)
    negative = array < 0
    if negative.any():
        index = _first_index(negative)
        raise ValueError(
            f"{name}{_fmt_index(index)} = {array[index]} is negative: {what} must be a probability "
            "distribution (non-negative entries summing to 1)"
        )
    total = float(array.sum())
    if abs(total - 1.0) > ROW_SUM_TOLERANCE:
        raise ValueError(
            f"{name} sums to {total:.10g} (off by {total - 1.0:+.3g}): {what} must sum to 1 "
            f"(tolerance {ROW_SUM_TOLERANCE:g})"
        )


def validate_arrays(
    P: np.ndarray,
    R1: np.ndarray,
    R2: np.ndarray,
    gamma: float,
    rho: np.ndarray,
    mu: np.ndarray | None = None,
    terminal: np.ndarray | None = None,
) -> None:
    """Raise ``ValueError`` naming the array, the first offending index and the rule it breaks."""
    if P.ndim != 4:
        raise ValueError(f"P has shape {P.shape}: it must be 4-D, P[s, a1, a2, s'] of shape [S, A1, A2, S]")
    S, A1, A2, S_next = P.shape
    if S_next != S:
        raise ValueError(f"P has shape {P.shape}: its last axis (next state) must have S = {S} entries")
    check_model_shapes("P", P.shape[:3], R1, R2, rho, mu)
    check_probability_rows("P", P)
    check_rewards_and_distributions(R1, R2, gamma, rho, mu, terminal)


def check_model_shapes(name: str, shape: tuple[int, int, int], R1, R2, rho, mu) -> None:
    """``R1, R2 [S, A1, A2]`` and ``rho, mu [S]`` must match the transitions' ``(S, A1, A2)``."""
    S, A1, A2 = shape
    if min(S, A1, A2) < 1:
        raise ValueError(f"{name} has shape {shape}: a game needs at least one state and one action per player")
    for reward_name, array in (("R1", R1), ("R2", R2)):
        if array.shape != (S, A1, A2):
            raise ValueError(
                f"{reward_name} has shape {array.shape}: it must be [S, A1, A2] = {(S, A1, A2)} to match {name}"
            )
    for dist_name, array in (("rho", rho), ("mu", mu)):
        if array is not None and array.shape != (S,):
            raise ValueError(f"{dist_name} has shape {array.shape}: it must be [S] = ({S},) to match {name}")


def check_probability_rows(name: str, probs: np.ndarray) -> None:
    """Every entry finite and non-negative, every row (last axis) summing to 1."""
    bad = ~np.isfinite(probs)
    if bad.any():
        index = _first_index(bad)
        raise ValueError(f"{name}{_fmt_index(index)} = {probs[index]}: transition probabilities must be finite")
    negative = probs < 0
    if negative.any():
        index = _first_index(negative)
        raise ValueError(
            f"{name}{_fmt_index(index)} = {probs[index]} is negative: transition probabilities must be >= 0"
        )
    deviation = probs.sum(axis=-1) - 1.0
    off = np.abs(deviation) > ROW_SUM_TOLERANCE
    if off.any():
        index = _first_index(off)
        raise ValueError(
            f"{name}{_fmt_index(index)[:-1]}, :] sums to {1.0 + deviation[index]:.10g} (off by {deviation[index]:+.3g}): "
            f"each row {name}[s, a1, a2, :] must sum to 1 (tolerance {ROW_SUM_TOLERANCE:g})"
        )


def check_terminal(terminal, num_states: int) -> np.ndarray:
    """The ``terminal [S]`` flags as a boolean array (all False when absent)."""
    if terminal is None:
        return np.zeros(num_states, dtype=bool)
    terminal = np.asarray(terminal)
    if terminal.shape != (num_states,):
        raise ValueError(f"terminal has shape {terminal.shape}: it must be [S] = ({num_states},), one flag per state")
    if terminal.dtype != bool and not (np.issubdtype(terminal.dtype, np.number) and np.isin(terminal, (0, 1)).all()):
        raise ValueError(
            f"terminal has entries other than True/False (dtype {terminal.dtype}): it must be a boolean array [S]"
        )
    return terminal.astype(bool)


def check_rewards_and_distributions(R1, R2, gamma: float, rho, mu, terminal=None) -> None:
    _check_finite("R1", R1)
    _check_finite("R2", R2)
    if not (np.isfinite(gamma) and 0.0 <= gamma < 1.0):
        raise ValueError(f"gamma = {gamma}: the discount factor must lie in [0, 1)")
    _check_distribution("rho", rho, "the evaluation distribution rho")
    terminal = check_terminal(terminal, rho.shape[0])
    if terminal.any():
        for name, R in (("R1", R1), ("R2", R2)):
            paid = (R != 0) & terminal[:, None, None]
            if paid.any():
                index = _first_index(paid)
                raise ValueError(
                    f"{name}{_fmt_index(index)} = {R[index]} at terminal state {index[0]}: the rewards of a terminal "
                    "state are never collected (the episode ends on entering it); set them to 0 or unmark the state"
                )
        if rho[~terminal].sum() <= 0:
            first = int(np.flatnonzero(rho > 0)[0])
            raise ValueError(
                f"rho puts all its mass on terminal states (rho[{first}] = {rho[first]}, terminal[{first}] = True): "
                "every episode would be empty; give rho mass on a non-terminal state"
            )
    if mu is not None:
        _check_distribution("mu", mu, "the start distribution mu")
        on_terminal = (mu > 0) & terminal
        if on_terminal.any():
            index = _first_index(on_terminal)
            raise ValueError(
                f"mu{_fmt_index(index)} = {mu[index]} on a terminal state: a training episode starting there is "
                "empty; set mu to 0 on terminal states"
            )
        zero = (mu <= 0) & ~terminal
        if zero.any():
            index = _first_index(zero)
            raise ValueError(
                f"mu{_fmt_index(index)} = {mu[index]}: mu must have full support (every non-terminal state > 0), "
                "the paper's condition for the policy gradient to reach every state; omit mu to use "
                f"(1 - {DEFAULT_MU_EPSILON}) rho + {DEFAULT_MU_EPSILON} uniform"
            )


def default_mu(rho: np.ndarray, epsilon: float = DEFAULT_MU_EPSILON, terminal: np.ndarray | None = None) -> np.ndarray:
    """``rho`` when it has full support, else ``(1 - epsilon) rho + epsilon * uniform``; with
    terminal states, both restricted to the non-terminal states (and renormalised)."""
    live = np.ones_like(rho, dtype=bool) if terminal is None else ~terminal
    restricted = rho.copy() if live.all() else np.where(live, rho, 0.0) / rho[live].sum()
    if (restricted[live] > 0).all():
        return restricted
    return (1.0 - epsilon) * restricted + epsilon * live / live.sum()


class GameModel:
    """What dense and sparse games share: rewards ``R1, R2 [S, A1, A2]``, ``gamma``, ``rho``, ``mu``
    and the ``terminal [S]`` flags. Subclasses name their tensors in ``_tensors`` and provide
    ``expected_next``."""

    _tensors: tuple[str, ...] = ("R1", "R2", "rho", "mu", "terminal")
    R1: torch.Tensor
    R2: torch.Tensor
    rho: torch.Tensor
    mu: torch.Tensor
    terminal: torch.Tensor
    gamma: float
    mu_is_default: bool

    @property
    def num_states(self) -> int:
        return self.R1.shape[0]

    @property
    def num_actions(self) -> tuple[int, int]:
        """``(A1, A2)``: the leader's and the follower's number of actions."""
        return self.R1.shape[1], self.R1.shape[2]

    @property
    def device(self) -> torch.device:
        return self.R1.device

    @property
    def dtype(self) -> torch.dtype:
        return self.R1.dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """A copy of the game on another device and/or floating dtype (no re-validation needed)."""
        game = object.__new__(type(self))
        for name in self._tensors:
            x = getattr(self, name)
            setattr(game, name, x.to(device=device, dtype=dtype if x.is_floating_point() else None))
        game.gamma, game.mu_is_default = self.gamma, self.mu_is_default
        return game

    @property
    def episodic(self) -> bool:
        """Whether some state is terminal."""
        return bool(self.terminal.any())

    def continues(self) -> torch.Tensor:
        """``[S]`` in the game's dtype: 0 at terminal states (nothing follows them), else 1."""
        return (~self.terminal).to(self.dtype)

    def max_abs_reward(self) -> float:
        return float(torch.maximum(self.R1.abs().max(), self.R2.abs().max()))

    def truncation_bias(self, horizon: int) -> float:
        """Bound ``gamma^T max|r| / (1 - gamma)`` on the value lost by truncating at ``horizon``."""
        return self.gamma**horizon * self.max_abs_reward() / (1.0 - self.gamma)

    def _arrays(self) -> dict[str, np.ndarray]:
        names = [name for name in self._tensors if name != "terminal" or self.episodic]
        arrays = {name: getattr(self, name).cpu().numpy() for name in names}
        return {**arrays, "gamma": np.float64(self.gamma)}

    def fingerprint(self) -> str:
        """SHA-256 of the model (every array and ``gamma``): equal for the same game wherever it
        came from (a file, a registered id), different for any other."""
        digest = hashlib.sha256(type(self).__name__.encode())
        for name, array in sorted(self._arrays().items()):
            array = np.ascontiguousarray(array, dtype=np.int64 if array.dtype.kind in "iu" else np.float64)
            digest.update(f"{name}{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def to_npz(self, path: str | os.PathLike) -> None:
        """Write the game file (``mu`` included; ``terminal`` when some state is terminal)."""
        np.savez(path, **self._arrays())


class TabularGame(GameModel):
    """A validated tabular stochastic game with its model as torch tensors (float64 by default).

    ``P [S, A1, A2, S]`` transition probabilities, ``R1, R2 [S, A1, A2]`` the leader's and the
    follower's rewards (any finite numbers), ``gamma`` in [0, 1), ``rho [S]`` the distribution
    the leader is judged on, ``mu [S]`` the full-support start distribution of training rollouts
    (default: ``rho`` when it has full support, else ``(1 - eps) rho + eps uniform``), ``terminal [S]``
    the states whose entry ends an episode (their rewards must be 0; their rows of ``P`` are
    never used; ``mu`` is 0 on them, and full support means on the others).
    """

    def __init__(
        self,
        P,
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
        arrays = [real_array(name, x) for name, x in zip(("P", "R1", "R2", "rho"), (P, R1, R2, rho))]
        mu_array = None if mu is None else real_array("mu", mu)
        terminal = None if terminal is None else _to_numpy(terminal)
        gamma = real_scalar("gamma", gamma)
        validate_arrays(*arrays[:3], gamma, arrays[3], mu_array, terminal)
        terminal = check_terminal(terminal, arrays[3].shape[0])
        self.mu_is_default = mu_array is None
        if mu_array is None:
            mu_array = default_mu(arrays[3], mu_epsilon, terminal)
        as_tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        self.P, self.R1, self.R2, self.rho = (as_tensor(a) for a in arrays)
        self.mu = as_tensor(mu_array)
        self.terminal = torch.as_tensor(terminal, device=device)
        self.gamma = gamma

    _tensors = ("P", "R1", "R2", "rho", "mu", "terminal")

    def expected_next(self, values: torch.Tensor) -> torch.Tensor:
        """``sum_s' P(s'|s, a1, a2) values[s']`` for ``values [S]`` or ``[S, k]`` -> ``[S, A1, A2(, k)]``;
        0 at terminal states (nothing follows them)."""
        out = self.P @ values
        if self.episodic:
            out = out * self.continues().reshape(-1, *[1] * (out.ndim - 1))
        return out

    @classmethod
    def from_npz(cls, path: str | os.PathLike, **kwargs) -> "TabularGame":
        """Load and validate a game file; errors name the file, the array and the rule broken."""
        return cls.from_arrays(read_npz(path), path, **kwargs)

    @classmethod
    def from_arrays(cls, arrays: dict, path: str | os.PathLike = "<arrays>", **kwargs) -> "TabularGame":
        missing = [key for key in REQUIRED_KEYS if key not in arrays]
        if missing:
            raise ValueError(
                f"game file {path} is missing the key(s) {', '.join(missing)}: a game file needs "
                f"{', '.join(REQUIRED_KEYS)} and optionally mu, terminal (found: {', '.join(arrays) or 'nothing'})"
            )
        return cls(
            arrays["P"],
            arrays["R1"],
            arrays["R2"],
            arrays["gamma"],
            arrays["rho"],
            arrays.get("mu"),
            arrays.get("terminal"),
            **kwargs,
        )

    def __repr__(self) -> str:
        S, (A1, A2) = self.num_states, self.num_actions
        return f"TabularGame(S={S}, A1={A1}, A2={A2}, gamma={self.gamma}, device={self.device})"


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of a ``.npz`` file; anything else (a missing, truncated or damaged file, a plain
    ``.npy``, pickled objects, an array header claiming more data than the file holds) is a
    ``ValueError`` naming the file and what is wrong with it."""
    fix = "(expected a .npz written by numpy.savez)"
    if not os.path.isfile(path):
        raise ValueError(f"cannot read game file {path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise ValueError(f"game file {path} is a single .npy array, not a .npz archive of named arrays {fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            return {
                info.filename[:-4]: _read_member(archive, info)
                for info in archive.infolist()
                if info.filename.endswith(".npy")
            }
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as error:
        raise ValueError(f"cannot read game file {path}: {error} {fix}") from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One array of an archive, its header checked against the stored size before any memory is
    allocated for it; the archive's CRC is verified as it is read."""
    name = info.filename[:-4]
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError(f"array {name} holds Python objects (pickled data), which game files may not")
        claimed = dtype.itemsize * math.prod(shape)
        if claimed > info.file_size:
            raise ValueError(
                f"array {name} claims shape {shape} ({claimed} bytes) but the file holds {info.file_size} bytes"
            )
    with archive.open(info) as f:
        array = np.lib.format.read_array(f, allow_pickle=False)
        f.read()  # to the end of the member, where zipfile checks its CRC
    return array


def real_array(name: str, x) -> np.ndarray:
    """``x`` as a float64 array; ``ValueError`` naming it unless it holds real numbers (a complex
    array would lose its imaginary part, strings and objects have no value)."""
    array = np.asarray(_to_numpy(x))
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} has dtype {array.dtype}: it must hold real numbers")
    return array.astype(np.float64)


def real_scalar(name: str, x) -> float:
    array = real_array(name, x)
    if array.ndim != 0:
        raise ValueError(f"{name} has shape {array.shape}: it must be a scalar")
    return float(array)


def _to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


def random_game(
    num_states: int,
    num_leader_actions: int,
    num_follower_actions: int,
    *,
    gamma: float = 0.9,
    concentration: float = 1.0,
    reward_range: Sequence[float] = (0.0, 1.0),
    seed: int = 0,
    **kwargs,
) -> TabularGame:
    """A seeded random game: Dirichlet(``concentration``) transition rows, uniform rewards in
    ``reward_range``, ``rho`` uniform over the states."""
    if min(num_states, num_leader_actions, num_follower_actions) < 1:
        raise ValueError("random_game needs at least one state and one action per player")
    if concentration <= 0:
        raise ValueError(f"concentration = {concentration}: the Dirichlet concentration must be > 0")
    low, high = reward_range
    rng = np.random.default_rng(seed)
    shape = (num_states, num_leader_actions, num_follower_actions)
    P = rng.dirichlet(np.full(num_states, concentration), size=shape)
    R1 = rng.uniform(low, high, size=shape)
    R2 = rng.uniform(low, high, size=shape)
    rho = np.full(num_states, 1.0 / num_states)
    return TabularGame(P, R1, R2, gamma, rho, **kwargs)


def matrix_game(leader_payoff, follower_payoff, *, gamma: float = 0.0, **kwargs) -> TabularGame:
    """A one-state stochastic game from two payoff matrices ``[A1, A2]`` (rows: the leader's
    actions). With ``gamma = 0`` the values are the expected payoffs of the matrix game."""
    R1 = np.asarray(leader_payoff, dtype=np.float64)
    R2 = np.asarray(follower_payoff, dtype=np.float64)
    if R1.ndim != 2 or R1.shape != R2.shape:
        raise ValueError(
            f"payoff matrices have shapes {R1.shape} and {R2.shape}: both must be 2-D [A1, A2] of the same shape"
        )
    A1, A2 = R1.shape
    P = np.ones((1, A1, A2, 1))
    return TabularGame(P, R1[None], R2[None], gamma, np.ones(1), **kwargs)
