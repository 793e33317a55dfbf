"""Structured Hydra configs: the schemas behind ``configs/`` (BenchMARL's split into the task
``env``, the ``algo`` and the experiment ``trainer``). Registered in Hydra's ``ConfigStore`` so a
mistyped key or a wrongly typed value is rejected before anything runs."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from spg.algorithms import ALGORITHMS, CGSettings, FollowerSettings, check_algo
from spg.env_configs import register_env_defaults
from spg.errors import SetupError, invalid
from spg.schedules import StepSize, growing_batch

ROLLOUTS = (
    "auto",
    "fixed",
    "geometric",
)  # trainer.rollouts: how long sampled trajectories are (spg.task.plan_rollouts)


@dataclass
class EnvConfig:
    """The game (``env``): ``configs/env/*.yaml`` pick its source and fill ``kind``, ``id`` and
    ``kwargs``; there is no default ``id`` (``env=gym`` leaves it to ``env.id``)."""

    kind: str = field(
        default="gym",
        metadata={
            "help": "the game's source: gym (a Gymnasium id), pettingzoo (a two-agent ParallelEnv factory) or file (a .npz game file)"
        },
    )
    id: Optional[str] = field(
        default=None,
        metadata={
            "help": 'kind=gym: the Gymnasium id ("module:Name-v0" imports module first); kind=pettingzoo: "module:function"'
        },
    )
    kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "keyword arguments of the env's constructor (kind=pettingzoo: of the factory); env.kwargs.NAME=VALUE"
        },
    )
    path: Optional[str] = field(
        default=None, metadata={"help": "kind=file: the .npz game file (format in docs/formats.md)"}
    )
    vectorization: str = field(
        default="auto",
        metadata={
            "help": "native (batched torch env of the tabular games), sync (env copies in one loop), async (one subprocess per copy) or auto (native where it exists, else sync)"
        },
    )
    num_envs: Optional[int] = field(
        default=None,
        metadata={
            "help": "copies stepped at once; null: native max(batch_size, 512), sync min(batch_size, 512), async min(batch_size, CPU cores)"
        },
    )
    gamma: Optional[float] = field(
        default=None,
        metadata={
            "help": "the discount in [0, 1), needed only for envs without a tabular model (a model's own gamma wins)"
        },
    )
    step_timeout: Optional[float] = field(
        default=None,
        metadata={
            "help": "seconds one step of a Python env (sync or async) may take before the run ends with one line; null: no limit (native envs have none)"
        },
    )


@dataclass
class LeaderConfig:
    """The leader's optimiser on its direction, with the decaying step ``lr (t0 / (t + t0))^power``.
    Adam's square has a short memory (0.9): as the leader's softmax approaches a deterministic
    optimum the gradient shrinks, and a memory of the early, larger gradients would shrink every
    later step. The noise of sampled directions is averaged by the iterate average instead
    (``AlgoConfig.averaging``)."""

    optimizer: str = field(default="adam", metadata={"help": "adam, or sgd for plain ascent"})
    lr: float = field(
        default=0.1,
        metadata={"help": "the leader's step at t = 0 (with Adam: roughly the largest logit change per update)"},
    )
    power: float = field(
        default=1.0, metadata={"help": "the leader's step decays as lr (t0 / (t + t0))^power over its updates t"}
    )
    t0: float = field(default=50.0, metadata={"help": "the updates over which the leader's step halves (with power 1)"})
    betas: list[float] = field(
        default_factory=lambda: [0.9, 0.9],
        metadata={"help": "Adam's averaging of the direction and of its square, two numbers in [0, 1)"},
    )


@dataclass
class AlgoConfig:
    """The algorithm (``algo``): ``configs/algo/*.yaml`` set ``name`` and what differs from these
    defaults. Equation numbers are the paper's (eq. (19): the leader's Stackelberg gradient)."""

    name: str = field(
        default="spg",
        metadata={
            "help": "spg | pg | model_spg | exact_spg | exact_pg (pick it with algo=NAME, which also loads that algorithm's defaults)"
        },
    )
    lam: float = field(default=0.1, metadata={"help": "the follower's entropy weight lambda (eqs. 3-4)"})
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    follower: FollowerSettings = field(default_factory=FollowerSettings)
    follower_warmup: int = field(
        default=10, metadata={"help": "follower-only updates (each on a fresh batch) before the leader's first step"}
    )
    solve: str = field(
        default="closed_form",
        metadata={
            "help": "eq. (19)'s Hessian solve w = (-H)^-1 grad_2 V1: closed_form (exact at the follower's best response) or cg (algo.cg settings)"
        },
    )
    cg: CGSettings = field(default_factory=CGSettings)
    sub_batches: int = field(
        default=1, metadata={"help": "1; 2 (or 3 with cg): independent sub-batches for the factors of eq. (19)"}
    )
    estimator: str = field(
        default="pooled",
        metadata={
            "help": "eq. (19)'s terms from samples: pooled (Rao-Blackwellised from Q estimates pooled over the batch) or reinforce (Loaded-DiCE)"
        },
    )
    baseline: bool = field(default=True, metadata={"help": "estimator=reinforce: leave-one-out state baselines"})
    probes: float = field(
        default=1.0,
        metadata={
            "help": "the probability that a trajectory's follower acts uniformly at its probe step (importance-weighted), so every action is seen; 0: no probes (spg: 0.25)"
        },
    )
    averaging: float = field(
        default=3.0,
        metadata={
            "help": "eta of the polynomial-decay average of both players' logits that a run evaluates, checkpoints and returns; 0: the last iterates"
        },
    )


@dataclass
class TrainerConfig:
    """The experiment (``trainer``): how many updates, how much is sampled for each, how often the
    run evaluates and checkpoints, and how it resumes or restarts (:func:`spg.trainer.train`)."""

    iterations: int = field(default=400, metadata={"help": "leader updates"})
    batch_size: int = field(default=32, metadata={"help": "trajectories of the first update"})
    batch_growth: float = field(
        default=1.25,
        metadata={
            "help": "update t samples batch_size (lr_0 / lr_t)^batch_growth trajectories (rounded up; the batch grows as the leader's step shrinks); 0 keeps batch_size"
        },
    )
    horizon: Optional[int] = field(
        default=None,
        metadata={
            "help": "rollout length; null: the smallest T with T^2 gamma^T < 1e-3 (geometric lengths: their cap, gamma^T <= 1e-4)"
        },
    )
    rollouts: str = field(
        default="auto",
        metadata={
            "help": "fixed horizons, geometric lengths (mean 1 / (1 - gamma), horizon their cap) or auto (fixed up to a horizon of 1000, geometric beyond)"
        },
    )
    eval_every: int = field(default=20, metadata={"help": "iterations between evaluations (also one at step 0)"})
    eval_episodes: int = field(default=2000, metadata={"help": "Monte Carlo episodes of the final results' returns"})
    checkpoint_every: int = field(default=50, metadata={"help": "iterations between checkpoints (checkpoints/last.pt)"})
    resume: Optional[str] = field(
        default=None,
        metadata={
            "help": "a checkpoint path, or auto: the run directory's checkpoints/last.pt where it exists (else a fresh run)"
        },
    )
    resume_any_game: bool = field(
        default=False, metadata={"help": "resume a checkpoint of another game of the same shape (refused otherwise)"}
    )
    progress: bool = field(default=True, metadata={"help": "a progress bar on the console (when stderr is a terminal)"})
    restarts: int = field(
        default=1, metadata={"help": "independent runs, from the uniform leader and from random ones, keeping the best"}
    )
    restart_scale: float = field(
        default=1.0, metadata={"help": "the scale of the random leader logits of restarts after the first"}
    )


@dataclass
class Config:
    """The whole run's settings: ``configs/config.yaml`` composes the groups over this schema."""

    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = field(default=0, metadata={"help": "the run's random seed, in [0, 2^63 - 1]"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda[:N] or auto (CUDA where torch sees it)"})
    threads: int = field(
        default=1, metadata={"help": "torch intra-op threads (1 is fastest for the sampler on small machines)"}
    )


def schema_leaves(schema: type = Config, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf setting of the schema (a dataclass of this module), in order: its dotted key and
    its ``dataclasses.Field``, whose ``metadata["help"]`` is the setting's one-line meaning."""
    types = get_type_hints(schema)
    found = []
    for f in fields(schema):
        if is_dataclass(types[f.name]):
            found += schema_leaves(types[f.name], f"{prefix}{f.name}.")
        else:
            found.append((prefix + f.name, f))
    return found


def game_source(env: DictConfig) -> str:
    """Where the run's game comes from: the game file's path or the env's id."""
    return str(env.path) if env.kind == "file" else str(env.id)


def run_name(*, _root_) -> str:
    """``ALGO_ENV_seedN`` for run directories and TensorBoard's run list: the env is the last part
    of its Gymnasium id (``spg/Patrolling-v0`` -> ``Patrolling-v0``) or the game file's stem."""
    env = _root_.env
    if env.kind == "file" and env.path:
        name = Path(str(env.path)).stem
    else:
        name = (
            str(env.id).replace(":", "/").rsplit("/", 1)[-1]
            if OmegaConf.select(_root_, "env.id", throw_on_missing=False)
            else "env"
        )
    return f"{_root_.algo.name}_{name}_seed{_root_.seed}"


def register_configs() -> None:
    """Register the schema as ``base_config``, the first entry of ``configs/config.yaml``'s
    defaults list: every group file then merges into a typed node and is checked against it;
    the ``env_defaults`` group (:mod:`spg.env_configs`); and the ``spg_run_name`` resolver of the
    run directories."""
    register_env_defaults()
    if not OmegaConf.has_resolver("spg_run_name"):
        OmegaConf.register_new_resolver("spg_run_name", run_name)
    ConfigStore.instance().store(name="base_config", node=Config)


VECTORIZATIONS = ("auto", "native", "sync", "async")
MAX_SEED = 2**63 - 1
# env steps per second assumed when estimating how long one iteration takes (a low end of the rates
# measured in docs/performance.md)
NATIVE_STEPS_PER_SECOND, PYTHON_STEPS_PER_SECOND = 1e6, 1e5
SLOW_ITERATION_SECONDS = 60.0
NEGLIGIBLE_DISCOUNT = 1e-12  # gamma^T below this: later steps carry no weight in any estimate


def _check_finite_floats(node: DictConfig, prefix: str = "") -> None:
    """Every float setting (outside ``env.kwargs``, which belong to the env) must be finite."""
    for key, value in node.items():
        name = f"{prefix}{key}"
        if name == "env.kwargs":
            continue
        if isinstance(value, DictConfig):
            _check_finite_floats(value, name + ".")
        elif isinstance(value, float) and not math.isfinite(value):
            raise invalid(name, value, "must be a finite number")


def unknown_keys(node: DictConfig, schema: type | None = None, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Keys of ``node`` that the schema (a dataclass of this module) does not define, each with
    the schema's keys at its level: Hydra's ``+key=value`` appends keys the schema never checks.
    Free-form dicts (``env.kwargs``, which belong to the env) hold any key."""
    types = get_type_hints(schema or Config)
    found = []
    for key in node.keys():
        name = f"{prefix}{key}"
        if key not in types:
            found.append((name, sorted(types)))
        elif is_dataclass(types[key]):
            found += unknown_keys(node[key], types[key], name + ".")
    return found


def _check_known_keys(cfg: DictConfig) -> None:
    for name, siblings in unknown_keys(cfg):
        parent, _, key = name.rpartition(".")
        scope = f"{parent}." if parent else ""
        close = difflib.get_close_matches(key, siblings, n=1)
        if close:
            value = OmegaConf.select(cfg, name)
            hint = f"did you mean {scope}{close[0]}? Set {scope}{close[0]}={value} (without +)"
        else:
            hint = f"the settings there are {', '.join(scope + s for s in siblings)}; remove +{name}"
        raise SetupError(f"{name} is not a setting: {hint}")


def check_config(cfg: DictConfig) -> None:
    """Reject every value the schema's types cannot, before anything runs: each error names the
    setting, its value and the allowed range (:class:`SetupError`); and every key the schema does
    not know (:func:`unknown_keys`)."""
    _check_known_keys(cfg)
    _check_finite_floats(cfg)
    if not 0 <= cfg.seed <= MAX_SEED:
        raise invalid("seed", cfg.seed, f"must lie in [0, {MAX_SEED}]")
    if cfg.threads < 1:
        raise invalid("threads", cfg.threads, "torch needs at least 1 thread")
    _check_env(cfg.env)
    _check_trainer(cfg.trainer)
    check_algo(cfg.algo)
    if cfg.algo.sub_batches > cfg.trainer.batch_size:
        raise SetupError(
            f"algo.sub_batches = {cfg.algo.sub_batches}: at most trainer.batch_size ({cfg.trainer.batch_size}) parts; lower algo.sub_batches"
        )


def _check_env(e: DictConfig) -> None:
    if e.kind not in ("gym", "file", "pettingzoo"):
        raise SetupError(
            f"env.kind = {e.kind!r}: choose env=file (a game file), env=gym (a Gymnasium id) or env=pettingzoo"
        )
    if e.kind == "gym" and not OmegaConf.select(e, "id", throw_on_missing=False):
        raise SetupError("env=gym needs a Gymnasium id: set env.id=MODULE:Name-v0 (or spg/Name-v0)")
    if e.kind == "pettingzoo" and not OmegaConf.select(e, "id", throw_on_missing=False):
        raise SetupError("env=pettingzoo needs the ParallelEnv's factory: set env.id=MODULE:function")
    if e.kind == "file" and not OmegaConf.select(e, "path", throw_on_missing=False):
        raise SetupError("env=file needs a game file: set env.path=GAME.npz")
    if e.vectorization not in VECTORIZATIONS:
        raise invalid("env.vectorization", repr(e.vectorization), f"choose {', '.join(VECTORIZATIONS)}")
    if e.kind == "file" and e.vectorization not in ("auto", "native"):
        raise invalid(
            "env.vectorization",
            e.vectorization,
            "a game file always runs on the native tabular env: use auto or native",
        )
    if e.num_envs is not None and e.num_envs < 1:
        raise invalid("env.num_envs", e.num_envs, "must be >= 1 (or null for the default)")
    if e.gamma is not None and not 0.0 <= e.gamma < 1.0:
        raise invalid("env.gamma", e.gamma, "the discount must lie in [0, 1)")
    if e.step_timeout is not None and not e.step_timeout > 0:
        raise invalid("env.step_timeout", e.step_timeout, "seconds a step may take must be > 0 (or null for no limit)")


def _check_trainer(t: DictConfig) -> None:
    for key in ("iterations", "batch_size", "eval_every", "checkpoint_every", "eval_episodes"):
        minimum = 0 if key == "iterations" else 1
        if t[key] < minimum:
            raise invalid(f"trainer.{key}", t[key], f"must be >= {minimum}")
    if not t.batch_growth >= 0:
        raise invalid(
            "trainer.batch_growth",
            t.batch_growth,
            "must be >= 0 (0: every update samples trainer.batch_size trajectories)",
        )
    if t.restarts < 1:
        raise invalid("trainer.restarts", t.restarts, "must be >= 1")
    if t.restart_scale <= 0:
        raise invalid("trainer.restart_scale", t.restart_scale, "must be > 0")
    if t.rollouts not in ROLLOUTS:
        raise SetupError(f"trainer.rollouts = {t.rollouts!r}: choose {'|'.join(ROLLOUTS)}")
    if t.horizon is not None and t.horizon < 1:
        raise SetupError(f"trainer.horizon = {t.horizon}: must be >= 1 (or null for automatic); set trainer.horizon")


def largest_batch(cfg: DictConfig) -> int:
    """The trajectories of the run's last update (:func:`spg.schedules.growing_batch`)."""
    leader = cfg.algo.leader
    step = StepSize(leader.lr, leader.power, leader.t0)
    return growing_batch(cfg.trainer.batch_size, cfg.trainer.batch_growth, step, max(cfg.trainer.iterations - 1, 0))


def config_warnings(
    cfg: DictConfig, *, gamma: float, horizon: int, max_abs_reward: float | None, native: bool, geometric: bool = False
) -> list[str]:
    """Legal values that are almost surely wrong for this game, each saying what to change: an
    iteration that takes minutes, a horizon far past the discount's reach, an ``env.gamma`` the
    game's model overrides, an entropy weight that makes the follower's best response uniform."""
    t, a = cfg.trainer, cfg.algo
    found = []
    if ALGORITHMS[a.name].source != "model":  # sampled algorithms: batch_size x (mean) trajectory length per update
        length = min(horizon, 1.0 / (1.0 - gamma)) if geometric else horizon
        largest = largest_batch(cfg)
        steps = largest * length * a.follower.steps
        rate = NATIVE_STEPS_PER_SECOND if native else PYTHON_STEPS_PER_SECOND
        if steps / rate > SLOW_ITERATION_SECONDS:
            found.append(
                f"the last iteration samples {largest} trajectories x horizon {length:.0f} = {steps:.3g} env steps "
                f"(about {steps / rate / 60:.0f} min at {rate:.0e} steps/s): lower trainer.horizon, trainer.batch_size or trainer.batch_growth"
            )
    if t.horizon is not None and not geometric and gamma > 0 and gamma**t.horizon < NEGLIGIBLE_DISCOUNT:
        found.append(
            f"trainer.horizon = {t.horizon}: gamma^T = {gamma:g}^{t.horizon} < {NEGLIGIBLE_DISCOUNT:g}, the later steps "
            "carry no weight and only cost time; set trainer.horizon=null (automatic)"
        )
    if native and cfg.env.step_timeout is not None:
        found.append(
            f"env.step_timeout = {cfg.env.step_timeout:g} is ignored: it limits the steps of Python envs, and this env is native; remove env.step_timeout"
        )
    if cfg.env.gamma is not None and max_abs_reward is not None and cfg.env.gamma != gamma:
        found.append(
            f"env.gamma = {cfg.env.gamma} is ignored: the game's model has gamma = {gamma:g}; remove env.gamma"
        )
    if max_abs_reward is not None and a.lam > 0 and max_abs_reward / ((1 - gamma) * a.lam) < 0.1:
        found.append(
            f"algo.lam = {a.lam:g}: soft Q differences of at most max|r| / (1 - gamma) = {max_abs_reward / (1 - gamma):.3g} "
            "divided by lam leave the follower's best response within 10% of uniform; lower algo.lam"
        )
    return found
