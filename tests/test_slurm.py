"""A sweep through ``hydra/launcher=submitit_slurm`` on a real SLURM cluster (``scripts/slurm_cluster.sh
up`` brings up a local one; CI does): cancelled with ``scancel`` mid-run, then run again with
``trainer.resume=auto``, every job continues in its own directory and completes, and ``plot.py``
aggregates the seeds."""

import json
import shutil
import subprocess
import time

import pytest
import torch

from tests.helpers import TINY

SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=10"]


def _unavailable() -> str | None:
    """Why no sweep can run here, or None when partition ``debug`` has a node up."""
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        return "no SLURM client (srun, sinfo) on PATH; scripts/slurm_cluster.sh up starts a local cluster"
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if sinfo.returncode != 0 or not any(s.rstrip("*~#$@^-!") in ("idle", "mix", "alloc", "comp") for s in sinfo.stdout.split()):
        answer = (sinfo.stdout + sinfo.stderr).strip().splitlines()[-1:] or ["no node"]
        return f"no SLURM node up in partition debug (sinfo: {answer[0]}); scripts/slurm_cluster.sh up starts one"
    return None


def _queued(job_ids: list[str]) -> bool:
    return bool(subprocess.run(["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True, timeout=30).stdout.strip())


pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e .[sweep]")
UNAVAILABLE = _unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))]


def _iteration(job) -> int:
    """The iteration of a run directory's ``checkpoints/last.pt`` (-1 before the first)."""
    last = job / "checkpoints" / "last.pt"
    return torch.load(last, weights_only=True)["iteration"] if last.is_file() else -1


def test_sweep_cancelled_with_scancel_resumes_every_job_in_its_own_directory(scripts, tmp_path):
    slow = [o for o in TINY if not o.startswith(("trainer.iterations", "trainer.checkpoint_every"))]
    sweep = ["-m", "seed=0,1", *SLURM, *slow, "trainer.checkpoint_every=1", f"hydra.sweep.dir={tmp_path}"]
    jobs = [tmp_path / "0_model_spg_RandomGame-v0_seed0", tmp_path / "1_model_spg_RandomGame-v0_seed1"]
    launcher = scripts.start("train.py", *sweep, "trainer.iterations=100000", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job_ids: list[str] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not all(_iteration(job) >= 3 for job in jobs):
            time.sleep(0.2)
        job_ids = [p.name for p in (tmp_path / ".submitit").iterdir() if p.is_dir()]  # the array and its tasks
        subprocess.run(["scancel", *job_ids], check=True, timeout=30)
        while time.time() < deadline and _queued(job_ids):
            time.sleep(0.2)
        assert not _queued(job_ids), "the jobs outlived scancel"
    finally:
        launcher.terminate()  # without accounting (sacct) the launcher cannot see the cancellation
        launcher.wait()
        if job_ids and _queued(job_ids):
            subprocess.run(["scancel", *job_ids], timeout=30)
    stopped = [_iteration(job) for job in jobs]
    assert all(3 <= k < 100000 for k in stopped), stopped
    assert not any((job / "metrics.json").exists() for job in jobs)

    end = max(stopped) + 2
    resumed = scripts.run("train.py", *sweep, f"trainer.iterations={end}", "trainer.resume=auto")  # the same sweep again
    assert resumed.returncode == 0, resumed.stderr
    for job, k in zip(jobs, stopped):
        assert _iteration(job) == end
        assert f"at iteration {k}" in (job / "train.log").read_text()  # continued from its own checkpoint
    seeds = [json.loads((job / "metrics.json").read_text())["leader/return"] for job in jobs]
    assert seeds[0] != seeds[1]
    plot = scripts.run("plot.py", tmp_path, "--out", tmp_path / "c.png", timeout=120)
    assert plot.returncode == 0, plot.stderr
    assert "2 of 2 runs, 1 curve in 1 panel" in plot.stdout  # the two seeds form one curve
