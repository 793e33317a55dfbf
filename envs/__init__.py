"""Gymnasium environments for two-player stochastic games, registered as ``spg/<Name>-v0``:

- ``spg/Game-v0`` (``game=`` a :class:`spg.game.TabularGame`),
- ``spg/GameFile-v0`` (``path=`` a ``.npz`` game file),
- ``spg/MatrixGame-v0`` (``leader_payoff=``, ``follower_payoff=`` ``[A1, A2]`` arrays; default:
  the commitment game of Conitzer and Sandholm, 2006),
- ``spg/RandomGame-v0`` (``num_states``, ``num_leader_actions``, ``num_follower_actions``,
  ``gamma``, ``concentration``, ``reward_range``, ``seed``),
- ``spg/RandomSparseGame-v0`` (the same with ``num_successors`` successors per row; see
  :mod:`spg.sparse_game`),
- ``spg/Patrolling-v0``, ``spg/EpidemicTesting-v0`` and the named matrix games (:mod:`envs.registry`),
- ``spg/Soccer-v0``: grid soccer, an episodic game whose goals end the episode (:mod:`envs.soccer`).

``gymnasium.make(id, **kwargs)`` gives a :class:`StochasticGameEnv`;
``gymnasium.make_vec(id, num_envs=N, **kwargs)`` the native :class:`TabularVectorEnv`
(``vectorization_mode="sync"`` or ``"async"``: Gymnasium's vectorisers over single envs).

``spg/PettingZoo-v0`` (``factory="module:function"``, a function returning a two-agent PettingZoo
``ParallelEnv``, and its arguments) adapts such an env to the contract (:mod:`envs.pettingzoo_adapter`).
"""

import gymnasium

from envs.pettingzoo_adapter import PETTINGZOO_ID
from envs.pettingzoo_adapter import make_env as make_pettingzoo_env
from envs.registry import GAME_BUILDERS, single_entry_point, vector_entry_point
from envs.stochastic_game import StochasticGameEnv
from envs.tabular_vector import TabularVectorEnv

__all__ = ["StochasticGameEnv", "TabularVectorEnv"]

for _env_id, _build in GAME_BUILDERS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id,
            entry_point=single_entry_point(_build),
            vector_entry_point=vector_entry_point(_build),
            disable_env_checker=True,
        )
if PETTINGZOO_ID not in gymnasium.registry:
    gymnasium.register(id=PETTINGZOO_ID, entry_point=make_pettingzoo_env)
