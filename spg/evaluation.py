"""Evaluation of a leader-follower pair: exact quantities where the model is known, Monte Carlo
returns with standard errors always."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from envs.tabular_vector import TabularVectorEnv
from spg import exact
from spg.checkpoint import check_game, load_checkpoint
from spg.config import Config, SetupError, check_config, upgrade_saved_config
from spg.empirical import EmpiricalGame
from spg.game import GameModel
from spg.policy import TabularSoftmaxPolicy
from spg.reference import local_ascent_value
from spg.sampler import Sampler
from spg.sparse_game import SparseTabularGame
from spg.task import Rollouts, Task, make_task, plan_rollouts, resolve_device

GRADIENT_CHECK_LIMIT = 500  # states up to which evaluations compute ||grad J|| (a dense eq. 19 solve)
EQUILIBRIUM_TOLERANCE = 0.01  # of the value scale (value_scale: the largest |value| any pair of policies reaches)
# J still rising: over the last quarter of a run, more than this share of the value scale (used where
# the local-ascent probe cannot run; docs/results.md)
RISE_TOLERANCE = 0.001
# J over the last quarter "still rising" when the least-squares trend's rise exceeds this share of J's
# spread (max - min) there; a spread above RISE_TOLERANCE without such a trend is an oscillation
TREND_SHARE = 0.5
# the local-ascent probe at a run's end: exact Adam steps on J from the final leader, and the share of
# the climb from the uniform leader's J to the best J they meet that the run must have made
# (and by more than PROBE_FLOOR of the value scale: 1% of the smallest gap of the convergence suite is 5e-5 of it)
PROBE_ITERATIONS, PROBE_SHARE, PROBE_FLOOR = 50, 0.99, 1e-5
VALUE_SCALE_LIMIT = 2_000_000  # transition entries (S A1 A2 S, or S A1 A2 K sparse) up to which value_scale iterates


def exact_metrics(
    game: GameModel, leader: TabularSoftmaxPolicy, follower: TabularSoftmaxPolicy, lam: float
) -> dict[str, float]:
    """``J(theta1)`` (eq. 5 at the follower's best response), both values of the current pair at
    ``rho``, the follower's best-response gap, and, where exact derivatives exist, ``||grad J||``
    (eq. 19 at the best response): how far the leader is from a stationary point of ``J``."""
    pi1, pi2 = leader.probs().detach(), follower.probs().detach()
    with torch.no_grad():
        response = exact.soft_best_response(game, pi1, lam)
        at_response = exact.policy_values(game, pi1, response.probs, lam)
        current = exact.policy_values(game, pi1, pi2, lam)
    metrics = {
        "game/J": float(game.rho @ at_response.v1),
        "game/leader_value": float(game.rho @ current.v1),
        "game/follower_value": float(game.rho @ current.v2),
        "game/best_response_gap": float(game.rho @ (at_response.v2 - current.v2)),
    }
    if lam > 0 and game.num_states <= GRADIENT_CHECK_LIMIT:
        # eq. (19) at the best response computed above (what exact.stackelberg_gradient computes)
        direction = exact.exact_leader_direction(game, leader.logits, response.logits, lam, d1=game.rho)
        metrics["game/J_gradient_norm"] = float(direction.total.norm())
    return metrics


def local_ascent_metrics(
    game: GameModel, leader: TabularSoftmaxPolicy, lam: float, family: str = "game"
) -> dict[str, float]:
    """The probe of a run's end that small gradients cannot fool: ``J`` of the uniform leader, and
    the best ``J`` that ``PROBE_ITERATIONS`` exact Adam steps on ``J`` meet from the final leader
    (:func:`spg.reference.local_ascent_value`). A leader on a plateau or a saddle has a small
    ``||grad J||`` but is still climbed away from. Empty where exact derivatives are too costly."""
    if lam <= 0 or game.num_states > GRADIENT_CHECK_LIMIT:
        return {}
    uniform = torch.zeros_like(leader.logits.detach())
    return {
        f"{family}/J_uniform": exact.stackelberg_objective(game, uniform, lam),
        f"{family}/J_local_ascent": local_ascent_value(game, leader.logits.detach(), lam, iterations=PROBE_ITERATIONS),
    }


def empirical_metrics(
    empirical: EmpiricalGame,
    leader: TabularSoftmaxPolicy,
    follower: TabularSoftmaxPolicy,
    lam: float,
    probe: bool = False,
) -> dict[str, float]:
    """:func:`exact_metrics` on the game estimated from the rollouts so far (tags ``empirical/``),
    with the rollouts' coverage of the game (and, with ``probe``, :func:`local_ascent_metrics`)."""
    model = empirical.model()
    metrics = {
        key.replace("game/", "empirical/"): value for key, value in exact_metrics(model, leader, follower, lam).items()
    }
    if probe:
        metrics.update(local_ascent_metrics(model, leader, lam, family="empirical"))
    metrics["empirical/value_scale"] = value_scale(model)
    metrics.update(empirical.coverage())
    return metrics


def value_scale(game: GameModel, tolerance: float = 1e-3, max_iterations: int = 10_000) -> float:
    """The largest ``|V1(s)|`` or ``|V2(s)|`` any pair of policies reaches from any state (at least
    ``max |r|``): value iteration for the joint-control MDPs that maximise ``+-r1`` and ``+-r2``,
    stopped once the remaining error ``gamma^k max|r| / (1 - gamma)`` is below ``tolerance`` of the
    result, which is then an upper bound. It is ``max |r| / (1 - gamma)`` in games that can repeat
    their largest reward forever, and much smaller where it ends the episode (a goal, a capture).
    Games with more than ``VALUE_SCALE_LIMIT`` transition entries get that bound."""
    bound = game.max_abs_reward() / (1.0 - game.gamma)
    S, (A1, A2) = game.num_states, game.num_actions
    successors = game.num_successors if isinstance(game, SparseTabularGame) else S
    if S * A1 * A2 * successors > VALUE_SCALE_LIMIT:
        return bound
    R = torch.stack([game.R1, -game.R1, game.R2, -game.R2], -1)  # [S, A1, A2, 4]
    values = torch.zeros(game.num_states, 4, dtype=R.dtype, device=R.device)
    remaining = bound
    for _ in range(max_iterations):
        if remaining <= tolerance * max(float(values.max()), game.max_abs_reward()):
            break
        values = (R + game.gamma * game.expected_next(values)).amax((1, 2))
        remaining *= game.gamma
    return max(min(float(values.max()) + remaining, bound), game.max_abs_reward())


def equilibrium_problems(
    metrics: dict, scale: float, tolerance: float = EQUILIBRIUM_TOLERANCE, family: str = "game"
) -> list[str]:
    """Why a pair is not (yet) a Stackelberg equilibrium, in words: a follower away from its best
    response by more than ``tolerance`` times the value scale, and a leader that can still climb.
    Where ``metrics`` hold the local-ascent probe (:func:`local_ascent_metrics`, a run's end), the
    leader fails when exact ascent from it finds more than ``1 - PROBE_SHARE`` of the climb from
    the uniform leader's ``J`` (and more than ``PROBE_FLOOR`` of the scale); elsewhere when
    ``||grad J||`` exceeds ``tolerance`` times the scale or ``J`` rose over the last quarter of the
    run. Empty when every check passes: the follower best-responds and the leader is at a local
    maximum of ``J`` that need not be the global one. ``family``: ``game`` (the env's model) or
    ``empirical`` (the model estimated from the rollouts)."""
    problems = []
    gap = metrics.get(f"{family}/best_response_gap")
    if gap is not None and gap > tolerance * scale:
        problems.append(
            f"the follower is {gap:.3g} below its best response's value (> {tolerance:g} x value scale {scale:.3g})"
        )
    J, ascent, uniform = (metrics.get(f"{family}/{key}") for key in ("J", "J_local_ascent", "J_uniform"))
    if None not in (J, ascent, uniform):
        if ascent - J > (1 - PROBE_SHARE) * max(ascent - uniform, 0.0) + PROBE_FLOOR * scale:
            made = (
                f"the run made {(J - uniform) / (ascent - uniform):.1%} of the climb to there from the uniform leader's {uniform:.5g} (< {PROBE_SHARE:.0%})"
                if ascent > uniform
                else f"the uniform leader's J is {uniform:.5g}"
            )
            problems.append(
                f"{PROBE_ITERATIONS} exact ascent steps from the final leader raise J from {J:.5g} to {ascent:.5g}: {made}; no local maximum yet"
            )
        return problems
    gradient = metrics.get(f"{family}/J_gradient_norm")
    if gradient is not None and gradient > tolerance * scale:
        problems.append(
            f"||grad J|| = {gradient:.3g} (> {tolerance:g} x value scale {scale:.3g}): the leader's J may still rise"
        )
    rise = metrics.get(f"{family}/J_rise_last_quarter")
    if rise is not None and rise > RISE_TOLERANCE * scale:
        motion = j_motion(metrics, scale, family)
        problems.append(
            f"J rose by {rise:.3g} over the last quarter of the run (> {RISE_TOLERANCE:g} x value scale)"
            + (f": it is {motion[0]}" if motion else "")
        )
    return problems


def last_quarter(history: list[tuple[int, float]], iterations: int) -> dict[str, float]:
    """How ``J`` moved over the last quarter of a run, from ``history`` ``[(iteration, J), ...]``
    of its evaluations (from the last one at or before 3/4 of ``iterations`` to the end): its
    ``rise`` (last minus first), the ``trend`` (the least-squares line's rise over the span) and
    the ``spread`` (max - min). Empty with fewer than two such evaluations."""
    before = [i for i, _ in history if i <= 0.75 * iterations]
    points = [(i, J) for i, J in history if before and i >= before[-1]]
    if len(points) < 2:
        return {}
    x = torch.tensor([float(i) for i, _ in points], dtype=torch.float64)
    y = torch.tensor([J for _, J in points], dtype=torch.float64)
    centred = x - x.mean()
    slope = float((centred * (y - y.mean())).sum() / (centred**2).sum())
    return {
        "J_rise_last_quarter": float(y[-1] - y[0]),
        "J_trend_last_quarter": slope * float(x[-1] - x[0]),
        "J_spread_last_quarter": float(y.max() - y.min()),
    }


def j_motion(metrics: dict, scale: float, family: str = "game") -> tuple[str, str] | None:
    """What ``J`` did over the last quarter (:func:`last_quarter`) and what to change, or ``None``
    where it moved by at most ``RISE_TOLERANCE`` of the value scale (or was not recorded):
    "still rising" (a trend that carries most of the spread: the run stopped too early) or
    "oscillating" (a spread without such a trend: the leader's steps, or its noise, are too large)."""
    trend, spread = (metrics.get(f"{family}/J_{key}_last_quarter") for key in ("trend", "spread"))
    if trend is None or spread is None or spread <= RISE_TOLERANCE * scale:
        return None
    if trend > TREND_SHARE * spread:
        return f"still rising (trend {trend:+.3g}, spread {spread:.3g})", "more trainer.iterations"
    return (
        f"oscillating (spread {spread:.3g} without a trend: {trend:+.3g})",
        "a smaller leader step (algo.leader.lr), more averaging of the iterates (algo.averaging) or larger batches (trainer.batch_size)",
    )


def monte_carlo_returns(
    sampler: Sampler,
    leader: TabularSoftmaxPolicy,
    follower: TabularSoftmaxPolicy,
    episodes: int,
    rollouts: Rollouts,
    gamma: float,
) -> dict[str, float]:
    """Mean discounted returns of both players over ``episodes`` rollouts (of ``rollouts``' lengths;
    ``sampler`` draws them), with standard errors."""
    batch = sampler.collect(leader, follower, episodes, rollouts.horizon)
    out = {}
    for name, returns in zip(("leader", "follower"), batch.discounted_returns(rollouts.discount(gamma))):
        out[f"{name}/return"] = float(returns.mean())
        out[f"{name}/return_se"] = float(returns.std() / math.sqrt(len(returns))) if len(returns) > 1 else float("nan")
    return out


def evaluation_sampler(game: GameModel, episodes: int, seed: int, rollouts: Rollouts) -> Sampler:
    """A sampler whose episodes start from ``rho``, the distribution ``J`` is judged on."""
    geometric = game.gamma if rollouts.geometric else None
    return Sampler(TabularVectorEnv(game, episodes, start="rho"), seed=seed, geometric_discount=geometric)


def returns_sampler(task: Task, episodes: int, seed: int, rollouts: Rollouts) -> Sampler:
    """The sampler of a run's final Monte Carlo returns: from ``rho`` on the game's model where
    there is one (:func:`evaluation_sampler`), else the env's own resets."""
    if task.game is not None:
        return evaluation_sampler(task.game, episodes, seed, rollouts)
    return Sampler(task.env, seed=seed, geometric_discount=task.gamma if rollouts.geometric else None)


def metric_rows(metrics: dict) -> list[tuple[str, str]]:
    """(name, value) rows of the exact quantities, or of their estimates from the empirical game
    (where present), and the Monte Carlo returns."""
    rows = []
    for family, note in (("game", ""), ("empirical", ", estimated")):
        if f"{family}/J" not in metrics:
            continue
        rows += [
            (f"J = V1(pi1, B(pi1))(rho){note}", f"{metrics[f'{family}/J']:.6g}"),
            (f"leader value V1 (rho){note}", f"{metrics[f'{family}/leader_value']:.6g}"),
            (f"follower value V2^lam (rho){note}", f"{metrics[f'{family}/follower_value']:.6g}"),
            (f"follower best-response gap{note}", f"{metrics[f'{family}/best_response_gap']:.3g}"),
        ]
        if f"{family}/J_gradient_norm" in metrics:
            rows.append(
                (f"||grad J|| (eq. 19 at the best response){note}", f"{metrics[f'{family}/J_gradient_norm']:.3g}")
            )
        if f"{family}/J_local_ascent" in metrics:
            rows.append(
                (
                    f"J after {PROBE_ITERATIONS} exact ascent steps from here (probe){note}",
                    f"{metrics[f'{family}/J_local_ascent']:.6g}",
                )
            )
            rows.append((f"J of the uniform leader{note}", f"{metrics[f'{family}/J_uniform']:.6g}"))
        if family == "empirical":
            rows.append(
                (
                    "coverage: visited states, pairs, fewest visits",
                    "{:.0f}, {:.0f}, {:.0f}".format(
                        *(metrics[f"empirical/{key}"] for key in ("visited_states", "visited_pairs", "fewest_visits"))
                    ),
                )
            )
    if "J_last_quarter" in metrics:
        rows.append(("J over the last quarter of the run", metrics["J_last_quarter"]))
    if "equilibrium" in metrics:
        rows.append(("equilibrium check", metrics["equilibrium"]))
    for player in ("leader", "follower"):
        rows.append(
            (
                f"{player} return (MC, rewards only)",
                f"{metrics[f'{player}/return']:.6g} +- {metrics[f'{player}/return_se']:.2g}",
            )
        )
    return rows


def format_table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def load_run(path: str | Path) -> tuple[DictConfig, dict]:
    """The resolved config and the checkpoint of a run directory or of a checkpoint file.

    The config comes from the run's ``.hydra/config.yaml`` when it exists, else from the
    checkpoint itself."""
    path = Path(path)
    if not path.exists():
        raise SetupError(
            f"{path} does not exist: give a run directory (printed as 'run directory:' when it trained) or a checkpoint file"
        )
    checkpoint_path = path / "checkpoints" / "last.pt" if path.is_dir() else path
    state = load_checkpoint(checkpoint_path)
    run_dir = checkpoint_path.parent.parent
    hydra_config = run_dir / ".hydra" / "config.yaml"
    source = hydra_config if hydra_config.is_file() else f"the config inside {checkpoint_path}"
    try:
        saved = OmegaConf.load(hydra_config) if hydra_config.is_file() else OmegaConf.create(state["config"])
        cfg = OmegaConf.merge(OmegaConf.structured(Config), upgrade_saved_config(saved))
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        raise SetupError(f"cannot use {source}: {' '.join(str(error).split())}") from None
    check_config(cfg)
    return cfg, state


def empirical_check(
    counts: dict[str, torch.Tensor],
    gamma: float,
    leader: TabularSoftmaxPolicy,
    follower: TabularSoftmaxPolicy,
    lam: float,
) -> dict[str, Any]:
    """The estimates of a run without a model from the empirical game of its saved ``counts``
    (:meth:`EmpiricalGame.state_dict`): :func:`empirical_metrics` with the local-ascent probe, and
    the equilibrium check on them, as the run's final table gives them."""
    (S, A1), A2 = leader.logits.shape, follower.logits.shape[1]
    empirical = EmpiricalGame(S, (A1, A2), gamma, counts["transitions"].device)
    empirical.load_state_dict(counts)
    metrics = empirical_metrics(empirical, leader, follower, lam, probe=True)
    metrics["equilibrium"] = empirical_verdict(metrics)
    return metrics


def empirical_verdict(metrics: dict) -> str:
    """The equilibrium check on the estimates of the empirical game (tags ``empirical/``)."""
    problems = equilibrium_problems(metrics, metrics["empirical/value_scale"], family="empirical")
    verdict = "; ".join(problems) if problems else "ok"
    return (
        f"{verdict} (estimated from the empirical game of {metrics['empirical/transitions']:.0f} sampled transitions)"
    )


def evaluate_run(path: str | Path, *, episodes: int = 5000, seed: int = 12345, device: str = "cpu") -> dict:
    """Exact ``J``, values and best-response gap where the run's game has a model, else their
    estimates from the run's empirical game with the equilibrium check (:func:`empirical_check`);
    Monte Carlo returns with standard errors; both policies per state."""
    cfg, state = load_run(path)
    task = make_task(cfg, resolve_device(device))
    S, (A1, A2) = task.num_states, task.num_actions
    check_game(state, Path(path), (S, A1, A2), task.fingerprint)  # the game file may have changed since
    leader = TabularSoftmaxPolicy(S, A1, logits=state["leader"]["logits"])
    follower = TabularSoftmaxPolicy(S, A2, logits=state["follower"]["logits"])
    lam = float(cfg.algo.lam)
    rollouts = plan_rollouts(task.gamma, cfg.trainer.horizon, cfg.trainer.get("rollouts", "auto"))
    result: dict = {"checkpoint_iteration": int(state["iteration"]), "algorithm": cfg.algo.name, "lam": lam}
    if task.game is not None:
        result.update(exact_metrics(task.game, leader, follower, lam))
    elif state.get("empirical") is not None:  # the counts of every rollout the run sampled
        result.update(empirical_check(state["empirical"], task.gamma, leader, follower, lam))
    sampler = returns_sampler(task, episodes, seed, rollouts)
    result.update(monte_carlo_returns(sampler, leader, follower, episodes, rollouts, task.gamma))
    result["leader_policy"] = leader.probs().detach().cpu().tolist()
    result["follower_policy"] = follower.probs().detach().cpu().tolist()
    task.env.close()
    return result
