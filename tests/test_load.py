"""Load: a Hydra multirun of many jobs with the joblib launcher, two at a time, into one output root,
ends with one complete run directory per job, none mixed with another, and ``plot.py`` reads them all."""

import json

import pytest
import torch
import yaml

from tests.helpers import TINY

JOBS = 32
# 32 runs of 2 updates on the 3-state game (seconds each, most of it the evaluation)
SHORT = [
    o
    for o in TINY
    if not o.startswith(
        ("trainer.iterations", "trainer.eval_every", "trainer.checkpoint_every", "trainer.eval_episodes")
    )
]
SHORT += ["trainer.iterations=2", "trainer.eval_every=2", "trainer.checkpoint_every=2", "trainer.eval_episodes=10"]


@pytest.mark.slow
def test_joblib_multirun_of_32_jobs_on_two_workers_leaves_32_complete_distinct_runs(scripts, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e .[sweep]")
    sweep = scripts.run(
        "train.py",
        "-m",
        f"seed=range(0,{JOBS})",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *SHORT,
        f"hydra.sweep.dir={tmp_path}",
        timeout=600,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in runs] == sorted(f"{k}_model_spg_RandomGame-v0_seed{k}" for k in range(JOBS))
    returns = set()
    for k, run in enumerate(sorted(runs, key=lambda p: int(p.name.split("_")[0]))):
        # complete: its record, log, events, both checkpoints and results
        assert {p.name for p in run.iterdir()} == {
            ".hydra",
            ".lock",
            "train.log",
            "checkpoints",
            "metrics.json",
            *(p.name for p in run.glob("events.out.tfevents.*")),
        }, sorted(run.iterdir())
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iteration_000002.pt", "last.pt"]
        # not mixed: every file of the directory is job k's
        assert f"seed={k}" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["seed"] == k
        state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        assert state["config"]["seed"] == k and state["iteration"] == 2
        log = (run / "train.log").read_text()
        assert log.count("run directory: ") == 1 and f"run directory: {run}\n" in log
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["iterations"] == 2
        returns.add(metrics["leader/return"])
    assert len(returns) == JOBS  # 32 seeds, 32 different runs
    plot = scripts.run("plot.py", tmp_path, "--out", tmp_path / "curves.png", timeout=300)
    assert plot.returncode == 0, plot.stderr
    assert f"{JOBS} of {JOBS} runs, 1 curve in 1 panel" in plot.stdout, plot.stdout  # the 32 seeds form one curve
