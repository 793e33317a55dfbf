"""Two-agent PettingZoo ``ParallelEnv`` s as two-player envs of the contract (``spg/PettingZoo-v0``).

The PettingZoo contract: agents ``leader`` and ``follower`` that both observe the shared state as
``Discrete(S)`` (the same value), act in ``Discrete(A1)`` and ``Discrete(A2)``, receive one reward
each, and end together. :class:`ParallelEnvAdapter` turns such an env into a Gymnasium env of the
two-player contract (action ``[a_leader, a_follower]``, the leader's reward as the reward, the pair
in ``info["reward_pair"]``); a broken contract is a :class:`~envs.contract.ContractError` naming
what was found. ``make_env(factory="module:function", **kwargs)`` calls the factory (``module`` is
imported first) for one ParallelEnv and adapts it: the entry point of ``spg/PettingZoo-v0`` and of
``env=pettingzoo env.id=module:function``.

Games whose agents observe something else fit after a wrapper; :func:`rock_paper_scissors` is
PettingZoo's ``classic/rps-v2`` under :class:`LastJointActionState`.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from envs.contract import ContractError, import_user_module

PETTINGZOO_ID = "spg/PettingZoo-v0"
AGENTS = ("leader", "follower")
PETTINGZOO_CONTRACT = (
    "a PettingZoo env must be a ParallelEnv with agents 'leader' and 'follower' that both observe the "
    "shared state as Discrete(S) (the same value), act in Discrete(A1) and Discrete(A2), get one reward "
    "each and end together"
)


def _discrete_size(space: Any) -> int | None:
    """``n`` of a ``Discrete`` space starting at 0, else None."""
    return int(space.n) if isinstance(space, gym.spaces.Discrete) and int(space.start) == 0 else None


class ParallelEnvAdapter(gym.Env):
    """A two-agent PettingZoo ``ParallelEnv`` (agents ``leader`` and ``follower``, a shared
    ``Discrete`` state) as a Gymnasium env of the two-player contract."""

    metadata = {"render_modes": []}

    def __init__(self, parallel_env: Any, where: str = "PettingZoo env") -> None:
        self.parallel_env, self.where = parallel_env, where
        if hasattr(parallel_env, "agent_iter"):
            raise self._error("got an AECEnv; convert it with pettingzoo.utils.aec_to_parallel")
        if not all(hasattr(parallel_env, name) for name in ("possible_agents", "reset", "step", "action_space")):
            raise self._error(f"got a {type(parallel_env).__name__}")
        if sorted(parallel_env.possible_agents) != sorted(AGENTS):
            raise self._error(f"got agents {list(parallel_env.possible_agents)}")
        S = [_discrete_size(parallel_env.observation_space(agent)) for agent in AGENTS]
        A = [_discrete_size(parallel_env.action_space(agent)) for agent in AGENTS]
        if S[0] is None or S[0] != S[1] or None in A:
            spaces = {
                agent: (parallel_env.observation_space(agent), parallel_env.action_space(agent)) for agent in AGENTS
            }
            raise self._error(f"got (observation, action) spaces {spaces}")
        self.observation_space = gym.spaces.Discrete(S[0])
        self.action_space = gym.spaces.MultiDiscrete(A)

    def _error(self, found: str) -> ContractError:
        return ContractError(f"{self.where}: {PETTINGZOO_CONTRACT}; {found}")

    def _state(self, observations: dict, ended: bool = False) -> int:
        """The shared state; after the last step of an episode an agent may have no observation."""
        values = {int(np.asarray(observations[agent])) for agent in AGENTS if agent in observations}
        if len(values) == 1 and (ended or len(observations) >= 2):
            return values.pop()
        if ended and not values:
            return 0  # the last observation of an episode is never acted on
        raise self._error(f"got observations {observations}")

    def _together(self, flags: dict, name: str) -> bool:
        leader, follower = (bool(flags.get(agent, False)) for agent in AGENTS)
        if leader != follower:
            raise self._error(f"got {name} {flags}")
        return leader

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        observations, _ = self.parallel_env.reset(seed=seed, options=options)
        return self._state(observations), {}

    def step(self, action):
        actions = {agent: int(a) for agent, a in zip(AGENTS, action)}
        observations, rewards, terminations, truncations, _ = self.parallel_env.step(actions)
        if not all(agent in rewards for agent in AGENTS):
            raise self._error(f"got rewards {dict(rewards)}")
        pair = np.array([rewards[agent] for agent in AGENTS], dtype=np.float32)
        terminated, truncated = self._together(terminations, "terminations"), self._together(truncations, "truncations")
        state = self._state(observations, ended=terminated or truncated)
        return state, float(pair[0]), terminated, truncated, {"reward_pair": pair}

    def close(self) -> None:
        self.parallel_env.close()


def load_factory(factory: str) -> Callable[..., Any]:
    """The callable named by ``"module:function"`` (``module`` imported first)."""
    module, _, name = factory.partition(":")
    if not module or not name:
        raise ContractError(
            f"PettingZoo factory {factory!r}: give it as 'module:function' (a function returning a ParallelEnv)"
        )
    function = getattr(import_user_module(module, f"PettingZoo factory {factory!r}"), name, None)
    if not callable(function):
        raise ContractError(f"PettingZoo factory {factory!r}: module {module!r} has no function {name!r}")
    return function


def make_env(factory: str, **kwargs) -> ParallelEnvAdapter:
    """``factory(**kwargs)``, a ``ParallelEnv`` named ``"module:function"``, adapted to the contract."""
    function = load_factory(factory)
    try:
        parallel_env = function(**kwargs)
    except ImportError as error:  # e.g. PettingZoo itself, imported inside the factory
        raise ContractError(
            f"PettingZoo factory {factory!r} could not import {error.name or error}: install it "
            "(PettingZoo with its classic games: pip install -e '.[pettingzoo]')"
        ) from error
    return ParallelEnvAdapter(parallel_env, where=factory)


class LastJointActionState:
    """A two-agent simultaneous-move ParallelEnv in which each agent observes its opponent's last
    action (``Discrete(A + 1)``, ``A`` = none yet), as one whose shared state is the last joint
    action: ``0`` before the first move, ``1 + A * a_leader + a_follower`` after it. ``leader`` and
    ``follower`` are the env's first and second agents."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.names = dict(zip(AGENTS, env.possible_agents))
        self.possible_agents = list(AGENTS)
        self.num_moves = int(env.action_space(env.possible_agents[0]).n)

    def observation_space(self, agent: str) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(1 + self.num_moves**2)

    def action_space(self, agent: str) -> gym.spaces.Space:
        return self.env.action_space(self.names[agent])

    def _shared(self, observations: dict) -> dict:
        if not observations:
            return {}
        last_leader = int(observations[self.names["follower"]])  # what the follower saw the leader play
        last_follower = int(observations[self.names["leader"]])
        state = 0 if last_leader == self.num_moves else 1 + self.num_moves * last_leader + last_follower
        return {agent: state for agent in AGENTS}

    def _renamed(self, per_agent: dict) -> dict:
        return {agent: per_agent[name] for agent, name in self.names.items() if name in per_agent}

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations, infos = self.env.reset(seed=seed, options=options)
        return self._shared(observations), self._renamed(infos)

    def step(self, actions: dict):
        observations, *rest = self.env.step({self.names[agent]: a for agent, a in actions.items()})
        return (self._shared(observations), *(self._renamed(x) for x in rest))

    def close(self) -> None:
        self.env.close()


def rock_paper_scissors(max_cycles: int = 1000) -> LastJointActionState:
    """PettingZoo's rock-paper-scissors (``classic/rps-v2``; needs the ``pettingzoo`` extra) with
    the last joint action as the state: 10 states, 3x3 actions, zero-sum rewards ``+1 / -1`` (0 for
    a draw), truncated after ``max_cycles`` rounds. ``player_0`` is the leader."""
    import pettingzoo

    return LastJointActionState(pettingzoo.make("parallel", "classic/rps-v2", num_actions=3, max_cycles=max_cycles))
