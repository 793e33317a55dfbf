"""A sweep through ``hydra/launcher=submitit_slurm`` on a real SLURM cluster (``scripts/slurm_cluster.sh
up`` brings up a local one; CI does): cancelled with ``scancel`` mid-run, then run again with
``trainer.resume=auto``, every job continues in its own directory and completes, and ``plot.py``
aggregates the seeds; a job preempted mid-run (submitit's SIGUSR2, or ``scontrol requeue``) is requeued,
continues from its checkpoint and ends with the uninterrupted run's metrics and checkpoint."""

import json
import shutil
import subprocess
import time

import pytest
import torch

from spg.checkpoint import load_checkpoint
from tests.helpers import TINY
from tests.test_faults import assert_same_state

SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=10"]


def _unavailable() -> str | None:
    """Why no sweep can run here, or None when partition ``debug`` has a node up."""
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        return "no SLURM client (srun, sinfo) on PATH; scripts/slurm_cluster.sh up starts a local cluster"
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if sinfo.returncode != 0 or not any(
        s.rstrip("*~#$@^-!") in ("idle", "mix", "alloc", "comp") for s in sinfo.stdout.split()
    ):
        answer = (sinfo.stdout + sinfo.stderr).strip().splitlines()[-1:] or ["no node"]
        return f"no SLURM node up in partition debug (sinfo: {answer[0]}); scripts/slurm_cluster.sh up starts one"
    return None


def _queued(job_ids: list[str]) -> bool:
    return bool(
        subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    )


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
    launcher = scripts.start(
        "train.py", *sweep, "trainer.iterations=100000", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
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
    resumed = scripts.run(
        "train.py", *sweep, f"trainer.iterations={end}", "trainer.resume=auto"
    )  # the same sweep again
    assert resumed.returncode == 0, resumed.stderr
    for job, k in zip(jobs, stopped):
        assert _iteration(job) == end
        assert f"at iteration {k}" in (job / "train.log").read_text()  # continued from its own checkpoint
    seeds = [json.loads((job / "metrics.json").read_text())["leader/return"] for job in jobs]
    assert seeds[0] != seeds[1]
    plot = scripts.run("plot.py", tmp_path, "--out", tmp_path / "c.png", timeout=120)
    assert plot.returncode == 0, plot.stderr
    assert "2 of 2 runs, 1 curve in 1 panel" in plot.stdout  # the two seeds form one curve


def _pending(job_ids: list[str]) -> bool:
    states = subprocess.run(
        ["squeue", "-h", "-o", "%t", "-j", ",".join(job_ids)], capture_output=True, text=True, timeout=30
    ).stdout.split()
    return "PD" in states


PREEMPTIONS = {
    # submitit's protocol: SIGUSR2 (what `--signal=USR2@signal_delay_s` sends before the time limit); the run
    # checkpoints at the end of its update, then submitit's handler requeues the job
    "usr2": lambda ids: ["scancel", "--signal=USR2", *ids],
    # SLURM requeues the job itself (as a preemption with PreemptMode=REQUEUE does): SIGTERM, then the requeued job
    # starts again with SLURM_RESTART_COUNT=1 and continues from its checkpoint
    "scontrol-requeue": lambda ids: ["scontrol", "requeue", ",".join(ids)],
}


@pytest.mark.parametrize("how", PREEMPTIONS)
def test_preempted_job_requeues_and_ends_as_an_uninterrupted_run(how, scripts, tmp_path):
    run = [o for o in TINY if not o.startswith(("trainer.iterations", "trainer.checkpoint_every"))]
    run += ["algo=spg", "trainer.iterations=80", "trainer.checkpoint_every=25"]
    whole = scripts.run("train.py", *run, "seed=1", f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-3000:]

    sweep = tmp_path / "sweep"
    job = sweep / "0_spg_RandomGame-v0_seed1"
    # timeout_min=60: submitit takes a SIGUSR2 before 80% of the time limit for a preemption, which it requeues
    # without counting it against hydra.launcher.max_num_timeout
    launcher = scripts.start(
        "train.py",
        "-m",
        *run,
        "seed=1",
        *SLURM,
        "hydra.launcher.timeout_min=60",
        f"hydra.sweep.dir={sweep}",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    job_ids: list[str] = []
    try:
        deadline = time.time() + 120
        log = job / "train.log"
        while time.time() < deadline and not (log.is_file() and "iteration 6/80" in log.read_text()):
            time.sleep(0.05)
        job_ids = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]
        subprocess.run(PREEMPTIONS[how](job_ids), check=True, timeout=30)
        while time.time() < deadline and not _pending(job_ids):
            time.sleep(0.2)
        assert _pending(job_ids), "the job was not requeued"
        _, errors = launcher.communicate(
            timeout=300
        )  # a requeued job starts again after cred_expire (scripts/slurm_cluster.sh)
        assert launcher.returncode == 0, errors[-3000:]
    finally:
        if job_ids and _queued(job_ids):
            subprocess.run(["scancel", *job_ids], timeout=30)

    log = (job / "train.log").read_text()
    stopped = int(log.split("stopping after update ", 1)[1].split()[0])
    assert 6 <= stopped < 80, log[-3000:]
    assert "SLURM restarted this job (SLURM_RESTART_COUNT=1)" in log
    assert (
        f"resumed from {job / 'checkpoints' / 'last.pt'} at iteration {stopped}" in log
    )  # its own checkpoint at the stop
    final = json.loads((job / "metrics.json").read_text())
    expected = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert final.keys() == expected.keys()
    assert {k: v for k, v in final.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}
    assert_same_state(
        load_checkpoint(job / "checkpoints" / "last.pt"),
        load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt"),
    )
