"""The ``env_defaults`` config group: the keyword defaults of every registered ``spg/`` env, read
from its game builder (:func:`envs.registry.default_kwargs`). ``configs/env/*.yaml`` pull them
into ``env.kwargs`` from its defaults list, so each default is written once, in Python, and every
one can be overridden without ``+``."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from envs.registry import GAME_BUILDERS, default_kwargs


def register_env_defaults() -> None:
    """Store ``env_defaults/spg/<Name>-v0`` (the defaults of ``spg/<Name>-v0``) for every game id."""
    store = ConfigStore.instance()
    for env_id in GAME_BUILDERS:
        namespace, name = env_id.split("/")
        store.store(group=f"env_defaults/{namespace}", name=name, node=default_kwargs(env_id))
