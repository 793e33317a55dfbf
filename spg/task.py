"""The task a run trains on: the environment (vectorised), its model where one exists, its
discount, spaces and device, built from the ``env`` config; and the rollout horizon."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass

import gymnasium as gym
import torch
from omegaconf import DictConfig, OmegaConf

from envs.contract import CONTRACT, ContractError, ModuleNotFound, check_first_step, contract_problem, find_spec
from envs.pettingzoo_adapter import PETTINGZOO_ID
from envs.tabular_vector import TabularVectorEnv
from envs.vectorize import make_vector_env
from spg.config import SetupError
from spg.game import TabularGame
from spg.sparse_game import DENSIFY_LIMIT, SparseTabularGame, load_game

# copies of a Python env stepped at once by default, chosen by `python scripts/benchmark.py --only python_env`
# (docs/performance.md, Python envs)
PYTHON_ENV_COPIES = 512
# copies of a native tabular env (at least; more when a batch is larger): each round of the sampler
# steps only as many as its batch needs, so spare copies cost memory, not samples
NATIVE_COPIES = 512


def python_env_copies(vectorization: str, batch_size: int) -> int:
    """Copies of a Python env stepped at once by default: up to 512 in process, one subprocess
    per CPU core with ``async``; never more than a batch."""
    return min(batch_size, (os.cpu_count() or 1) if vectorization == "async" else PYTHON_ENV_COPIES)


# fixed horizons longer than this give way to geometric lengths under trainer.rollouts=auto
# (gamma above about 0.98), chosen by scripts/rollouts.py (docs/how_it_learns.md, Budget)
LONGEST_FIXED_HORIZON = 1000
GEOMETRIC_TAIL = 1e-4  # the share of geometric trajectories the horizon may cut short


@dataclass(frozen=True)
class Rollouts:
    """How long sampled trajectories are: a fixed ``horizon``, or (``geometric``) each its own
    length ``tau``, going on after every step with probability ``gamma`` and cut at ``horizon``:
    undiscounted sums over ``tau`` steps are unbiased for the discounted values, at an expected
    cost of ``1 / (1 - gamma)`` steps instead of the fixed horizon's ``T``."""

    horizon: int
    geometric: bool

    def discount(self, gamma: float) -> float:
        """The discount the estimators apply to the sampled rewards."""
        return 1.0 if self.geometric else gamma


def plan_rollouts(gamma: float, horizon: int | None, mode: str) -> Rollouts:
    """``mode``: ``fixed`` (``horizon``, or :func:`auto_horizon`), ``geometric`` (cut at ``horizon``,
    or where at most ``GEOMETRIC_TAIL`` of the trajectories would be cut), or ``auto``: fixed
    while :func:`auto_horizon` stays within ``LONGEST_FIXED_HORIZON``, else geometric."""
    if mode == "auto":
        mode = "fixed" if auto_horizon(gamma) <= LONGEST_FIXED_HORIZON else "geometric"
    if mode == "fixed":
        return Rollouts(horizon or auto_horizon(gamma), geometric=False)
    cap = 1 if gamma == 0.0 else math.ceil(math.log(GEOMETRIC_TAIL) / math.log(gamma))
    return Rollouts(horizon or cap, geometric=True)


def auto_horizon(gamma: float, tolerance: float = 1e-3) -> int:
    """The smallest ``T`` with ``T^2 gamma^T < tolerance``: the bias of second-order estimates
    from truncation grows like ``T^2 gamma^T`` (docs/mathematics.md, Truncation). ``gamma`` must lie
    in [0, 1) (no ``T`` exists for ``gamma >= 1``)."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma = {gamma}: the automatic horizon needs a discount in [0, 1)")
    if gamma == 0.0:
        return 1
    T = 1
    while T * T * gamma**T >= tolerance:
        T += 1
    return T


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:N]`` or ``auto`` (CUDA where torch sees it)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise SetupError(f"device = {name!r}: choose device=cpu, device=cuda or device=auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SetupError(f"device = {name} but torch sees no CUDA device: use device=cpu or device=auto")
    return torch.device(name)


@dataclass
class Task:
    """The environment a run trains on, its model where one exists, its discount, a fingerprint
    of the game (of the model, else of the env id and kwargs) for checkpoints, and
    ``start_weights [S]`` (:func:`start_weights`)."""

    env: gym.vector.VectorEnv
    game: TabularGame | SparseTabularGame | None
    gamma: float
    num_states: int
    num_actions: tuple[int, int]
    fingerprint: str
    start_weights: torch.Tensor | None = None


def start_weights(game: TabularGame | SparseTabularGame | None, start: str | None) -> torch.Tensor | None:
    """``rho(s) / mu(s)`` when training episodes start from ``mu != rho`` (this package's game envs
    with ``start="mu"``): the weight of a trajectory starting in ``s`` that turns estimates of the
    leader's value at ``mu`` into estimates at ``rho``, where ``J`` is defined. ``None`` when the
    env starts where ``J`` is judged (an env without such a model starts from its own ``rho``)."""
    if game is None or start != "mu" or torch.equal(game.mu, game.rho):
        return None
    return torch.where(
        game.mu > 0, game.rho / game.mu.clamp_min(torch.finfo(game.mu.dtype).tiny), torch.zeros_like(game.rho)
    )


def make_task(cfg: DictConfig, device: torch.device) -> Task:
    """The env of ``cfg.env`` (native for the tabular games, else Gymnasium's sync/async vectoriser)
    and its model, discount and spaces, for a config :func:`spg.config.check_config` accepted; an env
    that cannot be made or breaks the two-player contract is a :class:`SetupError`."""
    env_cfg = cfg.env
    native_copies = env_cfg.num_envs or max(
        cfg.trainer.batch_size, NATIVE_COPIES
    )  # each update steps those its batch needs
    try:
        if env_cfg.kind == "file":  # the kind and its id or path are checked with the config (spg.config.check_config)
            try:
                game = load_game(env_cfg.path, device=device)
            except ValueError as error:
                raise SetupError(f"env.path = {env_cfg.path}: {error}") from error
            env, start = TabularVectorEnv(game, native_copies), "mu"
        else:  # gym or pettingzoo
            env_id, kwargs = env_cfg.id, OmegaConf.to_container(env_cfg.kwargs, resolve=True)
            if env_cfg.kind == "pettingzoo":  # env.id names a ParallelEnv factory, "module:function"
                env_id, kwargs = PETTINGZOO_ID, {"factory": env_cfg.id, **kwargs}
            native = find_spec(env_id).vector_entry_point is not None
            copies = (
                native_copies
                if native and env_cfg.vectorization in ("auto", "native")
                else (env_cfg.num_envs or python_env_copies(env_cfg.vectorization, cfg.trainer.batch_size))
            )
            env = make_vector_env(env_id, copies, env_cfg.vectorization, step_timeout=env_cfg.step_timeout, **kwargs)
            if isinstance(env, TabularVectorEnv):
                game, start = env.game, env.start
                if game.device != device:
                    env = TabularVectorEnv(
                        game.to(device), env.num_envs, start=start, max_episode_steps=env.max_episode_steps
                    )
                    game = env.game
            else:
                probe = gym.make(find_spec(env_id).id, disable_env_checker=True, **kwargs)
                check_first_step(probe)  # a broken contract found before training, where it shows at once
                game, start = getattr(probe.unwrapped, "game", None), getattr(probe.unwrapped, "start", None)
                probe.close()
                game = game.to(device) if isinstance(game, (TabularGame, SparseTabularGame)) else None
    except ModuleNotFound as error:  # not a wrong id or kwargs: where Python looks for the module
        raise SetupError(f"env.id = {env_cfg.id}: {error}") from error
    except ContractError as error:
        if CONTRACT not in str(error):  # an unknown id, a module that failed to import
            raise SetupError(f"cannot make env {env_cfg.id!r}: {error} (check env.id and env.kwargs)") from error
        raise SetupError(
            f"env {env_cfg.id} breaks the two-player contract: {contract_problem(error)}; "
            "fix the env as docs/formats.md says (details in train.log)",
            detail=str(error),
        ) from error
    except (gym.error.Error, TypeError) as error:
        raise SetupError(f"cannot make env {env_cfg.id!r}: {error} (check env.id and env.kwargs)") from error
    except SetupError:
        raise
    except ValueError as error:  # a game that fails validation
        raise SetupError(f"env {env_cfg.id!r}: {error} (check env.kwargs)") from error
    if game is not None:
        gamma = game.gamma
    elif env_cfg.gamma is None:
        raise SetupError(f"{env_cfg.id} has no tabular model (env.unwrapped.game): set its discount with env.gamma=0.9")
    else:
        gamma = float(env_cfg.gamma)
    S, A1, A2 = env.single_observation_space.n, *(int(n) for n in env.single_action_space.nvec)
    if game is not None:
        fingerprint = game.fingerprint()
    else:  # no model: the env as configured
        described = json.dumps(
            [env_cfg.id, OmegaConf.to_container(env_cfg.kwargs, resolve=True), gamma], sort_keys=True, default=str
        )
        fingerprint = hashlib.sha256(described.encode()).hexdigest()
    return Task(env, game, gamma, int(S), (A1, A2), fingerprint, start_weights(game, start))


def has_derivatives(task: Task) -> bool:
    """Exact derivatives exist for dense games and for sparse ones small enough to densify."""
    return task.game is not None and (isinstance(task.game, TabularGame) or task.game.num_states <= DENSIFY_LIMIT)
