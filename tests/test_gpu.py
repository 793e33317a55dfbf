"""The whole pipeline on a GPU (skipped where torch sees none)."""

import pytest
import torch

from envs import TabularVectorEnv
from envs.registry import GAME_BUILDERS
from spg import exact
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Sampler
from spg.sparse_game import random_sparse_game
from spg.trainer import train
from tests.helpers import TINY, config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_training_on_cuda_matches_the_exact_solver_on_cpu(tmp_path):
    final = train(config(*TINY, "device=cuda"), run_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    game = GAME_BUILDERS["spg/RandomGame-v0"](num_states=3, num_leader_actions=2, num_follower_actions=2)
    assert final["game/J"] == pytest.approx(
        exact.stackelberg_objective(game, state["leader"]["logits"].cpu(), 0.1), rel=1e-9
    )


def test_sampler_and_sparse_env_on_cuda():
    game = random_sparse_game(50, 2, 2, seed=0).to("cuda")
    policy = TabularSoftmaxPolicy(50, 2, device="cuda")
    batch = Sampler(TabularVectorEnv(game, 64), seed=0).collect(policy, policy, 64, 10)
    assert batch.states.is_cuda and batch.env_steps == 640
