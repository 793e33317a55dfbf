"""Environment factories behind the registered ids ``spg/<Name>-v0``: each id has a single-env
entry point and a native vector entry point built from the same game."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from envs.epidemic import epidemic_game
from envs.matrix_games import MATRIX_GAMES, MatrixGameSpec
from envs.patrolling import patrolling_game
from envs.soccer import soccer_game
from envs.stochastic_game import StochasticGameEnv
from envs.tabular_vector import TabularVectorEnv
from spg.game import TabularGame, matrix_game, random_game
from spg.sparse_game import SparseTabularGame, load_game, random_sparse_game

# the default matrix game: Conitzer and Sandholm (2006), see envs/matrix_games.py
COMMITMENT_LEADER_PAYOFF = MATRIX_GAMES["Commitment"].leader_payoff
COMMITMENT_FOLLOWER_PAYOFF = MATRIX_GAMES["Commitment"].follower_payoff


def _given_game(game: TabularGame) -> TabularGame:
    return game


def _game_file(path: str) -> TabularGame | SparseTabularGame:
    return load_game(path)


def _matrix(
    leader_payoff=COMMITMENT_LEADER_PAYOFF, follower_payoff=COMMITMENT_FOLLOWER_PAYOFF, gamma: float = 0.0
) -> TabularGame:
    return matrix_game(leader_payoff, follower_payoff, gamma=gamma)


def _random(
    num_states: int = 8,
    num_leader_actions: int = 3,
    num_follower_actions: int = 3,
    gamma: float = 0.8,
    concentration: float = 1.0,
    reward_range=(0.0, 1.0),
    seed: int = 0,
) -> TabularGame:
    return random_game(
        num_states,
        num_leader_actions,
        num_follower_actions,
        gamma=gamma,
        concentration=concentration,
        reward_range=tuple(reward_range),
        seed=seed,
    )


def _named_matrix(spec: MatrixGameSpec) -> Callable[..., TabularGame]:
    def build(gamma: float = 0.0) -> TabularGame:
        return matrix_game(spec.leader_payoff, spec.follower_payoff, gamma=gamma)

    build.__doc__ = f"{spec.name}: {spec.note} Source: {spec.source}"
    return build


def _random_sparse(
    num_states: int = 1000,
    num_leader_actions: int = 5,
    num_follower_actions: int = 5,
    num_successors: int = 8,
    gamma: float = 0.9,
    concentration: float = 1.0,
    reward_range=(0.0, 1.0),
    seed: int = 0,
) -> SparseTabularGame:
    return random_sparse_game(
        num_states,
        num_leader_actions,
        num_follower_actions,
        num_successors,
        gamma=gamma,
        concentration=concentration,
        reward_range=tuple(reward_range),
        seed=seed,
    )


def single_entry_point(build_game: Callable[..., TabularGame]) -> Callable[..., StochasticGameEnv]:
    def make_env(*, start: str = "mu", **game_kwargs) -> StochasticGameEnv:
        return StochasticGameEnv(build_game(**game_kwargs), start=start)

    return make_env


def vector_entry_point(build_game: Callable[..., TabularGame]) -> Callable[..., TabularVectorEnv]:
    def make_vector_env(
        num_envs: int = 1, *, start: str = "mu", max_episode_steps: int | None = None, **game_kwargs
    ) -> TabularVectorEnv:
        return TabularVectorEnv(build_game(**game_kwargs), num_envs, start=start, max_episode_steps=max_episode_steps)

    return make_vector_env


GAME_BUILDERS: dict[str, Callable[..., TabularGame]] = {
    "spg/Game-v0": _given_game,
    "spg/GameFile-v0": _game_file,
    "spg/MatrixGame-v0": _matrix,
    "spg/RandomGame-v0": _random,
    "spg/RandomSparseGame-v0": _random_sparse,
    "spg/Patrolling-v0": patrolling_game,
    "spg/EpidemicTesting-v0": epidemic_game,
    "spg/Soccer-v0": soccer_game,
    **{f"spg/{name}-v0": _named_matrix(spec) for name, spec in MATRIX_GAMES.items()},
}


def default_kwargs(env_id: str) -> dict[str, Any]:
    """The keyword defaults of ``env_id``'s game builder: what ``gym.make(env_id)`` builds with and,
    through the ``env_defaults`` config group (:mod:`spg.env_configs`), ``env.kwargs`` of its
    ``configs/env`` file."""
    parameters = inspect.signature(GAME_BUILDERS[env_id]).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


# the games with reference solutions (scripts/reference.py, docs/games.md, reference table)
BENCHMARK_GAMES = [f"spg/{name}-v0" for name in MATRIX_GAMES] + ["spg/Patrolling-v0", "spg/EpidemicTesting-v0"]
