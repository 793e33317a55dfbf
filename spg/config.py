"""Structured Hydra configs: the schemas behind ``configs/`` (BenchMARL's split into the task
``env``, the ``algo`` and the experiment ``trainer``). Registered in Hydra's ``ConfigStore`` so a
mistyped key or a wrongly typed value is rejected before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from spg.algorithms import CGSettings, FollowerSettings


@dataclass
class EnvConfig:
    """The game. ``kind: gym`` makes Gymnasium id ``id`` with ``kwargs`` (``"module:Name-v0"``
    imports ``module`` first); ``kind: file`` loads the ``.npz`` game file at ``path``.
    ``vectorization``: ``auto`` (native when the id has a vector entry point, else sync),
    ``native``, ``sync`` or ``async``. ``num_envs``: copies stepped at once (default: the batch
    size for native envs, at most 128 otherwise). ``gamma``: the discount, needed only for envs without a model."""

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
    (``None``: the smallest ``T`` with ``T^2 gamma^T < 1e-3``, see :func:`spg.trainer.auto_horizon`),
    evaluation and checkpoint periods (in iterations), ``resume`` (a checkpoint path, or
    ``auto`` for the run directory's ``checkpoints/last.pt`` when it exists), and ``restarts``:
    independent runs from the uniform and from random leaders (logits of scale ``restart_scale``),
    keeping the best (:func:`spg.trainer.train`)."""

    iterations: int = 200
    batch_size: int = 512
    horizon: Optional[int] = None
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
