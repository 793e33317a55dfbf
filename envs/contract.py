"""The two-player Gymnasium contract, checked before training and on every step (the vector envs
that keep it are made by :func:`envs.vectorize.make_vector_env`).

Contract (docs/formats.md): observation ``Discrete(S)``, action ``MultiDiscrete([A1, A2])``,
and the rewards ``[r_leader, r_follower]`` either as the reward itself (the MO-Gymnasium
convention) or in ``info["reward_pair"]`` beside the leader's float reward (Gymnasium's API, which
the registered ``spg/`` envs follow). Gymnasium's ``SyncVectorEnv`` and ``AsyncVectorEnv`` only
carry scalar rewards, so a user's env goes into them wrapped in :class:`RewardPairInInfo`, which
brings the first form to the second.
"""

from __future__ import annotations

import importlib
import math
import os
import traceback
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from envs.timeout import StepTimedOut

CONTRACT = (
    "a two-player env must have observation_space Discrete(S), action_space MultiDiscrete([A1, A2]) "
    "(leader action, follower action), return observations in [0, S) and the reward "
    "[r_leader, r_follower] as a length-2 array of finite numbers (or the leader's reward with that array in info['reward_pair'])"
)


class ContractError(ValueError):
    """An environment that breaks the two-player contract."""


def contract_problem(error: ContractError) -> str:
    """What the env did, from a contract error: the message without the env's wrapper chain and
    the whole contract (which the run's log keeps)."""
    text = str(error)
    if CONTRACT in text:
        text = text.split(CONTRACT, 1)[1].lstrip(";, ") or "its spaces or rewards are not those of the contract"
    return text.replace("\n", " ")


def check_spaces(observation_space: gym.Space, action_space: gym.Space, where: str = "env") -> tuple[int, int, int]:
    """``(S, A1, A2)`` of an env that follows the contract; :class:`ContractError` otherwise."""
    if not isinstance(observation_space, gym.spaces.Discrete):
        raise ContractError(f"{where}: {CONTRACT}; got observation_space {observation_space}")
    if not (isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.shape == (2,)):
        raise ContractError(f"{where}: {CONTRACT}; got action_space {action_space}")
    if int(observation_space.start) != 0 or np.any(action_space.start != 0):
        raise ContractError(f"{where}: {CONTRACT}, with spaces starting at 0")
    A1, A2 = (int(n) for n in action_space.nvec)
    return int(observation_space.n), A1, A2


def reward_pair(reward: Any, info: dict, env: Any) -> Any:
    """The reward pair of a step of ``env``: ``info["reward_pair"]`` where present, else the reward;
    :class:`ContractError` if it is not a pair (checked at every step, so it must stay cheap)."""
    pair = info.get("reward_pair", reward)
    shape = pair.shape if type(pair) is np.ndarray else np.shape(pair)
    if shape != (2,):
        raise ContractError(f"{env}: {CONTRACT}; got the reward {_short(pair)}")
    return pair


def check_reward_pair(reward: Any, where: str = "env") -> np.ndarray:
    """The reward as a float array ``[..., 2]``; :class:`ContractError` if it is not a pair of
    finite numbers."""
    try:
        array = np.asarray(reward, dtype=np.float64)
    except (TypeError, ValueError):
        raise ContractError(f"{where}: {CONTRACT}; got the reward {_short(reward)}") from None
    if array.ndim == 0 or array.shape[-1] != 2:
        raise ContractError(f"{where}: {CONTRACT}; got the reward {_short(reward)}")
    finite = math.isfinite(array[0]) and math.isfinite(array[1]) if array.ndim == 1 else np.isfinite(array).all()
    if not finite:
        raise ContractError(f"{where}: {CONTRACT}; got the reward {_short(reward)}")
    return array


def check_observation(obs: Any, space: gym.spaces.Discrete, where: str = "env") -> None:
    """:class:`ContractError` unless ``obs`` is a state index of ``space``."""
    index = isinstance(obs, (int, np.integer)) and not isinstance(obs, bool)
    index = index or (isinstance(obs, np.ndarray) and obs.ndim == 0 and obs.dtype.kind in "iu")
    if not (index and 0 <= obs < space.n):
        raise ContractError(f"{where}: {CONTRACT}; got the observation {_short(obs)} from Discrete({space.n})")


def describe_failure(error: BaseException, method: str) -> str:
    """What an env's exception in ``method`` (``step`` or ``reset``) says, in a few words:
    ``raised ZeroDivisionError in step: division by zero``, or a time limit's own message."""
    if isinstance(error, StepTimedOut):
        return str(error)
    said = (str(error).strip().splitlines() or [""])[0][:100]
    return f"raised {type(error).__name__} in {method}" + (f": {said}" if said else "")


def check_first_step(env: gym.Env) -> None:
    """Reset ``env`` and take one step with both players' first action: a contract broken on
    every step shows here, before any training."""
    env = RewardPairInInfo(env)
    env.reset(seed=0)
    env.step(np.zeros(2, dtype=np.int64))


def _short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


class RewardPairInInfo(gym.Wrapper):
    """Returns the leader's reward as the scalar reward and the pair in ``info["reward_pair"]``,
    so Gymnasium's own vectorisers accept a two-player env (one that already does passes through).

    ``defer_errors`` (in ``AsyncVectorEnv``'s subprocesses): a step that breaks the contract ends the
    episode and reports the break in ``info["contract_error"]``, and a step that raises (or takes
    longer than its time limit) in ``info["env_error"]`` (with the traceback in
    ``info["env_error_detail"]``), for the main process to raise (:class:`spg.sampler.Sampler`
    does); raised in the subprocess, Gymnasium would echo its traceback."""

    def __init__(self, env: gym.Env, defer_errors: bool = False) -> None:
        super().__init__(env)
        self._name, self._defer_errors = str(env), defer_errors
        check_spaces(env.observation_space, env.action_space, self._name)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        check_observation(obs, self.observation_space, f"{self._name} (reset)")
        return obs, info

    def step(self, action):
        if self._defer_errors:
            try:
                obs, reward, terminated, truncated, info = self.env.step(action)
            except Exception as error:  # the env's own, or its time limit: reported like a broken contract
                return (
                    0,
                    0.0,
                    True,
                    False,
                    {"env_error": describe_failure(error, "step"), "env_error_detail": traceback.format_exc()},
                )
        else:
            obs, reward, terminated, truncated, info = self.env.step(action)
        try:
            pair = check_reward_pair(info.get("reward_pair", reward), f"{self._name} (step)")
            check_observation(obs, self.observation_space, f"{self._name} (step)")
        except ContractError as error:
            if not self._defer_errors:
                raise
            return 0, 0.0, True, False, {"contract_error": str(error)}
        return obs, float(pair[0]), terminated, truncated, {**info, "reward_pair": pair.astype(np.float32)}


class ModuleNotFound(ContractError):
    """A user's env module that Python cannot find: neither in the directory the command runs
    from (which ``scripts/`` put on ``sys.path``) nor on ``PYTHONPATH``."""


def import_user_module(module: str, of: str) -> ModuleType:
    """Import ``module``, named in ``of`` (the env id or factory, for the message). A module that
    is not found at all is a :class:`ModuleNotFound` naming where Python looked; any other import
    failure (the module itself raising, a package it imports missing) a :class:`ContractError`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = module.split(".")[0]
        if error.name is not None and (module == error.name or module.startswith(error.name + ".")):
            raise ModuleNotFound(
                f"cannot import module {module!r} of {of}: no {top!r} in the directory this command runs from ({os.getcwd()}) "
                f"nor on PYTHONPATH; run it from the directory that holds {top}, or add that directory to PYTHONPATH"
            ) from error
        raise ContractError(f"cannot import module {module!r} of {of}: {error}") from error
    except ImportError as error:
        raise ContractError(f"cannot import module {module!r} of {of}: {error}") from error


def find_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The spec of ``env_id``; the ``"module:Name-v0"`` form imports ``module`` first (which
    registers ``Name-v0``). Unknown ids and modules are a :class:`ContractError`."""
    module, _, name = env_id.rpartition(":")
    if module:
        import_user_module(module, f"env id {env_id!r}")
    try:
        return gym.spec(name)
    except gym.error.Error as error:
        raise ContractError(f"unknown environment id {env_id!r}: {error}") from error
