"""The trainer in-process (``train(cfg)``) and as ``scripts/train.py``: every algorithm, the run
directory, TensorBoard tags, custom envs, resume, crashes, sweeps and bad input."""

import json
import logging
import os
import shutil
import signal
import subprocess
import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from spg import exact
from spg.evaluation import equilibrium_problems, load_run
from spg.game import TabularGame, random_game
from spg.logger import policy_figure
from spg.trainer import SetupError, train
from tests.helpers import TINY, config, coordination_env_source, sampled_trajectories


@pytest.mark.parametrize("algo", ["spg", "pg", "exact_spg", "exact_pg", "model_spg"])
def test_every_algorithm_trains_and_writes_its_run_directory(algo, tmp_path):
    final = train(config(f"algo={algo}", *TINY), run_dir=tmp_path)
    assert set(json.loads((tmp_path / "metrics.json").read_text())) >= {
        "game/J",
        "game/best_response_gap",
        "leader/return",
    }
    assert np.isfinite(final["game/J"])
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 6 and state["leader"]["logits"].shape == (3, 2)
    assert {"follower", "algorithm", "env_steps", "rng", "config"} <= set(state)
    assert (tmp_path / "checkpoints" / "iteration_000004.pt").is_file()
    assert (state["env_steps"] > 0) == (not algo.startswith("exact"))


def test_tensorboard_event_files_hold_the_main_tags(tiny_run):
    events = EventAccumulator(str(tiny_run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {
        "leader/return",
        "follower/return",
        "game/J",
        "game/leader_value",
        "game/follower_value",
        "game/best_response_gap",
        "leader/direct_norm",
        "leader/implicit_norm",
        "estimator/cosine_to_exact",
        "charts/leader_lr",
        "charts/env_steps_per_second",
        "follower/logit_change",
        "follower/q_coverage",
        "leader/min_prob",
        "follower/min_prob",
        "game/J_gradient_norm",
        "game/equilibrium",
    }
    assert expected <= scalars, expected - scalars
    for tag in ("game/J", "game/equilibrium"):  # evaluated before the first update too
        assert [e.step for e in events.Scalars(tag)] == [0, 3, 6], tag
    assert {"leader/policy", "follower/policy"} <= set(events.Tags()["images"])


def test_equilibrium_flag_is_also_logged_as_text_at_every_evaluation(tiny_run):
    events = EventAccumulator(str(tiny_run), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    flags = {e.step: e.value for e in events.Scalars("game/equilibrium")}
    texts = {
        e.step: tensor_util.make_ndarray(e.tensor_proto).item().decode()
        for e in events.Tensors("game/equilibrium_check/text_summary")
    }
    assert sorted(texts) == sorted(flags) == [0, 3, 6]
    for step, text in texts.items():
        verdict = "ok (1)" if flags[step] == 1.0 else "not yet (0): "
        assert text.startswith(f"iteration {step}: {verdict}"), text


def test_resume_says_when_it_starts_fresh_and_when_the_run_was_already_complete(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="spg.trainer")
    train(config(*TINY, "trainer.resume=auto"), run_dir=tmp_path)
    assert (
        f"trainer.resume=auto: no checkpoint to resume in {tmp_path} (checkpoints/last.pt), so this is a fresh run"
        in caplog.text
    )
    caplog.clear()
    train(config(*TINY, "trainer.resume=auto"), run_dir=tmp_path)
    assert "the run was already complete (iteration 6 of trainer.iterations=6): nothing to train" in caplog.text
    assert "wall time [s]" in caplog.text and "(the run was already complete: nothing was trained)" in caplog.text
    caplog.clear()
    train(
        config(
            *[o for o in TINY if not o.startswith("trainer.iterations")], "trainer.iterations=8", "trainer.resume=auto"
        ),
        run_dir=tmp_path,
    )
    assert "resumed from" in caplog.text and "already complete" not in caplog.text and "fresh run" not in caplog.text


@pytest.mark.parametrize("states, actions", [(7, 3), (1, 2), (2, 2)])
def test_policy_heatmap_has_integer_ticks_and_a_labelled_colour_bar(states, actions, generator):
    figure = policy_figure(torch.softmax(torch.randn(states, actions, generator=generator), -1), "leader")
    heatmap, colour_bar = figure.axes
    assert (heatmap.get_xlabel(), heatmap.get_ylabel(), colour_bar.get_ylabel()) == (
        "leader action",
        "state",
        "probability",
    )
    for ticks, count in ((heatmap.get_xticks(), actions), (heatmap.get_yticks(), states)):
        shown = [t for t in ticks if -0.5 <= t <= count - 0.5]
        assert shown and all(float(t).is_integer() for t in shown), ticks
    plt.close(figure)


def test_user_env_from_a_temporary_module(tmp_path, monkeypatch):
    (tmp_path / "my_game_module.py").write_text(coordination_env_source("Coordination-v0"))
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = ["env=gym", "env.id=my_game_module:Coordination-v0", "env.gamma=0.5", "env.num_envs=4"]
    final = train(config(*overrides, *TINY[3:]), run_dir=tmp_path / "run")
    assert "game/J" not in final and np.isfinite(final["leader/return"])
    # no model: J, the gap and the values are estimated from the empirical game of the rollouts
    P = np.full((2, 2, 2, 2), 0.5)
    R1 = np.broadcast_to(np.eye(2), (2, 2, 2))
    R2 = np.broadcast_to(np.array([0.0, 1.0]), (2, 2, 2))
    model = TabularGame(P, R1, R2, 0.5, np.array([1.0, 0.0]))
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    pi1, pi2 = (torch.softmax(state[p]["logits"], -1) for p in ("leader", "follower"))
    J = exact.stackelberg_objective(model, state["leader"]["logits"], 0.1)
    cfg = config(*overrides, *TINY[3:])
    transitions = (
        sampled_trajectories(cfg, 6) * 11
    )  # 10 follower warm-up batches and 6 updates; every step but a rollout's last
    assert final["empirical/transitions"] == transitions and final["empirical/visited_pairs"] == 8
    # ~290 transitions a pair: P within ~0.03, so J and the gap within a few hundredths of the value scale (2)
    assert abs(final["empirical/J"] - J) < 0.05
    assert abs(final["empirical/best_response_gap"] - exact.best_response_gap(model, pi1, pi2, 0.1)) < 0.05
    assert "estimated from the empirical game" in final["equilibrium"]
    with pytest.raises(SetupError, match="needs exact derivatives from the game's model"):
        train(config(*overrides, "algo=exact_spg", *TINY[3:]), run_dir=tmp_path / "run2")
    with pytest.raises(SetupError, match="set its discount with env.gamma"):
        train(config("env=gym", "env.id=my_game_module:Coordination-v0", *TINY[3:]), run_dir=tmp_path / "run3")


@pytest.mark.parametrize("algo", ["spg", "model_spg"])
def test_resume_reproduces_the_uninterrupted_run(algo, tmp_path):
    train(config(*TINY, f"algo={algo}"), run_dir=tmp_path / "whole")
    first = [o for o in TINY if not o.startswith("trainer.iterations")] + ["trainer.iterations=4", f"algo={algo}"]
    train(config(*first), run_dir=tmp_path / "split")
    train(config(*TINY, f"algo={algo}", "trainer.resume=auto"), run_dir=tmp_path / "split")
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    for player in ("leader", "follower"):
        assert torch.equal(whole[player]["logits"], split[player]["logits"])
    assert whole["env_steps"] == split["env_steps"]


def test_a_run_that_recorded_its_probes_as_on_or_off_still_loads(tiny_run, tmp_path):
    run_dir = tmp_path / "older"
    shutil.copytree(tiny_run, run_dir)
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    for recorded, probes in ((True, 1.0), (False, 0.0)):
        saved = OmegaConf.create(state["config"])
        saved.algo.probes = recorded
        (run_dir / ".hydra").mkdir(exist_ok=True)
        (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(saved))
        assert "probes: " + str(recorded).lower() in (run_dir / ".hydra" / "config.yaml").read_text()
        cfg, _ = load_run(run_dir)
        assert cfg.algo.probes == probes


def test_a_run_that_recorded_retired_settings_still_loads(tiny_run, tmp_path):
    run_dir = tmp_path / "older"
    shutil.copytree(tiny_run, run_dir)
    saved = OmegaConf.create(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["config"])
    saved.algo.cg.warm_start, saved.algo.follower.tol = False, 1e-6  # settings since fixed
    (run_dir / ".hydra").mkdir(exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    cfg, _ = load_run(run_dir)
    assert "warm_start" not in cfg.algo.cg and "tol" not in cfg.algo.follower
    with pytest.raises(ConfigCompositionException, match="warm_start"):
        config("algo.cg.warm_start=false")  # no longer a setting


def test_resume_from_a_checkpoint_of_another_game_is_refused(tiny_run, tmp_path):
    last = tiny_run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    with pytest.raises(SetupError, match=r"\[S, A1, A2\] = \[3, 2, 2\].*has \[4, 2, 2\]"):
        train(config(*TINY, "env.kwargs.num_states=4", f"trainer.resume={last}"), run_dir=tmp_path / "b")
    assert last.read_bytes() == before


def test_unknown_key_and_wrong_type_are_rejected():
    with pytest.raises(ConfigCompositionException, match="trainer.batchsize"):
        config("trainer.batchsize=3")
    with pytest.raises(ConfigCompositionException, match="trainer.iterations"):
        config("trainer.iterations=many")


@pytest.mark.slow
def test_subprocess_run_with_overrides_and_bad_inputs(scripts, tmp_path):
    ok = scripts.run("train.py", *TINY, "algo=pg", f"hydra.run.dir={tmp_path / 'ok'}")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "ok" / ".hydra" / "config.yaml").is_file() and (tmp_path / "ok" / "metrics.json").is_file()
    assert "final results" in ok.stdout + ok.stderr

    bad = random_game(2, 1, 1)
    P = bad.P.numpy().copy()
    P[1, 0, 0] = [0.3, 0.3]
    np.savez(tmp_path / "bad.npz", P=P, R1=bad.R1.numpy(), R2=bad.R2.numpy(), gamma=0.9, rho=bad.rho.numpy())
    cases = [
        (["env=file", f"env.path={tmp_path / 'bad.npz'}"], r"P[1, 0, 0, :] sums to 0.6"),
        (["env=file", f"env.path={tmp_path / 'missing.npz'}"], "cannot read game file"),
        (["env=gym", "env.id=spg/NoSuchGame-v0"], "cannot make env 'spg/NoSuchGame-v0'"),
        (["trainer.batch_size=-4"], "trainer.batch_size = -4"),
        (["trainer.horizon=-1"], "trainer.horizon = -1"),
    ]
    for overrides, message in cases:
        run = scripts.run("train.py", *TINY[3:], *overrides, f"hydra.run.dir={tmp_path / 'bad_run'}")
        output = run.stdout + run.stderr
        assert run.returncode == 1, output
        assert message in output and "Traceback" not in output, output
    unknown = scripts.run("train.py", "trainer.nonsense=1", f"hydra.run.dir={tmp_path / 'unknown'}")
    assert (
        unknown.returncode == 1
        and "nonsense" in unknown.stderr
        and not (tmp_path / "unknown" / "metrics.json").exists()
    )


@pytest.mark.slow
def test_multirun_with_two_seeds_writes_two_run_directories(scripts, tmp_path):
    run = scripts.run("train.py", "-m", "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert run.returncode == 0, run.stderr
    jobs = [
        tmp_path / "0_model_spg_RandomGame-v0_seed0",
        tmp_path / "1_model_spg_RandomGame-v0_seed1",
    ]  # named by algorithm, env and seed
    for job in jobs:
        assert (job / "checkpoints" / "last.pt").is_file()
    seeds = [json.loads((job / "metrics.json").read_text())["leader/return"] for job in jobs]
    assert seeds[0] != seeds[1]


@pytest.mark.slow
def test_sigkill_leaves_a_loadable_checkpoint_that_resumes(scripts, tmp_path):
    run_dir = tmp_path / "killed"
    slow = [o for o in TINY if not o.startswith(("trainer.iterations", "trainer.checkpoint_every"))]
    args = [*slow, "trainer.iterations=100000", "trainer.checkpoint_every=1", f"hydra.run.dir={run_dir}"]
    process = scripts.start("train.py", *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.is_file() and torch.load(last, weights_only=True)["iteration"] >= 5):
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = torch.load(last, weights_only=True)
    assert 5 <= state["iteration"] < 100000
    resumed = scripts.run(
        "train.py",
        *slow,
        f"trainer.iterations={state['iteration'] + 2}",
        "trainer.resume=auto",
        f"hydra.run.dir={run_dir}",
    )
    assert resumed.returncode == 0, resumed.stderr
    after = torch.load(last, weights_only=True)
    assert after["iteration"] == state["iteration"] + 2 and not list(run_dir.rglob(".*.tmp"))
    whole = train(
        config(*slow, "algo=model_spg", f"trainer.iterations={state['iteration'] + 2}"), run_dir=tmp_path / "whole"
    )  # never killed, the default algo
    uninterrupted = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    for player in ("leader", "follower"):  # bit for bit
        assert torch.equal(after[player]["logits"], uninterrupted[player]["logits"])
    assert after["env_steps"] == uninterrupted["env_steps"] == whole["env_steps"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, plugin", [("joblib", "hydra_joblib_launcher"), ("submitit_local", "hydra_submitit_launcher")]
)
def test_sweep_launchers_from_the_sweep_extra(launcher, plugin, scripts, tmp_path):
    pytest.importorskip(f"hydra_plugins.{plugin}", reason="pip install -e .[sweep]")
    run = scripts.run("train.py", "-m", "seed=0,1", f"hydra/launcher={launcher}", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert run.returncode == 0, run.stderr
    for job in ("0_model_spg_RandomGame-v0_seed0", "1_model_spg_RandomGame-v0_seed1"):
        assert (tmp_path / job / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_evaluate_and_plot_scripts(scripts, tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "sweep" / "0")  # seed 0
    train(config(*TINY, "seed=1"), run_dir=tmp_path / "sweep" / "1")
    evaluation = scripts.run("evaluate.py", tmp_path / "sweep" / "0", "--episodes", "200", "--json", timeout=120)
    assert evaluation.returncode == 0, evaluation.stderr
    result = json.loads(evaluation.stdout)
    saved = json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())
    assert result["game/J"] == pytest.approx(saved["game/J"], rel=1e-12)
    assert len(result["leader_policy"]) == 3 and result["leader/return_se"] > 0
    table = scripts.run("evaluate.py", tmp_path / "sweep" / "1" / "checkpoints" / "last.pt", timeout=120)
    assert table.returncode == 0 and "best-response gap" in table.stdout and "leader policy" in table.stdout
    missing = scripts.run("evaluate.py", tmp_path / "nothing", timeout=120)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    plot = scripts.run("plot.py", tmp_path / "sweep", "--out", tmp_path / "c.png", timeout=120)
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "2 runs" in plot.stdout


def test_restarts_keep_the_pair_with_the_best_exact_J(tmp_path):
    final = train(config(*TINY, "algo=exact_spg", "trainer.restarts=3"), run_dir=tmp_path)
    estimates = final["restart_estimates"]
    assert len(estimates) == 3 and final["restart"] == max(range(3), key=estimates.__getitem__)
    best = torch.load(tmp_path / f"restart_{final['restart']}" / "checkpoints" / "last.pt", weights_only=True)
    kept = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert torch.equal(best["leader"]["logits"], kept["leader"]["logits"])
    game = random_game(3, 2, 2, seed=0, gamma=0.8)  # env=random with TINY's sizes
    assert exact.stackelberg_objective(game, kept["leader"]["logits"], 0.1) == pytest.approx(max(estimates), rel=1e-9)
    starts = [
        torch.load(tmp_path / f"restart_{k}" / "checkpoints" / "iteration_000002.pt", weights_only=True)["leader"][
            "logits"
        ]
        for k in range(3)
    ]
    assert not torch.equal(starts[1], starts[2])  # the restarts start from different random leaders


def test_final_table_says_when_J_is_still_rising(tmp_path):
    # 20 spg updates on the default game leave J climbing (exact J from the evaluations at 0, 15
    # and 20), and exact ascent from their leader climbs on: the local-ascent probe says so; 400
    # exact_spg updates end at a local maximum that the probe cannot climb from
    early = train(
        config("algo=spg", "trainer.iterations=20", "trainer.eval_every=5", "trainer.progress=false"),
        run_dir=tmp_path / "early",
    )
    assert early["game/J_rise_last_quarter"] > 1e-3 * 1.0 / (1 - 0.8)  # the value scale max|r| / (1 - gamma) <= 5
    assert early["game/J_local_ascent"] > early["game/J"] + 0.01 * (
        early["game/J_local_ascent"] - early["game/J_uniform"]
    )
    assert "exact ascent steps from the final leader raise J" in early["equilibrium"], early["equilibrium"]
    done = train(config("algo=exact_spg", "trainer.progress=false"), run_dir=tmp_path / "done")
    assert done["equilibrium"].startswith("ok"), done["equilibrium"]
    # without the probe (a leader too large for exact ascent), the rise over the last quarter decides
    moved = {
        key: early[key]
        for key in ("game/J_rise_last_quarter", "game/J_trend_last_quarter", "game/J_spread_last_quarter")
    }
    assert "it is still rising" in equilibrium_problems(moved, 1.0 / (1 - 0.8))[0]
    assert early["J_last_quarter"].startswith("still rising") and early["J_last_quarter"].endswith(
        "more trainer.iterations"
    )


def test_geometric_rollouts_train_and_cost_fewer_env_steps(tmp_path):
    fixed = train(config(*TINY, "trainer.rollouts=fixed"), run_dir=tmp_path / "fixed")
    geometric = train(config(*TINY, "trainer.rollouts=geometric"), run_dir=tmp_path / "geometric")
    assert (fixed["rollouts"], geometric["rollouts"]) == ("fixed", "geometric")
    # 10 warm-up batches and 6 growing ones: fixed trajectories take 12 steps each, geometric ones 1 / (1 - 0.8) = 5 on average
    assert (
        fixed["env_steps"] == sampled_trajectories(config(*TINY), 6) * 12
        and geometric["env_steps"] < 0.6 * fixed["env_steps"]
    )
    assert np.isfinite(geometric["game/J"]) and np.isfinite(geometric["leader/return"])
