"""A run on an env without a model (no ``env.unwrapped.game``): its estimates in the HParams table,
``evaluate.py``'s estimates and equilibrium check from the run's saved counts, and the error when
the env's module is not where Python looks for it."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from spg import exact
from spg.evaluation import evaluate_run
from spg.game import TabularGame
from spg.trainer import SetupError, train
from tests.helpers import TINY, config, coordination_env_source

MODULE = "nc_coordination"
ENV = [f"env.id={MODULE}:ModelFreeCoordination-v0", "env=gym", "env.gamma=0.5", "env.num_envs=4"]
SOURCE = coordination_env_source("ModelFreeCoordination-v0")
# the game the env plays, written from its rules: the leader earns 1 when the actions match, the
# follower 1 for its action 1; the next state is uniform, the first one 0
MODEL = TabularGame(
    np.full((2, 2, 2, 2), 0.5),
    np.broadcast_to(np.eye(2), (2, 2, 2)),
    np.broadcast_to(np.array([0.0, 1.0]), (2, 2, 2)),
    0.5,
    np.array([1.0, 0.0]),
)


@pytest.fixture
def model_free_run(tmp_path, monkeypatch) -> tuple[Path, dict]:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    run_dir = tmp_path / "run"
    return run_dir, train(config("algo=model_spg", *ENV, *TINY[3:]), run_dir=run_dir)


def test_hparams_table_holds_the_estimated_J_and_gap(model_free_run):
    run_dir, final = model_free_run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    columns = {info.name.tag for info in plugin_data_pb2.HParamsPluginData.FromString(content).experiment.metric_infos}
    assert {"empirical/J", "empirical/best_response_gap"} <= columns, columns
    assert "game/J" not in final and {"empirical/J", "empirical/best_response_gap"} <= set(final)


def test_evaluate_estimates_J_and_checks_the_equilibrium_from_the_saved_counts(model_free_run):
    run_dir, final = model_free_run
    result = evaluate_run(run_dir, episodes=50)
    for key in ("empirical/J", "empirical/best_response_gap", "empirical/J_local_ascent", "empirical/transitions"):
        assert result[key] == pytest.approx(final[key], rel=1e-9), key
    assert (
        result["equilibrium"] == final["equilibrium"] and "estimated from the empirical game" in result["equilibrium"]
    )
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    J = exact.stackelberg_objective(MODEL, state["leader"]["logits"], 0.1)
    assert (
        abs(result["empirical/J"] - J) < 0.05
    )  # ~290 transitions a pair: within a few hundredths of the value scale 2


def test_evaluate_from_another_directory_says_where_python_looked_for_the_module(model_free_run, tmp_path, monkeypatch):
    run_dir, _ = model_free_run
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path / "modules")])
    monkeypatch.delitem(sys.modules, MODULE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(SetupError) as error:
        evaluate_run(run_dir, episodes=50)
    message = str(error.value)
    assert f"env.id = {MODULE}:ModelFreeCoordination-v0: cannot import module '{MODULE}'" in message, message
    assert f"no '{MODULE}' in the directory this command runs from ({elsewhere}) nor on PYTHONPATH" in message, message
    assert "env.kwargs" not in message and "\n" not in message
