"""Structured Hydra configs: the schemas behind ``configs/`` (BenchMARL's split into the task
``env``, the ``algo`` and the experiment ``trainer``). Registered in Hydra's ``ConfigStore`` so a
mistyped key or a wrongly typed value is rejected before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from spg.algorithms import ALGORITHMS, FOLLOWER_UPDATES, OPTIMIZERS, SOLVERS, CGSettings, FollowerSettings


ROLLOUTS = ("auto", "fixed", "geometric")  # trainer.rollouts: how long sampled trajectories are (spg.task.plan_rollouts)


class SetupError(ValueError):
    """A run that cannot start: the message names the problem and the setting to change."""


@dataclass
class EnvConfig:
    """The game. ``kind: gym`` makes Gymnasium id ``id`` with ``kwargs`` (``"module:Name-v0"``
    imports ``module`` first); ``kind: pettingzoo`` calls ``id = "module:function"`` with ``kwargs``
    for a two-agent PettingZoo ParallelEnv; ``kind: file`` loads the ``.npz`` game file at ``path``.
    ``vectorization``: ``auto`` (native when the id has a vector entry point, else sync),
    ``native``, ``sync`` or ``async``. ``num_envs``: copies stepped at once (default: the batch
    size for native envs; otherwise at most 512 with ``sync``, one per CPU core with ``async``). ``gamma``: the discount, needed only for envs without a model."""

    kind: str = "gym"
    id: str = "spg/RandomGame-v0"
    kwargs: dict[str, Any] = field(default_factory=dict)
    path: Optional[str] = None
    vectorization: str = "auto"
    num_envs: Optional[int] = None
    gamma: Optional[float] = None


@dataclass
class LeaderConfig:
    """The leader's optimiser (``adam`` or ``sgd``) on its direction, with step
    ``lr (t0 / (t + t0))^power``; with Adam ``lr`` is roughly the largest logit change per update."""

    optimizer: str = "adam"
    lr: float = 0.1
    power: float = 1.0
    t0: float = 50.0


@dataclass
class AlgoConfig:
    """``name``: spg | pg | exact_spg | exact_pg. ``lam``: the follower's entropy weight.
    ``follower_warmup``: follower-only updates (each on a fresh batch) before the leader's first
    step. ``probes``: one uniformly random follower action per sampled trajectory (importance
    weighted), so a near-deterministic follower still sees every action. ``solve``: eq. (19)'s
    ``w = (-H)^-1 grad_2 V1`` in ``closed_form`` (exact at the follower's soft best response) or
    by ``cg`` on the (sampled) Hessian with the ``cg`` settings."""

    name: str = "spg"
    lam: float = 0.1
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    follower: FollowerSettings = field(default_factory=FollowerSettings)
    follower_warmup: int = 10
    solve: str = "closed_form"
    cg: CGSettings = field(default_factory=CGSettings)
    sub_batches: int = 1
    baseline: bool = True
    probes: bool = True


@dataclass
class TrainerConfig:
    """The experiment: iterations (leader updates), trajectories per update and their horizon
    (``None``: automatic), ``rollouts``: ``fixed`` horizons, ``geometric`` lengths (mean
    ``1 / (1 - gamma)``, ``horizon`` their cap) or ``auto`` (fixed up to gamma of about 0.98; see
    :func:`spg.task.plan_rollouts`),
    evaluation and checkpoint periods (in iterations), ``resume`` (a checkpoint path, or
    ``auto`` for the run directory's ``checkpoints/last.pt`` when it exists), and ``restarts``:
    independent runs from the uniform and from random leaders (logits of scale ``restart_scale``),
    keeping the best (:func:`spg.trainer.train`)."""

    iterations: int = 200
    batch_size: int = 512
    horizon: Optional[int] = None
    rollouts: str = "auto"
    eval_every: int = 20
    eval_episodes: int = 2000
    checkpoint_every: int = 50
    resume: Optional[str] = None
    progress: bool = True
    restarts: int = 1
    restart_scale: float = 1.0


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    device: str = "cpu"
    threads: int = 1


def run_name(*, _root_) -> str:
    """``ALGO_ENV_seedN`` for run directories and TensorBoard's run list: the env is the last part
    of its Gymnasium id (``spg/Patrolling-v0`` -> ``Patrolling-v0``) or the game file's stem."""
    env = _root_.env
    if env.kind == "file" and env.path:
        name = Path(str(env.path)).stem
    else:
        name = str(env.id).replace(":", "/").rsplit("/", 1)[-1] if OmegaConf.select(_root_, "env.id", throw_on_missing=False) else "env"
    return f"{_root_.algo.name}_{name}_seed{_root_.seed}"


def register_configs() -> None:
    """Register the schema as ``base_config``, the first entry of ``configs/config.yaml``'s
    defaults list: every group file then merges into a typed node and is checked against it;
    and the ``spg_run_name`` resolver of the run directories."""
    if not OmegaConf.has_resolver("spg_run_name"):
        OmegaConf.register_new_resolver("spg_run_name", run_name)
    ConfigStore.instance().store(name="base_config", node=Config)


def check_config(cfg: DictConfig) -> None:
    """Reject values the schema's types cannot: each error names the setting to change."""
    t, a = cfg.trainer, cfg.algo
    for key in ("iterations", "batch_size", "eval_every", "checkpoint_every", "eval_episodes"):
        minimum = 0 if key == "iterations" else 1
        if t[key] < minimum:
            raise SetupError(f"trainer.{key} = {t[key]}: must be >= {minimum}; set trainer.{key}")
    if t.restarts < 1 or t.restart_scale <= 0:
        raise SetupError(f"trainer.restarts = {t.restarts}, trainer.restart_scale = {t.restart_scale}: need restarts >= 1 and restart_scale > 0")
    if t.rollouts not in ROLLOUTS:
        raise SetupError(f"trainer.rollouts = {t.rollouts!r}: choose {'|'.join(ROLLOUTS)}")
    if t.horizon is not None and t.horizon < 1:
        raise SetupError(f"trainer.horizon = {t.horizon}: must be >= 1 (or null for automatic); set trainer.horizon")
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
        raise SetupError("algo.lam = 0: the follower's natural update aims at softmax(Q / lam); set algo.lam > 0 or algo.follower.rule=gradient")
    if not 0 < f.kappa <= 1:
        raise SetupError(f"algo.follower.kappa = {f.kappa}: the fraction of the way to the soft-greedy policy must lie in (0, 1]")
    if f.steps < 1 or f.lr <= 0 or f.tol < 0:
        raise SetupError("algo.follower.steps must be >= 1, algo.follower.lr > 0 and algo.follower.tol >= 0")
    if a.solve not in SOLVERS:
        raise SetupError(f"algo.solve = {a.solve!r}: choose {' or '.join(SOLVERS)}")
    if a.solve == "closed_form" and a.lam <= 0 and ALGORITHMS[a.name][0]:
        raise SetupError("algo.lam = 0: the closed-form solve of eq. (19) divides by lam; set algo.lam > 0 or algo.solve=cg")
    if a.follower_warmup < 0:
        raise SetupError(f"algo.follower_warmup = {a.follower_warmup}: must be >= 0")
    if a.cg.iters < 0 or a.cg.damping < 0:
        raise SetupError("algo.cg.iters and algo.cg.damping must be >= 0")
    if a.sub_batches not in (1, 2, 3) or a.sub_batches > t.batch_size:
        raise SetupError(f"algo.sub_batches = {a.sub_batches}: use 1, 2 or 3 (and at most trainer.batch_size)")
    if a.leader.lr <= 0 or a.leader.power < 0 or a.leader.t0 <= 0:
        raise SetupError("algo.leader.lr and algo.leader.t0 must be > 0 and algo.leader.power >= 0")
