"""Vector envs that keep the two-player contract (:mod:`envs.contract`): native, or Gymnasium's
vectorisers over single envs."""

from __future__ import annotations

import dataclasses
from functools import partial

import gymnasium as gym

from envs.contract import ContractError, RewardPairInInfo, check_spaces, find_spec
from envs.python_vector import PythonVectorEnv
from envs.timeout import StepTimeout


def _timed(make, seconds: float | None) -> gym.Env:
    """The env ``make()`` returns, each step limited to ``seconds`` (none: no limit)."""
    env = make()
    return env if seconds is None else StepTimeout(env, seconds)


def make_vector_env(
    env_id: str, num_envs: int, vectorization: str = "auto", *, step_timeout: float | None = None, **kwargs
) -> gym.vector.VectorEnv:
    """A vector env for a registered id (``"module:Name-v0"`` imports ``module`` first).

    ``vectorization``: ``native`` (the id's own vector entry point, e.g. the tabular games),
    ``sync`` (:class:`~envs.python_vector.PythonVectorEnv`: copies stepped in a loop in this
    process), ``async`` (Gymnasium's ``AsyncVectorEnv`` over :class:`RewardPairInInfo`-wrapped
    copies, one subprocess each), or ``auto`` (native when the id has one, else sync).
    ``step_timeout``: seconds each step of a sync or async copy may take (:class:`StepTimeout`;
    native envs, which step in torch, have no limit).
    """
    spec = find_spec(env_id)
    env_id = spec.id
    if vectorization == "auto":
        vectorization = "native" if spec.vector_entry_point is not None else "sync"
    if vectorization == "native":
        if spec.vector_entry_point is None:
            raise ContractError(f"{env_id} has no native vector env; use vectorization=sync or async")
        env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    elif vectorization == "sync":
        # no OrderEnforcing wrapper (about 1 us a step): the vectoriser always resets before stepping
        unordered = dataclasses.replace(spec, order_enforce=False)
        make = partial(gym.make, unordered, disable_env_checker=True, **kwargs)
        env = PythonVectorEnv([partial(_timed, make, step_timeout)] * num_envs)
    elif vectorization == "async":
        # the contract is checked here; Gymnasium's passive checker would only warn about the reward pair
        env = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode=vectorization,
            wrappers=[partial(StepTimeout, seconds=step_timeout)] * (step_timeout is not None)
            + [partial(RewardPairInInfo, defer_errors=True)],
            disable_env_checker=True,
            **kwargs,
        )
    else:
        raise ValueError(f"vectorization = {vectorization!r}: choose auto, native, sync or async")
    check_spaces(env.single_observation_space, env.single_action_space, env_id)
    return env
