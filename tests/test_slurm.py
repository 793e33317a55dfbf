"""Sweeps through ``hydra/launcher=submitit_slurm`` on a real SLURM cluster (``scripts/slurm_cluster.sh
up`` brings up a local one; CI does): every job completes and ``plot.py`` aggregates the seeds; a
job cancelled with ``scancel`` mid-run resumes in its own directory with ``trainer.resume=auto``."""

import json
import shutil
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import ROOT, TINY
from tests.test_trainer import run_script


def _cluster_state() -> str | None:
    """Why no sweep can run here, or None when a SLURM node is up."""
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        return "no SLURM client (srun, sinfo) on PATH; scripts/slurm_cluster.sh up starts a local cluster"
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    states = sinfo.stdout.split()
    if sinfo.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mix", "alloc", "comp") for s in states):
        return f"no SLURM node is up (sinfo: {(sinfo.stdout + sinfo.stderr).strip() or 'no nodes'}); scripts/slurm_cluster.sh up starts one"
    return None


UNAVAILABLE = _cluster_state()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))]
def _queued(job_ids: list[str]) -> bool:
    return bool(subprocess.run(["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True, timeout=30).stdout.strip())


SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=10"]


def test_sweep_on_slurm_completes_every_job_and_plot_aggregates_the_seeds(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e .[sweep]")
    run = run_script("-m", "seed=0,1", *SLURM, *TINY, f"hydra.sweep.dir={tmp_path}")
    assert run.returncode == 0, run.stderr
    jobs = [tmp_path / "0_spg_RandomGame-v0_seed0", tmp_path / "1_spg_RandomGame-v0_seed1"]
    for job in jobs:
        assert torch.load(job / "checkpoints" / "last.pt", weights_only=True)["iteration"] == 6
    seeds = [json.loads((job / "metrics.json").read_text())["leader/return"] for job in jobs]
    assert seeds[0] != seeds[1]
    assert len(list((tmp_path / ".submitit").glob("*_[01]"))) == 2  # one array task per job
    plot = subprocess.run([sys.executable, str(ROOT / "scripts" / "plot.py"), str(tmp_path), "--out", str(tmp_path / "c.png")],
                          capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0, plot.stderr
    assert "(2 runs, 1 curves)" in plot.stdout  # the two seeds form one curve


def test_job_cancelled_with_scancel_resumes_in_its_own_directory(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e .[sweep]")
    slow = [o for o in TINY if not o.startswith(("trainer.iterations", "trainer.checkpoint_every"))]
    sweep = ["-m", "seed=0", *SLURM, *slow, "trainer.checkpoint_every=1", f"hydra.sweep.dir={tmp_path}"]
    launcher = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *sweep, "trainer.iterations=100000"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job = tmp_path / "0_spg_RandomGame-v0_seed0"
    last = job / "checkpoints" / "last.pt"
    job_ids: list[str] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (last.is_file() and torch.load(last, weights_only=True)["iteration"] >= 5):
            time.sleep(0.2)
        job_ids = [p.name for p in (tmp_path / ".submitit").iterdir() if p.is_dir()]  # submitit's folder per job
        subprocess.run(["scancel", *job_ids], check=True, timeout=30)
        while time.time() < deadline and _queued(job_ids):
            time.sleep(0.2)
        assert not _queued(job_ids), "the job outlived scancel"
    finally:
        launcher.terminate()  # without accounting (sacct) the launcher cannot see the cancellation
        launcher.wait()
        if job_ids and _queued(job_ids):
            subprocess.run(["scancel", *job_ids], timeout=30)
    state = torch.load(last, weights_only=True)
    assert 5 <= state["iteration"] < 100000 and not (job / "metrics.json").exists()

    resumed = run_script(*sweep, f"trainer.iterations={state['iteration'] + 2}", "trainer.resume=auto")
    assert resumed.returncode == 0, resumed.stderr
    assert torch.load(last, weights_only=True)["iteration"] == state["iteration"] + 2
    assert f"at iteration {state['iteration']}" in (job / "train.log").read_text()
    assert (job / "metrics.json").is_file()
