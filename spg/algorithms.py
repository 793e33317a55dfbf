"""Two-timescale learners behind one interface: ``step(source)`` updates both policies from an
objective source (:mod:`spg.objectives`: the exact model or a sampled batch).

- ``spg`` / ``exact_spg``: the Stackelberg policy gradient, the leader along eq. (19);
- ``pg`` / ``exact_pg``: simultaneous (naive) policy gradient, the leader along ``grad_1 V1``.

The ``exact_`` names only say which source the trainer builds; the update is the same.

**Leader** (eq. 8): Adam ascent on the direction by default. Adam's step is measured in logits
(about ``lr`` per coordinate whatever the reward scale, ``1/(1 - gamma)`` or ``1/lam``), so no
single update can saturate the softmax; ``lr_t = lr (t0 / (t + t0))^power`` decays it
(Assumption 1: the leader is the slow player).

**Follower** (eq. 9, natural form): ``theta2 <- theta2 + kappa (Q_lam / lam - theta2)``, centred per
state, where ``Q_lam`` is the follower's soft Q function of the averaged MDP (eqs. 13-14). This is
the natural policy gradient of the entropy-regularised MDP with step ``eta = kappa (1 - gamma) / lam``,
which converges linearly to the soft best response whatever the state distribution (Cen et al.,
2021); ``kappa = 1`` is soft policy iteration. ``kappa`` is dimensionless: the fraction of the way
to the soft-greedy policy. From samples, ``Q`` comes from the batch's bootstrapped targets
``r + gamma V(s')`` grouped by ``(s, a2)`` (:func:`spg.estimators.joint_q_estimates`); entries
without samples keep their logits, and ``kappa`` decays as ``(t0 / (t + t0))^power`` (more slowly
than the leader's step) so that the batches' noise in the follower's policy fades. ``rule:
gradient`` is plain eq. (9) instead.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from spg import exact
from spg.averaging import IterateAverage
from spg.cg import CGResult
from spg.errors import SetupError, invalid
from spg.objectives import ESTIMATORS, ObjectiveSource
from spg.policy import TabularSoftmaxPolicy
from spg.schedules import StepSize, check_two_timescales
from spg.stackelberg import closed_form_solution, leader_direction


@dataclass(frozen=True)
class AlgorithmSpec:
    """What an algorithm is: whether its leader follows eq. (19) (``stackelberg``; else the
    direct gradient ``grad_1 V1``), and where its objectives come from (``source``): the game's
    ``model``, the ``samples`` of each batch alone, or the ``empirical`` game estimated from every
    batch so far."""

    name: str
    stackelberg: bool
    source: str


ALGORITHMS = {
    spec.name: spec
    for spec in (
        AlgorithmSpec("spg", stackelberg=True, source="samples"),
        AlgorithmSpec("pg", stackelberg=False, source="samples"),
        AlgorithmSpec("exact_spg", stackelberg=True, source="model"),
        AlgorithmSpec("exact_pg", stackelberg=False, source="model"),
        AlgorithmSpec("model_spg", stackelberg=True, source="empirical"),
    )
}
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
FOLLOWER_UPDATES = ("npg", "gradient")
SOLVERS = ("closed_form", "cg")


@dataclass
class CGSettings:
    """Conjugate gradient for ``(-H + damping I) w = grad_2 V1`` (``algo.solve=cg``), confined to
    ``||w|| <= ||grad_2 V1|| / damping`` when ``damping > 0``."""

    iters: int = field(default=20, metadata={"help": "with algo.solve=cg: the iteration cap of CG"})
    tol: float = field(default=1e-3, metadata={"help": "with algo.solve=cg: CG's relative residual tolerance"})
    damping: float = field(
        default=1e-3,
        metadata={
            "help": "with algo.solve=cg: the damping delta added to -H (small; scaled to the Hessian's spectrum)"
        },
    )
    warm_start: bool = field(
        default=True, metadata={"help": "with algo.solve=cg: start CG from the previous update's solution"}
    )


@dataclass
class FollowerSettings:
    """The follower's update, its step decaying more slowly than the leader's (two timescales,
    Assumption 1), so the noise a sampled follower keeps around its best response fades while it
    still tracks the leader."""

    rule: str = field(
        default="npg", metadata={"help": "npg (natural soft-Q update, step kappa) or gradient (plain eq. 9, step lr)"}
    )
    kappa: float = field(
        default=0.3, metadata={"help": "rule=npg: the fraction of the way to the soft-greedy policy, in (0, 1]"}
    )
    power: float = field(
        default=0.75,
        metadata={
            "help": "the follower's step (kappa or lr) decays as (t0 / (t + t0))^power over the leader's updates t; below the leader's power"
        },
    )
    t0: float = field(default=50.0, metadata={"help": "the t0 of the follower step's decay (t0 / (t + t0))^power"})
    lr: float = field(default=1.0, metadata={"help": "rule=gradient: the follower's step at t = 0"})
    steps: int = field(
        default=1,
        metadata={
            "help": "follower updates per leader update (on a model: until no logit moves more than tol; sampled: each on a fresh batch)"
        },
    )
    tol: float = field(
        default=1e-8, metadata={"help": "on a model: the follower's updates stop once no logit moves more than this"}
    )


@dataclass
class StepResult:
    """What one step did: scalar metrics for the logs and the leader's update direction."""

    metrics: dict[str, float]
    leader_direction: torch.Tensor


def _check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(value).all():
        raise FloatingPointError(
            f"non-finite estimate of {name}: the step was stopped before touching the policies "
            "(lower algo.leader.lr or algo.follower.kappa, raise algo.cg.damping, or check the rewards for overflow)"
        )
    return value


CG_DIVERGED_RESIDUAL = 1e6  # a relative residual this large: the solve blew up (a sound one stays near or below 1)


def cg_diverged(cg: CGResult, implicit: torch.Tensor) -> bool:
    """A CG solve not to be trusted: a non-finite solution, residual or implicit term, or a
    relative residual above ``CG_DIVERGED_RESIDUAL``."""
    residual = cg.residual
    finite = (
        math.isfinite(residual) and bool(torch.isfinite(cg.solution).all()) and bool(torch.isfinite(implicit).all())
    )
    return not (finite and residual <= CG_DIVERGED_RESIDUAL)


class TwoTimescalePolicyGradient:
    """``spg``, ``pg``, ``exact_spg`` or ``exact_pg`` on a leader and a follower policy, with
    settings :func:`check_algo` accepts (:func:`make_learner` builds it from the config)."""

    def __init__(
        self,
        name: str,
        leader: TabularSoftmaxPolicy,
        follower: TabularSoftmaxPolicy,
        *,
        lam: float,
        leader_step: StepSize,
        leader_optimizer: str,
        leader_betas: tuple[float, float],
        follower_settings: FollowerSettings,
        solve: str,
        cg: CGSettings,
        sub_batches: int,
        averaging: float,
    ) -> None:
        self.follower_settings = f = follower_settings
        self.follower_decay = StepSize(1.0, f.power, f.t0)  # the factor on kappa (or lr) after t leader updates
        self.name = name
        self.spec = ALGORITHMS[name]
        self.stackelberg = self.spec.stackelberg
        if self.stackelberg and lam <= 0:
            warnings.warn(
                f"{name} with lam = {lam}: without entropy regularisation the follower Hessian may be singular "
                "(Assumption 2); the solve relies on cg.damping",
                stacklevel=2,
            )
        self.leader, self.follower = leader, follower
        self.lam = lam
        self.leader_lr = leader_step
        check_two_timescales(leader_step, self.follower_decay)
        self.solve = solve
        self.cg = cg
        self.sub_batches = sub_batches
        self.leader_betas = tuple(leader_betas)
        options = {"betas": self.leader_betas} if leader_optimizer == "adam" else {}
        self.leader_optimizer = OPTIMIZERS[leader_optimizer](
            leader.parameters(), lr=leader_step(0), maximize=True, **options
        )
        self.leader_updates = 0
        self.follower_updates = 0
        self._cg_solution: torch.Tensor | None = None
        self.cg_fallbacks = 0  # updates whose CG solve diverged and took the closed form instead
        self.average = IterateAverage(leader, follower, averaging)  # the policies a run returns

    # -- the follower ---------------------------------------------------------------------------
    @torch.no_grad()
    def _follower_update(self, source: ObjectiveSource, q: tuple | None = None) -> dict[str, float]:
        """One follower update from ``source`` (``q``, its ``q_functions``, reused when already
        computed); returns its metrics."""
        theta1, theta2 = self.leader.logits, self.follower.logits
        f = self.follower_settings
        decay = self.follower_decay(self.leader_updates)
        metrics: dict[str, float] = {"charts/follower_step": decay * (f.lr if f.rule == "gradient" else f.kappa)}
        if f.rule == "gradient":
            with torch.enable_grad():
                (gradient,) = torch.autograd.grad(source.objectives(theta1, theta2, self.lam)[1], theta2)
            change = _check_finite("grad_theta2 V2^lam (the follower's gradient)", decay * f.lr * gradient)
            metrics["follower/gradient_norm"] = float(gradient.norm())
        else:
            _, q2, _, counts = q if q is not None else source.q_functions(theta1, theta2, self.lam)
            seen = counts > 0
            gap = torch.where(seen, q2 / self.lam - theta2, torch.zeros_like(theta2))
            centre = gap.sum(-1, keepdim=True) / seen.sum(-1, keepdim=True).clamp_min(1)
            change = decay * f.kappa * torch.where(seen, gap - centre, torch.zeros_like(theta2))
            _check_finite("the follower's soft Q function", change)
            if not source.exact:
                metrics["follower/q_coverage"] = float(seen.to(q2.dtype).mean())
        theta2.add_(change)
        self.follower_updates += 1
        metrics["follower/logit_change"] = float(change.abs().max())
        return metrics

    def follower_step(self, source: ObjectiveSource) -> StepResult:
        """Follower updates alone, the leader held fixed (on an exact source: up to
        ``follower.steps`` of them, until the largest logit change is below ``follower.tol``)."""
        rounds = self.follower_settings.steps if source.exact else 1
        for _ in range(rounds):
            metrics = self._follower_update(source)
            if metrics["follower/logit_change"] <= self.follower_settings.tol:
                break
        self.average.update(self.leader_updates)
        return StepResult(metrics, torch.zeros_like(self.leader.logits))

    # -- one update of both players ----------------------------------------------------------------
    def step(self, source: ObjectiveSource) -> StepResult:
        """One update of both players. On an exact source the follower first tracks its best
        response (``follower_step``), then the leader moves; on a sampled one both move from the
        same policies and the same batch (eqs. 8-9)."""
        metrics: dict[str, float] = {}
        if source.exact:
            metrics.update(self.follower_step(source).metrics)
        direct, implicit, q = self._direction(source, metrics)
        _check_finite("grad_theta1 V1 (the direct part of eq. 19)", direct)
        _check_finite("the implicit part of eq. 19", implicit)
        direction = direct + implicit
        metrics.update(
            {
                "leader/direct_norm": float(direct.norm()),
                "leader/implicit_norm": float(implicit.norm()),
                "leader/direction_norm": float(direction.norm()),
                "charts/leader_lr": self.leader_lr(self.leader_updates),
            }
        )
        if not source.exact:
            metrics.update(self._follower_update(source, q=q if self.sub_batches == 1 else None))
        self._leader_update(direction)
        self.average.update(self.leader_updates)
        with torch.no_grad():
            metrics["leader/min_prob"] = float(self.leader.probs().min())
            metrics["follower/min_prob"] = float(self.follower.probs().min())
        return StepResult(metrics, direction.detach())

    def _direction(
        self, source: ObjectiveSource, metrics: dict[str, float]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """The leader's direction as ``(direct, implicit)`` parts, and the Q functions it used."""
        theta1, theta2 = self.leader.logits, self.follower.logits
        if not self.stackelberg:
            (direct,) = torch.autograd.grad(source.leader_objective(theta1, theta2, self.lam), theta1)
            return direct, torch.zeros_like(direct), None
        if self.solve == "cg":
            solved = self._cg_direction(source, metrics)
            if solved is not None:
                return *solved, None
            if self.lam <= 0:  # no closed form to fall back to
                raise FloatingPointError(
                    "conjugate gradient diverged (non-finite or growing residual) and algo.lam = 0 leaves no closed-form "
                    "solve to fall back to: raise algo.cg.damping or set algo.lam > 0"
                )
            self.cg_fallbacks += 1
            metrics["cg/fallbacks"] = float(self.cg_fallbacks)
        return self._closed_form_direction(source)

    def _closed_form_direction(self, source: ObjectiveSource) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """Eq. (19) with the closed-form ``w`` at the follower's soft best response."""
        theta1, theta2 = self.leader.logits, self.follower.logits
        # closed form: w from the first part's Q estimates, the implicit term from the last part
        parts = source.split(min(self.sub_batches, 2))
        q = parts[0].q_functions(theta1, theta2, self.lam)
        w = closed_form_solution(q[0], self.follower.probs().detach(), q[2], self.lam)
        (direct,) = torch.autograd.grad(parts[0].leader_objective(theta1, theta2, self.lam), theta1)
        (implicit,) = torch.autograd.grad(parts[-1].implicit_objective(theta1, theta2, self.lam, w), theta1)
        return direct, implicit, q

    def reference_direction(self, source: ObjectiveSource) -> torch.Tensor:
        """The direction this learner estimates, computed on an exact source at the current
        policies (for ``estimator/cosine_to_exact``); changes no state."""
        if self.stackelberg and self.solve == "cg":
            theta1, theta2, damping = self.leader.logits, self.follower.logits, self.cg.damping
            return exact.exact_leader_direction(
                source.game, theta1, theta2, self.lam, d1=source.game.rho, damping=damping
            ).total
        direct, implicit, _ = self._direction(source, {})
        return direct + implicit

    def _cg_direction(
        self, source: ObjectiveSource, metrics: dict[str, float]
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Eq. (19) with ``w`` from conjugate gradient on the (sampled) follower Hessian; with
        sub-batches the factors come from independent parts. ``None`` when the solve diverged
        (:func:`cg_diverged`): the caller falls back to the closed form for this update."""
        theta1, theta2 = self.leader.logits, self.follower.logits
        parts = source.split(self.sub_batches)
        v1, v2, mixed_v2 = parts[0].curvature_objectives(theta1, theta2, self.lam)
        hessian_v2 = v2 if len(parts) == 1 else parts[1].curvature_objectives(theta1, theta2, self.lam)[1]
        if len(parts) == 3:
            _, own_v2, own_mixed = parts[2].curvature_objectives(theta1, theta2, self.lam)
            mixed_v2 = own_mixed if own_mixed is not None else own_v2
        result = leader_direction(
            v1,
            hessian_v2,
            theta1,
            theta2,
            damping=self.cg.damping,
            cg_tol=self.cg.tol,
            cg_iterations=self.cg.iters,
            warm_start=self._cg_solution if self.cg.warm_start else None,
            v2_mixed=mixed_v2,
        )
        if cg_diverged(result.cg, result.implicit):
            self._cg_solution = None  # no warm start from a diverged solve
            metrics.update(
                {"cg/diverged": 1.0, "cg/fallbacks": float(self.cg_fallbacks), "cg/damping": self.cg.damping}
            )
            return None
        solved = not (result.cg.nonpositive_curvature or result.cg.hit_radius)
        self._cg_solution = result.cg.solution if solved else None  # warm-start only from clean solves
        metrics.update(
            {
                "cg/iterations": float(result.cg.iterations),
                "cg/residual": result.cg.residual,
                "cg/nonpositive_curvature": float(result.cg.nonpositive_curvature),
                "cg/hit_radius": float(result.cg.hit_radius),
                "cg/damping": self.cg.damping,
                "cg/diverged": 0.0,
                "cg/fallbacks": float(self.cg_fallbacks),
            }
        )
        return result.direct, result.implicit

    def _leader_update(self, direction: torch.Tensor) -> None:
        for group in self.leader_optimizer.param_groups:
            group["lr"] = self.leader_lr(self.leader_updates)
        self.leader.logits.grad = direction.detach().clone()
        self.leader_optimizer.step()
        self.leader_optimizer.zero_grad(set_to_none=True)
        self.leader_updates += 1

    def state_dict(self) -> dict:
        return {
            "leader_optimizer": self.leader_optimizer.state_dict(),
            "leader_updates": self.leader_updates,
            "follower_updates": self.follower_updates,
            "cg_solution": self._cg_solution,
            "cg_fallbacks": self.cg_fallbacks,
        }

    def load_state_dict(self, state: dict) -> None:
        self.leader_optimizer.load_state_dict(state["leader_optimizer"])
        for group in self.leader_optimizer.param_groups:  # the configured betas, not the checkpoint's
            if "betas" in group:
                group["betas"] = self.leader_betas
        self.leader_updates = int(state["leader_updates"])
        self.follower_updates = int(state["follower_updates"])
        self._cg_solution = state["cg_solution"]
        self.cg_fallbacks = int(state.get("cg_fallbacks", 0))  # checkpoints written before the count hold none


def check_algo(a) -> None:
    """Reject every setting of the ``algo`` node (:class:`spg.config.AlgoConfig`) that no learner
    can run, each error naming the setting, its value and the allowed range (:class:`SetupError`).
    The one check of the learner's settings: :func:`make_learner` and the config check call it."""
    if a.name not in ALGORITHMS:
        raise SetupError(f"algo.name = {a.name!r}: choose algo={'|'.join(ALGORITHMS)}")
    if a.leader.optimizer not in OPTIMIZERS:
        raise SetupError(f"algo.leader.optimizer = {a.leader.optimizer!r}: choose {' or '.join(OPTIMIZERS)}")
    if a.lam < 0:
        raise SetupError(f"algo.lam = {a.lam}: the follower's entropy weight must be >= 0")
    f = a.follower
    if f.rule not in FOLLOWER_UPDATES:
        raise SetupError(f"algo.follower.rule = {f.rule!r}: choose {' or '.join(FOLLOWER_UPDATES)}")
    if f.rule == "npg" and a.lam <= 0:
        raise SetupError(
            "algo.lam = 0: the follower's natural update aims at softmax(Q / lam) and needs lam > 0; set algo.lam > 0 or algo.follower.rule=gradient"
        )
    if not 0 < f.kappa <= 1:
        raise SetupError(
            f"algo.follower.kappa = {f.kappa}: the fraction of the way to the soft-greedy policy must lie in (0, 1]"
        )
    if f.power < 0:
        raise invalid("algo.follower.power", f.power, "the follower's step must not grow: power >= 0")
    if f.t0 <= 0:
        raise invalid("algo.follower.t0", f.t0, "the follower step's decay (t0 / (t + t0))^power needs t0 > 0")
    if f.steps < 1:
        raise invalid("algo.follower.steps", f.steps, "must be >= 1")
    if f.lr <= 0:
        raise invalid("algo.follower.lr", f.lr, "must be > 0")
    if f.tol < 0:
        raise invalid("algo.follower.tol", f.tol, "must be >= 0")
    if a.solve not in SOLVERS:
        raise SetupError(f"algo.solve = {a.solve!r}: choose {' or '.join(SOLVERS)}")
    if a.solve == "closed_form" and a.lam <= 0 and ALGORITHMS[a.name].stackelberg:
        raise SetupError(
            "algo.lam = 0: the closed-form solve of eq. (19) divides by lam; set algo.lam > 0 or algo.solve=cg"
        )
    if a.solve == "cg" and not ALGORITHMS[a.name].stackelberg:
        raise SetupError(
            f"algo.solve = cg: algo={a.name} does not follow eq. (19), so nothing is solved; drop algo.solve (and algo.cg)"
        )
    if a.estimator not in ESTIMATORS:
        raise SetupError(f"algo.estimator = {a.estimator!r}: choose {' or '.join(ESTIMATORS)}")
    if not 0 <= a.probes <= 1:
        raise invalid(
            "algo.probes",
            a.probes,
            "the probability of a uniform follower action at the probe step is in [0, 1] (0: no probes)",
        )
    if a.averaging < 0:
        raise invalid(
            "algo.averaging", a.averaging, "the iterate average's weight eta must be >= 0 (0: the last iterates)"
        )
    if a.follower_warmup < 0:
        raise invalid("algo.follower_warmup", a.follower_warmup, "must be >= 0")
    for key in ("iters", "tol", "damping"):
        if a.cg[key] < 0:
            raise invalid(f"algo.cg.{key}", a.cg[key], "must be >= 0")
    if a.sub_batches not in (1, 2, 3):
        raise SetupError(
            f"algo.sub_batches = {a.sub_batches}: use 1, 2 or 3 (one batch; leader | follower; + the mixed term)"
        )
    if len(a.leader.betas) != 2 or not all(0 <= b < 1 for b in a.leader.betas):
        raise invalid(
            "algo.leader.betas", list(a.leader.betas), "Adam's betas are two numbers in [0, 1), e.g. [0.9,0.9]"
        )
    if a.leader.lr <= 0:
        raise invalid("algo.leader.lr", a.leader.lr, "the leader's step must be > 0")
    if a.leader.t0 <= 0:
        raise invalid("algo.leader.t0", a.leader.t0, "the step's decay lr (t0 / (t + t0))^power needs t0 > 0")
    if a.leader.power < 0:
        raise invalid("algo.leader.power", a.leader.power, "the step must not grow: power >= 0")


def make_learner(
    algo, num_states: int, num_actions: tuple[int, int], device: torch.device | str | None = None
) -> tuple[TabularSoftmaxPolicy, TabularSoftmaxPolicy, TwoTimescalePolicyGradient]:
    """Uniform leader and follower policies and the learner ``algo`` describes (the ``algo``
    node of the config, :class:`spg.config.AlgoConfig`, whose defaults are the shipped ones),
    after :func:`check_algo`."""
    check_algo(algo)
    leader = TabularSoftmaxPolicy(num_states, num_actions[0], device=device)
    follower = TabularSoftmaxPolicy(num_states, num_actions[1], device=device)
    algorithm = TwoTimescalePolicyGradient(
        algo.name,
        leader,
        follower,
        lam=algo.lam,
        leader_step=StepSize(algo.leader.lr, algo.leader.power, algo.leader.t0),
        leader_optimizer=algo.leader.optimizer,
        leader_betas=tuple(algo.leader.betas),
        follower_settings=FollowerSettings(**algo.follower),
        solve=algo.solve,
        cg=CGSettings(**algo.cg),
        sub_batches=algo.sub_batches,
        averaging=algo.averaging,
    )
    return leader, follower, algorithm
