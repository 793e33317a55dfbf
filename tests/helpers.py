"""Shared test helpers: seeded logits, z-scores of Monte Carlo means, the shipped config, and
learners built from it."""

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from spg.algorithms import make_learner
from spg.config import register_configs
from spg.env_configs import register_env_defaults

ROOT = Path(__file__).resolve().parents[1]
# a 3-state random game and a run of a few seconds
TINY = [
    "env.kwargs.num_states=3",
    "env.kwargs.num_leader_actions=2",
    "env.kwargs.num_follower_actions=2",
    "trainer.iterations=6",
    "trainer.batch_size=32",
    "trainer.horizon=12",
    "trainer.eval_every=3",
    "trainer.checkpoint_every=2",
    "trainer.eval_episodes=50",
    "trainer.progress=false",
]


def seeded_logits(S: int, A: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(S, A, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def z_scores(samples: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """``(mean - expected) / standard error`` entry by entry, over the first axis of ``samples``."""
    standard_error = samples.std(0) / samples.shape[0] ** 0.5
    return (samples.mean(0) - expected) / standard_error.clamp_min(1e-15)


def config(*overrides: str):
    """The shipped Hydra config (``configs/``) with ``overrides``, as ``scripts/train.py`` composes it."""
    register_configs()
    register_env_defaults()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def learner(game, name: str, *overrides: str):
    """Uniform policies and algorithm ``name`` at its shipped defaults (plus ``algo.*`` overrides)."""
    return make_learner(config(f"algo={name}", *overrides).algo, game.num_states, game.num_actions)
