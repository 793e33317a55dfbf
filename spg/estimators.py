"""DiCE-style surrogates whose derivatives of every order are unbiased for the truncated values.

With ``l_t = log pi1(a1_t|s_t) + log pi2(a2_t|s_t)``, ``L_t = sum_{k<=t} l_k`` and
``box(x) = exp(x - x.detach())`` (value 1, derivatives those of ``exp(x)``), the DiCE objective
``sum_t gamma^t r_t box(L_t)`` has ``E[grad^n] = grad^n V`` for every ``n`` (docs/estimators.md).
We use its Loaded-DiCE form, which keeps that property with a baseline ``b(s_t)``:

    F = G_0 + sum_t [box(L_t) - box(L_{t-1})] gamma^t (G_t - b(s_t)),   box(L_{-1}) = 1,

``G_t`` the return-to-go from ``t`` (discounted to ``t``). The baseline of each trajectory is the
mean return-to-go at the same state in the *other* trajectories (leave-one-out), so it is
independent of the trajectory it serves and no derivative picks up bias.

The follower's objective ``V2^lam`` (eqs. 3-4) adds ``lam H(pi2(.|s_t))``. Its value joins the
return-to-go of the previous step (``s_t`` is decided by the actions up to ``t - 1``), and its
direct dependence on ``theta2`` stays differentiable through
``lam gamma^t box(L_{t-1}) (H_t - H_t.detach())``, so the follower Hessian and the mixed
derivative see it. (Folding ``-lam log pi2`` into a detached reward would bias the Hessian.)

With follower probes (:mod:`spg.sampler`) the batch carries the path's importance weights ``w_t``
(detached): every reward and entropy bonus is weighted by the weight of the path that decided
it, and the baseline term by ``w_t`` too, which keeps all derivatives unbiased (docs/estimators.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spg.policy import entropy_from_logits
from spg.sampler import Batch


def magic_box(x: torch.Tensor) -> torch.Tensor:
    """``exp(x - x.detach())``: evaluates to 1, differentiates like ``exp(x)``."""
    return torch.exp(x - x.detach())


def returns_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = sum_{k >= t} gamma^(k - t) r_k`` along axis 1 of ``[N, T, ...]``."""
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out


def leave_one_out_baseline(
    states: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, num_states: int
) -> torch.Tensor:
    """For each step ``(i, t)``, the mean of ``values [N, T(, k)]`` over the visits to
    ``states[i, t]`` by the other trajectories (0 where no other trajectory visited that state).
    Several value columns (both players' returns) share one grouping of the visits."""
    N, T = states.shape
    columns = values.reshape(N * T, -1) * mask.reshape(-1, 1)
    weights = mask.to(values.dtype).reshape(-1, 1)
    flat_states = states.reshape(-1)
    trajectory = torch.arange(N, device=states.device).repeat_interleave(T)
    _, group = torch.unique(trajectory * num_states + flat_states, return_inverse=True)

    def sums(index: torch.Tensor, size: int) -> torch.Tensor:
        both = torch.cat([columns, weights], dim=1)
        return torch.zeros(size, both.shape[1], dtype=values.dtype, device=values.device).index_add_(0, index, both)

    total = sums(flat_states, num_states)[flat_states]
    own = sums(group, int(group.max()) + 1)[group]
    other = total - own
    other_count = other[:, -1:]
    baseline = torch.where(other_count > 0, other[:, :-1] / other_count.clamp_min(1.0), torch.zeros_like(other[:, :-1]))
    return baseline.reshape(values.shape)


@dataclass
class Returns:
    """What every estimator of one batch needs, computed once at the follower's current logits:
    both players' importance-weighted returns-to-go ``G1, G2 [N, T]`` (``G2`` with the entropy
    bonus of the states reached), that bonus per step (weighted by ``w_{t-1}``), ``w_{t-1}`` itself
    (the weight of the path that decided ``s_t``), and the leave-one-out state baselines ``b1, b2``
    of the on-policy returns-to-go ``G / w`` (zeros without baselines; steps of weight 0, after a
    probe of an action the follower gives probability 0 to float precision, have no on-policy
    return and are left out). With centred rewards, ``offset [N, 2]`` is what the centring took
    from each trajectory's return (zeros otherwise)."""

    G1: torch.Tensor
    G2: torch.Tensor
    entropy_value: torch.Tensor
    w_before: torch.Tensor
    b1: torch.Tensor
    b2: torch.Tensor
    offset: torch.Tensor


@torch.no_grad()
def weighted_returns(
    batch: Batch,
    follower_logits: torch.Tensor,
    *,
    gamma: float,
    lam: float,
    baseline: bool = True,
    center: bool = False,
) -> Returns:
    """The :class:`Returns` of ``batch`` at ``follower_logits``.

    ``center``: every step's reward of each player (the follower's with its entropy bonus) less
    ``c``, the mean reward per step of the *other* trajectories. For rollouts of geometric length
    (:class:`spg.sampler.Sampler` with ``geometric_discount``, ``gamma = 1`` here) this removes the
    variance the random length adds to every return; ``c`` does not depend on the trajectory it
    serves, and ``E[grad^n box(L_t)] = 0`` at every order, so no derivative picks up bias. Q
    estimates shift by ``c`` times the expected remaining length, the same for every action.
    An episode that ends before its length (a terminal state) stays centred for the steps its
    length still had (``batch.remaining``), at the weight of its last step: the centred steps then
    run to the length, which does not depend on the policies, not to the episode's end, which does."""
    dtype = follower_logits.dtype
    m, w = batch.mask.to(dtype), batch.weights.to(dtype)
    w_before = torch.cat([torch.ones_like(w[:, :1]), w[:, :-1]], dim=1)
    entropy_value = entropy_from_logits(follower_logits)[batch.states] * m * w_before  # H(pi2(.|s_t))
    next_entropy = torch.cat([entropy_value[:, 1:], torch.zeros_like(entropy_value[:, :1])], dim=1)
    rewards = torch.stack(
        [batch.leader_rewards.to(dtype) * w, batch.follower_rewards.to(dtype) * w + gamma * lam * next_entropy], -1
    )
    offset = torch.zeros_like(rewards[:, 0])
    if center:
        steps = (m * w).sum(1)  # importance-weighted steps of each trajectory
        totals = torch.cat([rewards.sum(1), steps[:, None]], 1)
        others = totals.sum(0) - totals  # the other trajectories' reward sums and steps
        c = others[:, :2] / others[:, 2:].clamp_min(1e-12)
        played = m.sum(1)
        last = (played.long() - 1).clamp_min(0)[:, None]  # the last step played (masks are prefixes)
        tail = batch.remaining.to(dtype)[:, None] * w.gather(1, last) * (played[:, None] > 0)
        centred = (m * w).scatter_add(1, last, tail)  # the steps centred, weighted
        rewards = rewards - c[:, None, :] * centred[..., None]
        offset = c * centred.sum(1, keepdim=True)
    G = returns_to_go(rewards, gamma)  # both players in one pass
    G1, G2 = G.unbind(-1)
    if baseline:
        weighted = batch.mask & (w > 0)
        on_policy = torch.where(weighted[..., None], G / w[..., None], 0.0)
        b1, b2 = leave_one_out_baseline(batch.states, on_policy, weighted, follower_logits.shape[0]).unbind(-1)
    else:
        b1 = b2 = torch.zeros_like(G1)
    return Returns(G1, G2, entropy_value, w_before, b1, b2, offset)


def surrogate_objectives(
    batch: Batch,
    leader_logits: torch.Tensor,
    follower_logits: torch.Tensor,
    *,
    gamma: float,
    lam: float,
    baseline: bool = True,
    center: bool = False,
    returns: Returns | None = None,
    start_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Surrogates ``(F1, F2)`` of ``V1`` and ``V2^lam`` at the batch's start distribution from one
    batch: scalars whose values are the Monte Carlo returns and whose derivatives of every order in
    both logits are unbiased for those of the truncated values (``returns``: the batch's
    :class:`Returns`, when already computed; ``center``: see :func:`weighted_returns`).
    ``start_weights [N]``: each trajectory's weight in ``F1`` alone, ``rho(s_0) / mu(s_0)`` to
    estimate the leader's value at ``rho`` from rollouts that start from ``mu`` (a weight fixed
    before the first action leaves every derivative unbiased)."""
    states, mask = batch.states, batch.mask
    dtype = leader_logits.dtype
    m, w = mask.to(dtype), batch.weights.to(dtype)
    T = states.shape[1]
    log_p1 = torch.log_softmax(leader_logits, -1)[states, batch.leader_actions]
    log_p2 = torch.log_softmax(follower_logits, -1)[states, batch.follower_actions]
    dice = magic_box(torch.cumsum((log_p1 + log_p2) * m, dim=1))
    dice_before = torch.cat([torch.ones_like(dice[:, :1]), dice[:, :-1]], dim=1)  # box(L_{t-1})
    score = dice - dice_before  # value 0; its derivatives weigh the returns from t on
    discount = gamma ** torch.arange(T, dtype=dtype, device=states.device)
    R = (
        returns
        if returns is not None
        else weighted_returns(batch, follower_logits, gamma=gamma, lam=lam, baseline=baseline, center=center)
    )
    # b(s_t) estimates the on-policy return-to-go; the term it enters is weighted by w_t
    weight1 = discount * (R.G1 - w * R.b1)
    weight2 = discount * (R.G2 - w * R.b2)
    F1 = R.G1[:, 0] + R.offset[:, 0] + (score * weight1).sum(1)
    if start_weights is not None:
        F1 = F1 * start_weights.to(dtype)
    entropy = entropy_from_logits(follower_logits)[states]  # H(pi2(.|s_t)), differentiable in theta2
    entropy_direct = (dice_before * (entropy - entropy.detach()) * (lam * discount * m * R.w_before)).sum(1)
    F2 = R.G2[:, 0] + R.offset[:, 1] + lam * R.entropy_value[:, 0] + (score * weight2).sum(1) + entropy_direct
    return F1.mean(), F2.mean()


def cut_by_horizon(batch: Batch, gamma: float) -> torch.Tensor:
    """``[N]``: the trajectories a fixed horizon cut while their episodes ran (their last step's
    next state is unknown). ``gamma`` is the estimators' discount: 1 marks rollouts of geometric
    length, which end by their own draw."""
    return (batch.mask.sum(1) == batch.horizon) & (batch.final_states < 0) & (0.0 < gamma < 1.0)


@torch.no_grad()
def state_values(
    batch: Batch, returns: Returns, num_states: int, *, gamma: float, tol: float = 1e-9, max_iterations: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Values ``[S, 2]`` of both players (the follower's soft, without the entropy of the state
    itself) from every visit: the mean on-policy return-to-go ``G_t / w_{t-1}``, where a trajectory
    the fixed horizon cut while it ran continues as the value of the last state it reached,

        sample_t = sum_{t <= k < L-1} gamma^(k-t) r_k + gamma^(L-1-t) V(s_{L-1})   (importance weighted),

    so that truncation biases no visit (the last state of a cut trajectory must itself have
    samples), and the samples of each state ``[S]`` (values 0 where none). ``V`` solves the resulting
    linear fixed point ``V = b + C V`` by iteration, a contraction: each state's tail coefficients
    average ``E[gamma^(L-1-t)] < gamma`` (importance weights average 1); the rare state whose
    few visits carry a probe's large weight into their tails has its row scaled down to ``gamma``."""
    G = torch.stack([returns.G1, returns.G2], -1)
    w_before = returns.w_before
    safe = w_before.clamp_min(torch.finfo(w_before.dtype).tiny)
    last = (batch.mask.sum(1) - 1).clamp_min(0)[:, None]  # the last step played (masks are prefixes)
    cut = cut_by_horizon(batch, gamma)
    steps = torch.arange(batch.length, device=G.device)
    ahead = (last - steps).clamp_min(0)  # steps from t to the last one
    tail = cut[:, None].to(G.dtype) * gamma ** ahead.to(G.dtype)
    reward_part = (G - tail[..., None] * G.gather(1, last[..., None].expand(-1, -1, 2))) / safe[..., None]
    coefficient = tail * w_before.gather(1, last) / safe
    valid = batch.mask & (w_before > 0) & ~(cut[:, None] & (steps == last))  # a cut trajectory's last step: no sample
    ends = batch.states.gather(1, last).expand_as(batch.states)
    sampled = torch.zeros(num_states, dtype=torch.bool, device=G.device).index_fill_(0, batch.states[valid], True)
    valid &= ~cut[:, None] | sampled[ends]  # a cut trajectory goes on only as the value of a state with samples
    visited, targets = batch.states[valid], ends[valid]
    reward_part, coefficient = reward_part[valid], coefficient[valid]
    visits = torch.zeros(num_states, dtype=G.dtype, device=G.device).index_add_(
        0, visited, torch.ones_like(coefficient)
    )
    counts = visits[:, None].clamp_min(1.0)
    base = torch.zeros(num_states, 2, dtype=G.dtype, device=G.device).index_add_(0, visited, reward_part) / counts
    if not bool(cut.any()):
        return base, visits
    rows = (
        torch.zeros_like(counts).index_add_(0, visited, coefficient[:, None]) / counts
    )  # each state's sum over C's row
    coefficient = coefficient * (gamma / rows.clamp_min(gamma))[visited, 0]
    values = base
    for _ in range(max_iterations):
        updated = base + torch.zeros_like(base).index_add_(0, visited, coefficient[:, None] * values[targets]) / counts
        settled = (updated - values).abs().max() <= tol * (1.0 + updated.abs().max())
        values = updated
        if settled:
            break
    return values, visits


@torch.no_grad()
def joint_q_estimates(
    batch: Batch,
    follower_logits: torch.Tensor,
    num_leader_actions: int,
    *,
    gamma: float,
    lam: float,
    returns: Returns | None = None,
    horizon_fraction: float = 0.5,
    bootstrap: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q functions of both players over joint actions, ``Q1(s, a1, a2) = E[r1 + gamma V1(s')]`` and
    the follower's soft ``Q2(s, a1, a2) = E[r2 + gamma (lam H(pi2(.|s')) + V2^lam(s'))]``, with the
    sample counts ``[S, A1, A2]`` (0 where unvisited).

    ``bootstrap``: every transition ``(s_t, a_t, r_t, s_{t+1})`` whose next state has a value (or
    whose episode ended at ``t``: no future) gives the sample ``r_t + gamma V(s_{t+1})``, with the
    batch's state values :func:`state_values`. The randomness of everything after
    ``s_{t+1}`` then enters only through ``V``'s pooled means, which the leader actions compared at
    ``(s, a2)`` largely share. Otherwise each visited step in the first ``horizon_fraction`` of the
    horizon (where truncation bias is smallest) gives its whole return-to-go. Either way the
    importance weights of the steps after ``t`` apply (the actions at ``t`` are conditioned on,
    so their own ratio drops out)."""
    R = (
        returns
        if returns is not None
        else weighted_returns(batch, follower_logits, gamma=gamma, lam=lam, baseline=False)
    )
    w = batch.weights.to(follower_logits.dtype)
    S, A2 = follower_logits.shape
    G = torch.stack([R.G1, R.G2], -1)
    if bootstrap:
        later = torch.cat([G[:, 1:], torch.zeros_like(G[:, :1])], 1)
        after = torch.cat([batch.mask[:, 1:], torch.zeros_like(batch.mask[:, :1])], 1)  # s_{t+1} was played
        next_states = torch.cat([batch.states[:, 1:], torch.zeros_like(batch.states[:, :1])], 1)
        values, visits = state_values(batch, R, S, gamma=gamma)
        targets = (G - gamma * later) / w.clamp_min(torch.finfo(w.dtype).tiny)[..., None] + gamma * values[
            next_states
        ] * after[..., None]
        horizon_end = torch.arange(batch.length, device=w.device) + 1 == batch.horizon
        valid = batch.mask & (w > 0) & ~(cut_by_horizon(batch, gamma)[:, None] & horizon_end)  # next state unknown
        valid &= ~after | (visits[next_states] > 0)  # a next state without value samples gives no target
    else:
        used = max(1, int(batch.horizon * horizon_fraction))
        targets = G / w.clamp_min(torch.finfo(w.dtype).tiny)[..., None]
        valid = batch.mask & (w > 0) & (torch.arange(batch.length, device=w.device) < used)
    keep = valid.reshape(-1)  # weight 0: no on-policy return (see Returns)
    index = ((batch.states * num_leader_actions + batch.leader_actions) * A2 + batch.follower_actions).reshape(-1)[keep]
    samples = targets.reshape(-1, 2)[keep]
    size = S * num_leader_actions * A2
    sums = torch.zeros(size, 3, dtype=samples.dtype, device=samples.device).index_add_(
        0, index, torch.cat([samples, torch.ones_like(samples[:, :1])], -1)
    )
    sums = sums.reshape(S, num_leader_actions, A2, 3)
    counts = sums[..., 2]
    return sums[..., 0] / counts.clamp_min(1.0), sums[..., 1] / counts.clamp_min(1.0), counts


def over_leader_actions(q: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``q [S, A1, A2]``'s samples pooled over the leader's actions, as sampled: ``[S, A2]``."""
    return (counts * q).sum(1) / counts.sum(1).clamp_min(1.0)


def implicit_surrogate(
    batch: Batch,
    leader_logits: torch.Tensor,
    follower_logits: torch.Tensor,
    w: torch.Tensor,
    *,
    gamma: float,
    lam: float,
    returns: Returns | None = None,
    start_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """A scalar whose ``theta1``-gradient is unbiased for eq. (19)'s implicit term at the
    follower's soft best response, ``sum_s d(s) sum_a2 pi2(a2|s) w(s, a2) grad_1 Q2^lam(s, a2)``
    (docs/mathematics.md; ``d`` the occupancy from the batch's start distribution, or from ``rho``
    with ``start_weights [N]`` as in :func:`surrogate_objectives`): the REINFORCE form

        sum_j grad log pi1(a1_j|s_j) gamma^j W_j (G2_j - b2(s_j)),     W_j = sum_{t <= j} w(s_t, a2_t),

    ``G2_j`` the follower's (importance-weighted) soft return-to-go and ``b2`` its leave-one-out
    state baseline (independent of ``a1_j``, so it leaves the expectation unchanged)."""
    dtype = leader_logits.dtype
    m, weights = batch.mask.to(dtype), batch.weights.to(dtype)
    R = returns if returns is not None else weighted_returns(batch, follower_logits, gamma=gamma, lam=lam)
    with torch.no_grad():
        W = torch.cumsum(w.to(dtype)[batch.states, batch.follower_actions] * m, dim=1)
        discount = gamma ** torch.arange(batch.length, dtype=dtype, device=batch.states.device)
        coefficient = discount * W * (R.G2 - weights * R.b2) * m
        if start_weights is not None:
            coefficient = coefficient * start_weights.to(dtype)[:, None]
    log_p1 = torch.log_softmax(leader_logits, -1)[batch.states, batch.leader_actions]
    return (log_p1 * coefficient).sum(1).mean()
