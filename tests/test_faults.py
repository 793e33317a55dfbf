"""Faults mid-run, one row per fault: a stop signal, a write the disk refuses, a user env that
returns NaN, raises or hangs. Each must end the run with one line (the exception in-process,
its ``exit_code`` for ``scripts/train.py``), leave ``last.pt`` loadable at the last good update,
no temp files and no ``metrics.json``, and resume with ``trainer.resume=auto`` to the end. Also:
a diverging CG falls back to the closed form, and contract errors print a short line."""

import errno
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import spg.logger
import spg.stackelberg
from spg import signals
from spg.cg import CGResult
from spg.checkpoint import load_checkpoint
from spg.faults import EnvFault, RunStopped, StorageError
from spg.trainer import Experiment, SetupError, train
from tests.helpers import TINY, config

RUN = TINY[3:]  # iterations 6, batch 32, horizon 12, evaluations every 3, checkpoints every 2
ENV = ["env=gym", "env.id=fault_env_module:Faulty-v0", "env.gamma=0.5", "env.num_envs=2", "algo.follower_warmup=0"]
STEPS_PER_UPDATE = (
    32 * 12 // 2
)  # per copy: the batch's trajectories of horizon 12 over 2 copies (the batch grows a little)

# the fault comes from the environment variable, not the env's kwargs: the fixed env is the same game
ENV_MODULE = '''
import os, time
import gymnasium as gym, numpy as np

class Faulty(gym.Env):
    """A 2-state env without a model that fails as $SPG_TEST_FAULT says after $SPG_TEST_AFTER steps."""
    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.MultiDiscrete([2, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = getattr(self, "t", 0)
        return 0, {}

    def step(self, action):
        self.t += 1
        reward = np.array([float(action[0] == action[1]), float(action[1])])
        if self.t > int(os.environ.get("SPG_TEST_AFTER", "0")):
            fault = os.environ.get("SPG_TEST_FAULT", "none")
            if fault == "nan":
                reward = np.array([np.nan, 0.0])
            elif fault == "raise":
                raise ZeroDivisionError("the env divided by zero")
            elif fault == "sleep":
                time.sleep(30)
        return int(self.np_random.integers(2)), reward, False, False, {}

if "Faulty-v0" not in gym.registry:
    gym.register("Faulty-v0", entry_point=Faulty)
'''


@pytest.fixture
def fault_env(tmp_path, monkeypatch):
    """``fault_env_module:Faulty-v0`` importable; returns ``set(fault, after)`` for its next steps."""
    (tmp_path / "fault_env_module.py").write_text(ENV_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))

    def set_fault(fault: str = "none", after: int = 0) -> None:
        monkeypatch.setenv("SPG_TEST_FAULT", fault)
        monkeypatch.setenv("SPG_TEST_AFTER", str(after))

    set_fault()
    return set_fault


def at_update(monkeypatch, update: int, action) -> None:
    """Call ``action(run_dir)`` once update ``update`` has finished (after its checkpoint, if any)."""
    original = Experiment._checkpoint

    def checkpoint(self, iteration):
        original(self, iteration)
        if iteration == update:
            action(self.run_dir)

    monkeypatch.setattr(Experiment, "_checkpoint", checkpoint)


def send(number: int):
    return lambda run_dir: os.kill(os.getpid(), number)


def refuse_writes(monkeypatch, name: str, code: int):
    """From now on, renaming a temp file onto ``name`` fails with ``code`` (the temp file was written)."""
    original = os.replace

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == name:
            raise OSError(code, os.strerror(code))
        return original(src, dst, *args, **kwargs)

    return lambda run_dir: monkeypatch.setattr(os, "replace", replace)


def refuse_events(monkeypatch, code: int):
    from torch.utils.tensorboard import SummaryWriter

    def add_scalar(self, *args, **kwargs):
        raise OSError(code, os.strerror(code))

    return lambda run_dir: monkeypatch.setattr(SummaryWriter, "add_scalar", add_scalar)


def tensors_of(value, prefix=""):
    """Every tensor and number of a checkpoint, by path (the config and checksum aside)."""
    if isinstance(value, dict):
        found = {}
        for key, item in value.items():
            if prefix == "" and key in ("config", "checksum"):
                continue
            found.update(tensors_of(item, f"{prefix}/{key}"))
        return found
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in tensors_of(item, f"{prefix}/{i}").items()}
    return {prefix: value}


def assert_same_state(a, b):
    left, right = tensors_of(a), tensors_of(b)
    assert left.keys() == right.keys()
    for key in left:
        if isinstance(left[key], torch.Tensor):
            assert torch.equal(left[key], right[key]), key
        else:
            assert left[key] == right[key], key


def assert_left_resumable(run_dir, iteration):
    """What a fault must leave: ``last.pt`` intact at ``iteration``, no temp files, no results."""
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["iteration"] == iteration
    assert not list(run_dir.rglob(".*.tmp")), list(run_dir.rglob(".*.tmp"))
    assert not (run_dir / "metrics.json").exists()


# (fault, overrides, injection(monkeypatch, set_fault) -> action at update 3 or None, exception, exit code,
#  the line's start, text it must hold, the iteration last.pt holds afterwards)
FAULTS = [
    (
        "sigterm",
        [],
        lambda mp, env: at_update(mp, 3, send(signal.SIGTERM)),
        RunStopped,
        143,
        "stopped by SIGTERM at update 3: checkpoint written to",
        "continue with trainer.resume=auto hydra.run.dir=",
        3,
    ),
    (
        "sigint",
        [],
        lambda mp, env: at_update(mp, 3, send(signal.SIGINT)),
        RunStopped,
        130,
        "stopped by SIGINT at update 3",
        "trainer.resume=auto",
        3,
    ),
    (
        "sigusr1",
        [],
        lambda mp, env: at_update(mp, 5, send(signal.SIGUSR1)),
        RunStopped,
        128 + signal.SIGUSR1,
        "stopped by SIGUSR1 at update 5",
        "trainer.resume=auto",
        5,
    ),
    (
        "sigusr2",
        [],
        lambda mp, env: at_update(mp, 4, send(signal.SIGUSR2)),
        RunStopped,
        128 + signal.SIGUSR2,
        "stopped by SIGUSR2 at update 4",
        "trainer.resume=auto",
        4,
    ),
    (
        "disk-full-checkpoint",
        [],
        lambda mp, env: at_update(mp, 3, refuse_writes(mp, "last.pt", errno.ENOSPC)),
        StorageError,
        1,
        "cannot write checkpoint",
        "last.pt: No space left on device (ENOSPC); free space or set hydra.run.dir to a writable place, then trainer.resume=auto",
        2,
    ),
    (
        "read-only-results",
        [],
        lambda mp, env: at_update(mp, 6, refuse_writes(mp, "metrics.json", errno.EROFS)),
        StorageError,
        1,
        "cannot write results",
        "metrics.json: Read-only file system (EROFS)",
        6,
    ),
    (
        "no-permission-events",
        [],
        lambda mp, env: at_update(mp, 3, refuse_events(mp, errno.EACCES)),
        StorageError,
        1,
        "cannot write TensorBoard events in",
        "Permission denied (EACCES)",
        2,
    ),
    (
        "env-nan-reward",
        ENV,
        lambda mp, env: env("nan", after=3 * STEPS_PER_UPDATE + 40),
        EnvFault,
        1,
        "env fault_env_module:Faulty-v0 broke the two-player contract mid-rollout after",
        "got the reward array([nan,",
        3,
    ),
    (
        "env-raises",
        ENV,
        lambda mp, env: env("raise", after=3 * STEPS_PER_UPDATE + 40),
        EnvFault,
        1,
        "env fault_env_module:Faulty-v0 raised ZeroDivisionError in step: the env divided by zero after",
        "holds update 3: fix the env",
        3,
    ),
    (
        "env-step-timeout",
        [*ENV, "env.step_timeout=0.2"],
        lambda mp, env: env("sleep", after=3 * STEPS_PER_UPDATE + 40),
        EnvFault,
        1,
        "env fault_env_module:Faulty-v0 took longer than env.step_timeout = 0.2 s in one step after",
        "holds update 3",
        3,
    ),
    (
        "env-raises-async",
        [*ENV, "env.vectorization=async"],
        lambda mp, env: env("raise", after=3 * STEPS_PER_UPDATE + 40),
        EnvFault,
        1,
        "env fault_env_module:Faulty-v0 raised ZeroDivisionError in step: the env divided by zero after",
        "holds update 3",
        3,
    ),
    (
        "env-step-timeout-async",
        [*ENV, "env.vectorization=async", "env.step_timeout=0.2"],
        lambda mp, env: env("sleep", after=3 * STEPS_PER_UPDATE + 40),
        EnvFault,
        1,
        "env fault_env_module:Faulty-v0 took longer than env.step_timeout = 0.2 s in one step after",
        "holds update 3",
        3,
    ),
]


@pytest.mark.parametrize(
    "fault, overrides, inject, error, exit_code, start, holds, iteration", FAULTS, ids=[f[0] for f in FAULTS]
)
def test_fault_ends_the_run_in_one_line_and_leaves_it_resumable(
    fault, overrides, inject, error, exit_code, start, holds, iteration, fault_env, tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    handlers = {number: signal.getsignal(number) for number in signals.STOP_SIGNALS}
    with monkeypatch.context() as injected:
        inject(injected, fault_env)
        began = time.perf_counter()
        with pytest.raises(error) as raised:
            train(config(*RUN, *overrides), run_dir=run_dir)
        assert time.perf_counter() - began < 20
    message = str(raised.value)
    assert message.startswith(start) and holds in message, message
    assert "\n" not in message and raised.value.exit_code == exit_code
    if fault.startswith("env"):
        assert "steps" in message.split("after", 1)[1]  # the env-step count
    assert {number: signal.getsignal(number) for number in signals.STOP_SIGNALS} == handlers  # restored
    assert_left_resumable(run_dir, iteration)
    fault_env("none")
    final = train(config(*RUN, *overrides, "trainer.resume=auto"), run_dir=run_dir)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 6
    assert (run_dir / "metrics.json").is_file() and final["iterations"] == 6


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGUSR1])
def test_stopped_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(number, tmp_path, monkeypatch):
    whole = train(config(*RUN, *TINY[:3]), run_dir=tmp_path / "whole")
    with monkeypatch.context() as injected:
        at_update(injected, 3, send(number))
        with pytest.raises(RunStopped):
            train(config(*RUN, *TINY[:3]), run_dir=tmp_path / "split")
    split = train(config(*RUN, *TINY[:3], "trainer.resume=auto"), run_dir=tmp_path / "split")
    assert {k: v for k, v in whole.items() if k != "seconds"} == {k: v for k, v in split.items() if k != "seconds"}
    assert_same_state(
        load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt"),
        load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt"),
    )


def test_second_signal_exits_at_once_and_handlers_come_back(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(signals, "_exit_now", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    with pytest.raises(SystemExit) as exited, signals.StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == signal.SIGTERM  # the first only asks
        os.kill(os.getpid(), signal.SIGINT)
    assert exited.value.code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is before


class Submitit:
    """Stands in for submitit's ``SignalHandler``, whose ``checkpoint_and_try_requeue`` a job under submitit has
    for its preemption signal: it records the call (and the iteration ``last.pt`` holds then), and exits as
    submitit does after ``scontrol requeue``."""

    def __init__(self, run_dir=None) -> None:
        self.run_dir, self.calls = run_dir, []

    def checkpoint_and_try_requeue(self, number, frame):
        last = self.run_dir / "checkpoints" / "last.pt" if self.run_dir is not None else None
        self.calls.append((number, load_checkpoint(last)["iteration"] if last is not None else None))
        raise SystemExit(-1)

    checkpoint_and_try_requeue.__module__ = "submitit.core.job_environment"


@pytest.fixture
def under_submitit(monkeypatch):
    """Install ``Submitit(run_dir)``'s handler for SIGUSR2, as submitit's job environment does; returns it."""
    previous = signal.getsignal(signal.SIGUSR2)

    def install(run_dir=None) -> Submitit:
        handler = Submitit(run_dir)
        signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
        return handler

    yield install
    signal.signal(signal.SIGUSR2, previous)


def test_submitits_preemption_signal_requeues_after_the_checkpoint_and_the_requeued_job_continues(
    under_submitit, tmp_path, monkeypatch
):
    run_dir = tmp_path / "split"
    submitit = under_submitit(run_dir)
    assert signals.requeues_the_job(signal.getsignal(signal.SIGUSR2))
    with monkeypatch.context() as injected:
        at_update(injected, 3, send(signal.SIGUSR2))
        with pytest.raises(SystemExit):
            train(config(*RUN, *TINY[:3]), run_dir=run_dir)
    assert submitit.calls == [(signal.SIGUSR2, 3)]  # handed on once the update's checkpoint was written
    assert signal.getsignal(signal.SIGUSR2) == submitit.checkpoint_and_try_requeue  # and submitit's handler is back
    assert_left_resumable(run_dir, 3)
    with pytest.raises(SetupError, match="already holds a run"):  # the same command, not a requeued job
        train(config(*RUN, *TINY[:3]), run_dir=run_dir)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the requeued job: the same command, SLURM's restart count
    split = train(config(*RUN, *TINY[:3]), run_dir=run_dir)
    whole = train(
        config(*RUN, *TINY[:3]), run_dir=tmp_path / "whole"
    )  # restarted too, but without a checkpoint: from the start
    assert {k: v for k, v in whole.items() if k != "seconds"} == {k: v for k, v in split.items() if k != "seconds"}
    assert_same_state(
        load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt"),
        load_checkpoint(run_dir / "checkpoints" / "last.pt"),
    )
    assert submitit.calls == [(signal.SIGUSR2, 3)]


def test_a_second_signal_after_submitits_preemption_signal_requeues_at_once(under_submitit, monkeypatch):
    submitit = under_submitit()
    monkeypatch.setattr(signals, "_exit_now", lambda code: pytest.fail(f"exited with {code} instead of requeuing"))
    with pytest.raises(SystemExit), signals.StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stop.received == signal.SIGUSR2 and submitit.calls == []  # the first only asks
        os.kill(os.getpid(), signal.SIGTERM)
    assert submitit.calls == [(signal.SIGUSR2, None)]


def test_handlers_are_installed_only_in_the_main_thread():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def run():
        with signals.StopSignals() as stop:
            seen.append((stop.received, signal.getsignal(signal.SIGTERM)))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [(None, before)]


def test_a_diverging_cg_falls_back_to_the_closed_form_and_is_counted(tmp_path, monkeypatch):
    def diverging(matvec, b, **kwargs):
        return CGResult(torch.full_like(b, float("nan")), 3, float("nan"), False, False)

    monkeypatch.setattr(spg.stackelberg, "conjugate_gradient", diverging)
    final = train(config(*TINY, "algo.solve=cg"), run_dir=tmp_path)
    assert torch.isfinite(torch.tensor(final["game/J"]))
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("cg/fallbacks")] == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["algorithm"]["cg_fallbacks"] == 6


@pytest.fixture
def mount():
    """``mount(*args, target)`` runs ``mount ARGS TARGET`` (unmounted when the test ends); the test skips,
    saying why, where this process may not mount (not root, no mount(8), a container without the right)."""
    mounted = []

    def run(*args: str, target) -> None:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs or a read-only bind needs root")
        if shutil.which("mount") is None:
            pytest.skip("no mount(8) on PATH")
        done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(
                f"mount {' '.join(args)} {target} was refused: {done.stderr.strip() or f'exit status {done.returncode}'}"
            )
        if "remount" not in args:
            mounted.append(target)

    yield run
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], timeout=30)


def fill(path) -> None:
    """Write zeros to ``path`` until its file system is full."""
    with open(path, "wb", buffering=0) as f:
        with pytest.raises(OSError) as full:
            while True:
                f.write(bytes(4096))
    assert full.value.errno == errno.ENOSPC


def test_a_real_read_only_run_directory_ends_in_one_line(mount, tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    if os.geteuid() == 0:  # root writes into a directory of mode 0555; a read-only bind of it refuses root too
        checkpoints.mkdir()
        mount("--bind", str(checkpoints), target=checkpoints)
        at_update(monkeypatch, 2, lambda run_dir: mount("-o", "remount,bind,ro", target=checkpoints))
        cause = r"Read-only file system \(EROFS\)"
    else:
        at_update(monkeypatch, 2, lambda run_dir: checkpoints.chmod(0o555))
        cause = r"Permission denied \(EACCES\)"
    try:
        with pytest.raises(
            StorageError, match=rf"^cannot write checkpoint {checkpoints}/iteration_000004.pt: {cause}; "
        ) as raised:
            train(config(*TINY), run_dir=tmp_path)
    finally:
        if os.geteuid() != 0:
            checkpoints.chmod(0o755)
    assert "\n" not in str(raised.value) and raised.value.exit_code == 1
    assert_left_resumable(tmp_path, 2)


def test_a_full_tmpfs_ends_the_run_in_one_line(mount, tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", target=disk)
    run_dir = disk / "run"
    # the hook a run has outside pytest (which puts its own in for each test): a refused write in TensorBoard's event
    # writer thread prints no traceback; the run's next write raises it again
    monkeypatch.setattr(threading, "excepthook", spg.logger._quiet_event_writer)
    at_update(monkeypatch, 2, lambda run_dir: fill(disk / "filler"))  # the run's next write finds the disk full
    with pytest.raises(StorageError) as raised:
        train(config(*TINY), run_dir=run_dir)
    message = str(raised.value)
    # the checkpoint at update 4 or the events before it, whichever the disk refuses first
    assert re.fullmatch(
        rf"cannot write (checkpoint {run_dir}/checkpoints/iteration_000004.pt|TensorBoard events in {run_dir}): "
        r"No space left on device \(ENOSPC\); free space or set hydra.run.dir to a writable place, then trainer.resume=auto",
        message,
    ), message
    assert raised.value.exit_code == 1
    assert_left_resumable(run_dir, 2)
    (disk / "filler").unlink()  # space again: the run continues from update 2 to the end
    final = train(config(*TINY, "trainer.resume=auto"), run_dir=run_dir)
    assert final["iterations"] == 6 and load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 6


def test_contract_error_is_a_short_line_with_the_details_apart(fault_env, tmp_path):
    fault_env("nan", after=0)
    with pytest.raises(SetupError) as raised:
        train(config(*RUN, *ENV), run_dir=tmp_path / "run")
    message = str(raised.value)
    assert message.startswith(
        "env fault_env_module:Faulty-v0 breaks the two-player contract: got the reward array([nan,"
    ), message
    assert message.endswith("fix the env as docs/formats.md says (details in train.log)") and len(message) <= 160, (
        message
    )
    assert "OrderEnforcing" in raised.value.detail and "MultiDiscrete([A1, A2])" in raised.value.detail


@pytest.mark.slow
def test_contract_error_prints_at_most_200_characters_and_logs_the_details(scripts, fault_env, tmp_path):
    run_dir = tmp_path / "run"
    done = scripts.run(
        "train.py",
        *RUN,
        *ENV,
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env={**os.environ, "SPG_TEST_FAULT": "nan", "SPG_TEST_AFTER": "0"},
    )
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "[ERROR]" in line]
    assert len(lines) == 1 and len(lines[0]) <= 200, lines
    assert "breaks the two-player contract: got the reward array([nan," in lines[0] and lines[0].endswith(
        "(details in train.log)"
    )
    log = (run_dir / "train.log").read_text()
    assert "details: <" in log and "MultiDiscrete([A1, A2])" in log  # the wrapper chain and the whole contract


@pytest.mark.slow
def test_sigterm_to_the_script_checkpoints_exits_143_and_resumes(scripts, tmp_path):
    run_dir = tmp_path / "run"
    endless = [o for o in TINY if not o.startswith(("trainer.iterations", "trainer.checkpoint_every"))]
    args = [*endless, "trainer.iterations=100000", "trainer.checkpoint_every=3", f"hydra.run.dir={run_dir}"]
    process = scripts.start("train.py", *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not last.is_file():
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)  # Hydra's console log is on stdout
    assert process.returncode == 143, output[-3000:]
    line = output.strip().splitlines()[-1]
    assert (
        "stopped by SIGTERM at update" in line and f"continue with trainer.resume=auto hydra.run.dir={run_dir}" in line
    ), line
    state = load_checkpoint(last)
    assert 3 <= state["iteration"] < 100000 and not list(run_dir.rglob(".*.tmp"))
    resumed = scripts.run(
        "train.py",
        *endless,
        f"trainer.iterations={state['iteration'] + 2}",
        "trainer.resume=auto",
        f"hydra.run.dir={run_dir}",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(last)["iteration"] == state["iteration"] + 2 and (run_dir / "metrics.json").is_file()
