"""Two-timescale learners behind one interface: ``step(data)`` updates both policies from a
:class:`~spg.sampler.Batch` (sampled algorithms) or a :class:`~spg.game.TabularGame` (exact ones).

- ``spg``: the Stackelberg policy gradient, leader along eq. (19), follower along eq. (9);
- ``pg``: simultaneous (naive) policy gradient, the leader ignoring the follower's response;
- ``exact_spg`` / ``exact_pg``: the same with exact derivatives from the model.

Both players move from the same ``(theta1_t, theta2_t)`` (eqs. 8-9), by gradient *ascent* with
step sizes ``alpha_t`` and ``beta_t`` (plain ascent is SGD without momentum; Adam is available).
``max_leader_norm`` optionally clips the leader's direction (a trust region: sampled estimates of
eq. 19 are heavy-tailed where the follower Hessian is nearly singular); clipping rescales the
direction and so leaves the stationary points unchanged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from spg import exact
from spg.estimators import surrogate_objectives
from spg.game import TabularGame
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Batch
from spg.schedules import StepSize, check_two_timescales
from spg.stackelberg import leader_direction

# name -> (leader follows eq. 19, derivatives from the model)
ALGORITHMS = {"spg": (True, False), "pg": (False, False), "exact_spg": (True, True), "exact_pg": (False, True)}
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


@dataclass
class CGSettings:
    """Conjugate gradient for ``(-H + damping I) w = grad_2 V1``: an iteration cap, a relative
    tolerance, and the damping ``delta`` (small; scaled to the Hessian's spectrum)."""

    iters: int = 20
    tol: float = 1e-3
    damping: float = 1e-3
    warm_start: bool = True


@dataclass
class StepResult:
    """What one step did: scalar metrics for the logs and the leader's update direction."""

    metrics: dict[str, float]
    leader_direction: torch.Tensor
    follower_gradient: torch.Tensor = field(repr=False)


def _check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(value).all():
        raise FloatingPointError(
            f"non-finite estimate of {name}: the step was stopped before touching the policies "
            "(lower the step sizes, raise cg.damping, or check the rewards for overflow)"
        )
    return value


class TwoTimescalePolicyGradient:
    """``spg``, ``pg``, ``exact_spg`` or ``exact_pg`` on a leader and a follower policy."""

    def __init__(
        self,
        name: str,
        leader: TabularSoftmaxPolicy,
        follower: TabularSoftmaxPolicy,
        *,
        lam: float,
        gamma: float,
        leader_step: StepSize,
        follower_step: StepSize,
        optimizer: str = "sgd",
        cg: CGSettings | None = None,
        sub_batches: int = 1,
        baseline: bool = True,
        max_leader_norm: float | None = None,
    ) -> None:
        if name not in ALGORITHMS:
            raise ValueError(f"algorithm {name!r} is unknown: choose one of {', '.join(ALGORITHMS)}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {optimizer!r} is unknown: choose one of {', '.join(OPTIMIZERS)}")
        if sub_batches not in (1, 2, 3):
            raise ValueError(f"sub_batches = {sub_batches}: use 1 (one batch), 2 (leader | follower) or 3 (+ mixed)")
        if lam < 0:
            raise ValueError(f"lam = {lam}: the follower's entropy weight must be >= 0")
        self.name = name
        self.stackelberg, self.exact = ALGORITHMS[name]
        if self.stackelberg and lam <= 0:
            warnings.warn(
                f"{name} with lam = {lam}: without entropy regularisation the follower Hessian may be singular "
                "(Assumption 2); the solve relies on cg.damping",
                stacklevel=2,
            )
        self.leader, self.follower = leader, follower
        self.lam, self.gamma = lam, gamma
        self.leader_lr, self.follower_lr = leader_step, follower_step
        check_two_timescales(leader_step, follower_step)
        self.cg = cg if cg is not None else (CGSettings(iters=500, tol=1e-10, damping=0.0) if self.exact else CGSettings())
        self.sub_batches, self.baseline = sub_batches, baseline
        self.max_leader_norm = max_leader_norm
        make = OPTIMIZERS[optimizer]
        self.leader_optimizer = make(leader.parameters(), lr=leader_step(0), maximize=True)
        self.follower_optimizer = make(follower.parameters(), lr=follower_step(0), maximize=True)
        self.leader_updates = 0
        self.follower_updates = 0
        self._cg_solution: torch.Tensor | None = None

    # -- objectives: the exact values or the sampled surrogates, as differentiable scalars --------
    def _objectives(self, data: Batch | TabularGame) -> tuple[torch.Tensor, torch.Tensor]:
        theta1, theta2 = self.leader.logits, self.follower.logits
        if isinstance(data, TabularGame):
            return exact.objectives(data, theta1, theta2, self.lam)
        return surrogate_objectives(data, theta1, theta2, gamma=self.gamma, lam=self.lam, baseline=self.baseline)

    def _check_data(self, data: Batch | TabularGame) -> None:
        if self.exact != isinstance(data, TabularGame):
            wanted = "the game model (a TabularGame)" if self.exact else "a sampled Batch"
            raise TypeError(f"{self.name} steps on {wanted}, got {type(data).__name__}")

    def follower_step(self, data: Batch | TabularGame) -> StepResult:
        """An extra follower update (eq. 9) with the leader held fixed."""
        self._check_data(data)
        _, v2 = self._objectives(data)
        (g2,) = torch.autograd.grad(v2, self.follower.logits)
        self._apply(None, _check_finite("grad_theta2 V2^lam", g2))
        return StepResult({"follower/gradient_norm": float(g2.norm())}, torch.zeros_like(self.leader.logits), g2)

    def step(self, data: Batch | TabularGame) -> StepResult:
        """One simultaneous update of both players from the same policies (eqs. 8-9)."""
        self._check_data(data)
        theta1, theta2 = self.leader.logits, self.follower.logits
        metrics: dict[str, float] = {}
        if not self.stackelberg:
            v1, v2 = self._objectives(data)
            (direction,) = torch.autograd.grad(v1, theta1, retain_graph=True)
            (g2,) = torch.autograd.grad(v2, theta2)
            direct, implicit = direction, torch.zeros_like(direction)
        else:
            parts = [data] if self.exact or self.sub_batches == 1 else data.split(self.sub_batches)
            v1, v2 = self._objectives(parts[0])
            hessian_v2 = v2 if len(parts) == 1 else self._objectives(parts[1])[1]
            mixed_v2 = None if len(parts) < 3 else self._objectives(parts[2])[1]
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
            solved = not (result.cg.nonpositive_curvature or result.cg.hit_radius)
            self._cg_solution = result.cg.solution if solved else None  # warm-start only from clean solves
            direction, direct, implicit = result.total, result.direct, result.implicit
            if len(parts) == 1:
                g2 = result.follower_gradient
            else:  # the follower's own step uses the whole batch
                (g2,) = torch.autograd.grad(self._objectives(data)[1], theta2)
            metrics.update(
                {
                    "cg/iterations": float(result.cg.iterations),
                    "cg/residual": result.cg.residual,
                    "cg/nonpositive_curvature": float(result.cg.nonpositive_curvature),
                    "cg/hit_radius": float(result.cg.hit_radius),
                    "cg/damping": self.cg.damping,
                }
            )
        _check_finite("grad_theta1 V1 (the direct part of eq. 19)", direct)
        _check_finite("the implicit part of eq. 19 (mixed derivative times the CG solution)", implicit)
        _check_finite("grad_theta2 V2^lam (the follower's gradient)", g2)
        metrics.update(
            {
                "leader/direct_norm": float(direct.norm()),
                "leader/implicit_norm": float(implicit.norm()),
                "leader/direction_norm": float(direction.norm()),
                "follower/gradient_norm": float(g2.norm()),
                "charts/leader_lr": self.leader_lr(self.leader_updates),
                "charts/follower_lr": self.follower_lr(self.follower_updates),
            }
        )
        if not self.exact:
            metrics["leader/surrogate_value"] = float(v1.detach())
            metrics["follower/surrogate_value"] = float(v2.detach())
        if self.max_leader_norm is not None and metrics["leader/direction_norm"] > self.max_leader_norm:
            direction = direction * (self.max_leader_norm / metrics["leader/direction_norm"])
        self._apply(direction, g2)
        return StepResult(metrics, direction.detach(), g2.detach())

    def _apply(self, leader_direction: torch.Tensor | None, follower_gradient: torch.Tensor) -> None:
        updates = [(self.follower_optimizer, self.follower, follower_gradient, self.follower_lr(self.follower_updates))]
        if leader_direction is not None:
            updates.append((self.leader_optimizer, self.leader, leader_direction, self.leader_lr(self.leader_updates)))
        for optimizer, policy, gradient, lr in updates:
            for group in optimizer.param_groups:
                group["lr"] = lr
            policy.logits.grad = gradient.detach().clone()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.follower_updates += 1
        self.leader_updates += leader_direction is not None

    def state_dict(self) -> dict:
        return {
            "leader_optimizer": self.leader_optimizer.state_dict(),
            "follower_optimizer": self.follower_optimizer.state_dict(),
            "leader_updates": self.leader_updates,
            "follower_updates": self.follower_updates,
            "cg_solution": self._cg_solution,
        }

    def load_state_dict(self, state: dict) -> None:
        self.leader_optimizer.load_state_dict(state["leader_optimizer"])
        self.follower_optimizer.load_state_dict(state["follower_optimizer"])
        self.leader_updates = int(state["leader_updates"])
        self.follower_updates = int(state["follower_updates"])
        self._cg_solution = state["cg_solution"]
