"""Rollouts: ``N`` trajectories of horizon ``T`` from a two-player vector env, into a torch batch.

The sampler needs no model. On the native :class:`~envs.TabularVectorEnv` it stays in torch on
the game's device; on any other vector env of the contract (:class:`~envs.python_vector.PythonVectorEnv`,
Gymnasium's ``AsyncVectorEnv`` over :class:`~envs.contract.RewardPairInInfo`) it steps through
numpy and reads the reward pairs from ``info["reward_pair"]``.
Episodes that end before ``T`` (a terminal state entered, or the env's truncation) are masked
after their last step (next-step autoreset steps are never recorded); a rollout stops as soon
as every episode has ended, and a batch holds only the steps up to its longest episode.

Follower probes (``probe_discount``, ``probe_share = p > 0``): each trajectory has one probe step
``t* ~ Geometric(1 - gamma)`` (so probes land where the discounted occupancy does), at which the
follower's action comes from the mixture ``(1 - p) pi2 + p uniform``; it acts on-policy
everywhere else. The path's importance weight ``w_t`` (1 before the probe step,
``pi2(a*|s*) / ((1 - p) pi2(a*|s*) + p / A2)`` from it on, at most ``1 / (1 - p + p / A2)``;
``A2 pi2(a*|s*)`` when ``p = 1``) keeps every estimator unbiased for the on-policy values, while
every follower action of every visited state keeps being tried: a near-deterministic follower can
still learn that another action became better (docs/estimators.md).
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np
import torch

from envs.contract import CONTRACT, ContractError, check_spaces, describe_failure
from envs.tabular_vector import TabularVectorEnv
from spg.faults import EnvFault
from spg.policy import TabularSoftmaxPolicy


@dataclass
class Batch:
    """``[N, L]`` tensors: states, both players' actions and rewards, ``mask`` (True on the steps
    that happened; an episode that ended early is False from then on) and ``weights``, the
    importance weight of the path up to and including step ``t`` (1 without follower probes);
    ``remaining [N]``, with geometric lengths, the steps each trajectory's length still had when
    its episode ended (0 when the length ended it, and without geometric lengths);
    ``final_states [N]``, the state whose entry terminated the episode (-1 when it did not
    terminate: it ran to the horizon or to its length, or was truncated). ``horizon`` is the rollout horizon ``T``; the tensors hold its first ``L <= T`` steps, ``L < T``
    when every episode ended before ``T`` (the steps not held are all masked)."""

    states: torch.Tensor
    leader_actions: torch.Tensor
    follower_actions: torch.Tensor
    leader_rewards: torch.Tensor
    follower_rewards: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor
    remaining: torch.Tensor
    final_states: torch.Tensor
    horizon: int

    @property
    def num_trajectories(self) -> int:
        return self.states.shape[0]

    @property
    def length(self) -> int:
        """``L``: the steps held (up to the last step of the longest episode)."""
        return self.states.shape[1]

    @property
    def env_steps(self) -> int:
        """The steps actually played (masked steps excluded)."""
        return int(self.mask.sum())

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "horizon"}

    def select(self, index: torch.Tensor | slice) -> "Batch":
        return Batch(**{name: x[index] for name, x in self.tensors().items()}, horizon=self.horizon)

    def trimmed(self) -> "Batch":
        """The same batch without the trailing steps in which every episode had ended."""
        played = self.mask.any(0).nonzero()
        length = int(played[-1]) + 1 if len(played) else 1
        if length == self.length:
            return self
        tensors = {name: x[:, :length].contiguous() if x.ndim == 2 else x for name, x in self.tensors().items()}
        return Batch(**tensors, horizon=self.horizon)

    def split(self, parts: int) -> list["Batch"]:
        """``parts`` disjoint sub-batches of trajectories (independent estimates)."""
        if not 1 <= parts <= self.num_trajectories:
            raise ValueError(f"cannot split {self.num_trajectories} trajectories into {parts} sub-batches")
        return [self.select(idx) for idx in torch.arange(self.num_trajectories).chunk(parts)]

    def discounted_returns(self, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-trajectory ``sum_t gamma^t w_t r_t`` of the leader and of the follower (no entropy
        bonus; ``w_t`` the importance weights, so their mean is unbiased for the on-policy values)."""
        discount = self.weights * gamma ** torch.arange(
            self.length, dtype=self.leader_rewards.dtype, device=self.states.device
        )
        return (self.leader_rewards * discount).sum(1), (self.follower_rewards * discount).sum(1)


class Sampler:
    """Collects :class:`Batch` es of ``batch_size`` trajectories of ``horizon`` steps from ``env``.

    ``seed`` seeds both the env (first reset) and the policies' action stream, from two
    independent seeds, so a run is reproducible and the streams are not correlated.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        *,
        seed: int,
        dtype: torch.dtype = torch.float64,
        probe_discount: float | None = None,
        probe_share: float = 1.0,
        geometric_discount: float | None = None,
    ) -> None:
        self.num_states, self.num_leader_actions, self.num_follower_actions = check_spaces(
            env.single_observation_space, env.single_action_space, str(env)
        )
        self.env, self.dtype = env, dtype
        self.native = isinstance(env.unwrapped, TabularVectorEnv) if hasattr(env, "unwrapped") else False
        self.device = env.unwrapped.device if self.native else torch.device("cpu")
        if probe_discount is not None and not 0.0 <= probe_discount < 1.0:
            raise ValueError(
                f"probe_discount = {probe_discount}: the probes' geometric time needs a discount in [0, 1)"
            )
        self.probe_discount = probe_discount
        if not 0.0 <= probe_share <= 1.0:
            raise ValueError(
                f"probe_share = {probe_share}: the uniform's share of the follower's probe step must be in [0, 1] (0: no probes)"
            )
        self.probe_share = probe_share
        if geometric_discount is not None and not 0.0 <= geometric_discount < 1.0:
            raise ValueError(
                f"geometric_discount = {geometric_discount}: trajectories continue with a probability in [0, 1)"
            )
        self.geometric_discount = geometric_discount
        env_seed, action_seed = np.random.SeedSequence(seed).generate_state(2)
        self.env_seed: int | None = int(env_seed)
        self.generator = torch.Generator(device=self.device).manual_seed(int(action_seed))

    def state_dict(self) -> dict:
        """The random state of the rollouts: the action stream, the native env's generator, and
        whether the env still awaits its first (seeded) reset."""
        return {
            "generator": self.generator.get_state(),
            "env": self.env.unwrapped.generator.get_state() if self.native else None,
            "env_seeded": self.env_seed is None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if state["env"] is not None and self.native:
            self.env.unwrapped.generator.set_state(state["env"])
        if state["env_seeded"]:
            self.env_seed = None

    def collect(
        self, leader: TabularSoftmaxPolicy, follower: TabularSoftmaxPolicy, batch_size: int, horizon: int
    ) -> Batch:
        if batch_size < 1 or horizon < 1:
            raise ValueError(f"batch_size = {batch_size}, horizon = {horizon}: both must be >= 1")
        n = self.env.num_envs
        rounds = math.ceil(batch_size / n)
        # a native env steps only the copies a round needs; other envs step all of theirs
        sizes = [min(n, batch_size - k * n) if self.native else n for k in range(rounds)]
        parts = [self._rollout(leader, follower, horizon, size) for size in sizes]
        if rounds == 1:
            batch = parts[0]
        else:
            length = max(p.length for p in parts)
            padded = [_padded(p, length).tensors() for p in parts]
            batch = Batch(**{name: torch.cat([p[name] for p in padded]) for name in padded[0]}, horizon=horizon)
        return batch if batch.num_trajectories == batch_size else batch.select(slice(0, batch_size)).trimmed()

    def _reset_seed(self) -> int | None:
        seed, self.env_seed = self.env_seed, None
        return seed

    @torch.no_grad()
    def _rollout(self, leader, follower, horizon: int, n: int) -> Batch:
        """``n`` trajectories: the first ``n`` copies of a native env, all copies of another."""
        copies = None  # the copies still stepped: all, or (native envs) the indices of those still alive
        first = slice(0, n) if self.native and n < self.env.num_envs else None  # the env copies this round steps
        if self.native:
            s = self.env.unwrapped.reset_torch(seed=self._reset_seed(), num_copies=n)
        else:
            obs, _ = self._env_call("reset", seed=self._reset_seed())
            s = torch.as_tensor(np.asarray(obs), dtype=torch.long)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        # native episodes end only in terminal states, when the env truncates them, or at their geometric length
        terminal = self.env.unwrapped.terminal if self.native else None
        if terminal is not None:
            alive = ~terminal[s]  # an episode starting in a terminal state is empty
        lengths = None
        rollout_horizon = horizon
        if self.geometric_discount is not None:  # each trajectory's own length, capped by the horizon
            lengths = self._draw_lengths(n, horizon)
            horizon = int(lengths.max())  # one host sync; the buffers are cut to the longest trajectory
        # time-major buffers: each step writes contiguous rows; transposed once at the end
        states = torch.zeros((horizon, n), dtype=torch.long, device=self.device)
        leader_actions, follower_actions = torch.zeros_like(states), torch.zeros_like(states)
        rewards = torch.zeros((horizon, n, 2), dtype=self.dtype, device=self.device)
        can_terminate = not self.native or terminal is not None  # else episodes end only by truncation or length
        episodes_can_end = can_terminate or self.env.unwrapped.max_episode_steps is not None or lengths is not None
        # mask[t]: the episode was alive at step t (written step by step when episodes can end)
        mask = torch.full((horizon, n), not episodes_can_end, dtype=torch.bool, device=self.device)
        steps = horizon
        # the policies are fixed during a rollout: tabulate their CDFs once, draw all uniforms at once
        follower_probs = follower.probs().detach().to(self.device)
        leader_cdf = torch.cumsum(leader.probs().detach(), -1).to(self.device)
        follower_cdf = torch.cumsum(follower_probs, -1)
        uniforms = torch.rand(horizon, 2, n, 1, generator=self.generator, dtype=leader_cdf.dtype, device=self.device)
        ratios = torch.ones((horizon, n), dtype=self.dtype, device=self.device)  # pi2 / behaviour, per step
        probe_time, probe_action = self._draw_probes(n, follower.num_actions)
        share, A2 = self.probe_share, follower.num_actions
        last_probe = int(probe_time.max()) if probe_time is not None else -1  # one host sync, not one per step
        all_lengths = lengths
        final_states = torch.full((n,), -1, dtype=torch.long, device=self.device)

        def record(buffer: torch.Tensor, t: int, x: torch.Tensor) -> None:
            if copies is None:
                buffer[t] = x
            else:
                buffer[t, copies] = x

        for t in range(horizon):
            u = uniforms[t] if copies is None else uniforms[t][:, copies]
            a1 = _inverse_cdf(leader_cdf, s, u[0])
            a2 = _inverse_cdf(follower_cdf, s, u[1])
            if t <= last_probe:
                probing = probe_time == t
                a2 = torch.where(probing & (probe_action >= 0), probe_action, a2)
                # pi2 / behaviour at the probe step, the behaviour (1 - share) pi2 + share / A2 (A2 pi2 when share = 1)
                scaled = A2 * follower_probs[s, a2]
                ratio = scaled / ((1.0 - share) * scaled + share)
                record(ratios, t, torch.where(probing, ratio.to(self.dtype), 1.0))
            record(states, t, s)
            record(leader_actions, t, a1)
            record(follower_actions, t, a2)
            if episodes_can_end:
                record(mask, t, alive)
            if self.native:
                s, r, terminated, truncated = self.env.unwrapped.step_torch(
                    a1, a2, copies if copies is not None else first
                )
            else:
                s, r, terminated, truncated = self._step_numpy(a1, a2)
            record(rewards, t, r.to(self.dtype))
            # an episode that ended contributes nothing from its next step on; stop when all have
            if can_terminate:  # the state each terminating episode entered
                entered = torch.where(alive & terminated, s, -1)
                if copies is None:
                    final_states = torch.maximum(final_states, entered)
                else:
                    final_states[copies] = torch.maximum(final_states[copies], entered)
            if episodes_can_end:
                alive = alive & ~(terminated | truncated)
                if lengths is not None:
                    alive = alive & (lengths > t + 1)
                live = int(alive.sum())
                if live == 0:
                    steps = t + 1
                    break
                if self.native and 2 * live <= len(alive):  # step only the copies still alive from now on
                    keep = alive.nonzero().squeeze(1)
                    copies = keep if copies is None else copies[keep]
                    s, alive = s[keep], alive[keep]
                    if probe_time is not None:
                        probe_time, probe_action = probe_time[keep], probe_action[keep]
                    if lengths is not None:
                        lengths = lengths[keep]
        if episodes_can_end:
            rewards *= mask[..., None]
        rewards = rewards[:steps].transpose(0, 1)
        played = mask[:steps].sum(0)
        remaining = torch.zeros_like(played) if all_lengths is None else all_lengths - played
        return Batch(
            states[:steps].T.contiguous(),
            leader_actions[:steps].T.contiguous(),
            follower_actions[:steps].T.contiguous(),
            rewards[..., 0].contiguous(),
            rewards[..., 1].contiguous(),
            mask[:steps].T.contiguous(),
            torch.cumprod(ratios[:steps], 0).T.contiguous(),
            remaining,
            final_states,
            rollout_horizon,
        )

    def _draw_lengths(self, n: int, horizon: int) -> torch.Tensor:
        """Trajectory lengths ``tau = 1 + Geometric(1 - gamma)``, at most ``horizon``: the trajectory
        goes on after each step with probability ``gamma``, so its undiscounted sums estimate the
        discounted values without bias (up to the cap) and derivatives alike (``tau`` does not
        depend on the policies)."""
        u = torch.rand(n, generator=self.generator, dtype=torch.float64, device=self.device)
        if self.geometric_discount == 0.0:
            return torch.ones(n, dtype=torch.long, device=self.device)
        return (1 + torch.floor(torch.log1p(-u) / math.log(self.geometric_discount)).long()).clamp(max=horizon)

    def _draw_probes(self, n: int, num_actions: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Each trajectory's probe time ``t* ~ Geometric(1 - gamma)`` (``t* = 0`` when ``gamma = 0``)
        and its uniformly drawn follower action."""
        if self.probe_discount is None or self.probe_share == 0.0:
            return None, None
        u = torch.rand(n, generator=self.generator, dtype=torch.float64, device=self.device)
        if self.probe_discount == 0.0:
            time = torch.zeros(n, dtype=torch.long, device=self.device)
        else:
            time = torch.floor(torch.log1p(-u) / math.log(self.probe_discount)).long()
        action = torch.randint(num_actions, (n,), generator=self.generator, device=self.device)
        if self.probe_share < 1.0:  # the on-policy action stays (marked -1) unless the uniform is drawn
            on_policy = (
                torch.rand(n, generator=self.generator, dtype=torch.float64, device=self.device) >= self.probe_share
            )
            action = torch.where(on_policy, -1, action)
        return time, action

    def _env_call(self, method: str, *args, **kwargs):
        """``env.reset`` or ``env.step`` of a Python env: an exception of the env's own (a broken
        contract aside) or a step over its time limit is an :class:`~spg.faults.EnvFault` saying
        what happened, with the traceback as its detail."""
        try:
            return getattr(self.env, method)(*args, **kwargs)
        except ContractError:
            raise
        except Exception as error:
            raise EnvFault(describe_failure(error, method), detail=traceback.format_exc()) from error

    def _step_numpy(self, a1: torch.Tensor, a2: torch.Tensor):
        actions = torch.stack([a1, a2], dim=-1).cpu().numpy()
        obs, reward, terminated, truncated, info = self._env_call("step", actions)
        if "env_error" in info:  # a subprocess copy raised (envs.contract.RewardPairInInfo)
            failed = int(np.flatnonzero(info["_env_error"])[0])
            raise EnvFault(str(info["env_error"][failed]), detail=str(info["env_error_detail"][failed]))
        if "contract_error" in info:  # found in a subprocess copy (envs.contract.RewardPairInInfo)
            raise ContractError(
                next(str(m) for m, found in zip(info["contract_error"], info["_contract_error"]) if found)
            )
        pair = np.asarray(info.get("reward_pair", reward), dtype=np.float64)
        if pair.shape != (self.env.num_envs, 2):
            raise ContractError(
                f"{self.env}: {CONTRACT}; got rewards of shape {pair.shape} from {self.env.num_envs} copies"
            )
        as_bool = lambda x: torch.as_tensor(np.asarray(x, dtype=bool))  # noqa: E731
        return (
            torch.as_tensor(np.asarray(obs), dtype=torch.long),
            torch.as_tensor(pair),
            as_bool(terminated),
            as_bool(truncated),
        )


def _inverse_cdf(cdf: torch.Tensor, states: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Actions ``a ~ pi(.|s)`` from the tabulated CDF ``[S, A]`` and uniforms ``u [N, 1]``."""
    return (cdf.index_select(0, states) < u).sum(-1).clamp_max_(cdf.shape[-1] - 1)


def _padded(batch: Batch, length: int) -> Batch:
    """``batch`` extended to ``length`` steps by masked steps (weight 1, everything else 0)."""
    extra = length - batch.length
    if extra == 0:
        return batch
    pad = lambda x, value=0: torch.nn.functional.pad(x, (0, extra), value=value) if x.ndim == 2 else x  # noqa: E731
    tensors = {name: pad(x, 1.0 if name == "weights" else 0) for name, x in batch.tensors().items()}
    return Batch(**tensors, horizon=batch.horizon)
