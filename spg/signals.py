"""Stop signals: SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 ask a run to stop at the end of its current
update, after a checkpoint (:class:`StopSignals`); a second one while it stops ends the process at
once (the atomic checkpoint writes leave the previous ``last.pt`` whole).

Under the submitit launcher (``hydra/launcher=submitit_slurm``) submitit has a handler of its own
for its preemption signal (SIGUSR2 unless ``$SUBMITIT_PREEMPT_SIGNAL`` says otherwise, sent by SLURM
``--signal=USR2@signal_delay_s`` before the time limit, or by ``scancel --signal=USR2``): it
pickles the job's submission again, requeues the job with ``scontrol requeue`` and exits. The run
takes that signal as a stop signal too, and hands it on to submitit's handler once its checkpoint is
written; the requeued job, which SLURM marks with ``SLURM_RESTART_COUNT``, continues from that
checkpoint (:func:`resume_if_requeued`)."""

from __future__ import annotations

import copy
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from spg.faults import RunStopped

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_now(code: int) -> None:
    os._exit(code)


class StopSignals:
    """While active (``with StopSignals() as stop:``), the stop signals set ``stop.received``
    (the first signal's number) instead of ending the process; a second one writes one line
    and exits with ``128 + signal``. Installed only in the main thread (elsewhere Python
    cannot, and the run keeps the handlers it had); the previous handlers come back on exit.

    A signal whose previous handler is submitit's checkpoint-and-requeue handler
    (:func:`requeues_the_job`) is handed on to it: when the block ends with the run stopped by
    it (its checkpoint written), or at once on a second signal; submitit then requeues the job
    and exits (``SystemExit``)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._requeue: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def __enter__(self) -> StopSignals:  # noqa: PYI034
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = previous = signal.signal(number, self._handle)
                if requeues_the_job(previous):
                    self._requeue[number] = previous
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
        requeue = self._requeue.get(self.received) if self.received is not None else None
        self._requeue = {}
        if requeue is not None and isinstance(error, RunStopped):
            stopped = str(error).split("; continue with", 1)[0]  # the job is not continued by hand
            log.warning(
                "%s",
                f"{stopped}; handed on to submitit, which requeues the job (at its time limit only "
                "hydra.launcher.max_num_timeout times) to continue from it",
            )
            requeue(self.received, None)  # requeues and raises SystemExit

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = number  # the run says how it stopped once it has (spg.trainer)
            return
        requeue = self._requeue.get(self.received)
        if requeue is not None:  # preempted and signalled again: requeue now, from the last complete checkpoint
            _say(
                f"{signal_name(number)} received while stopping for {signal_name(self.received)}: submitit requeues the job "
                "at once; it continues from checkpoints/last.pt"
            )
            self._requeue = {}
            requeue(self.received, frame)
            return
        _say(
            f"{signal_name(number)} received again: exiting at once; checkpoints/last.pt holds the last complete checkpoint, "
            "continue with trainer.resume=auto"
        )
        _exit_now(128 + number)


def requeues_the_job(handler: Any) -> bool:
    """Whether ``handler`` is submitit's handler of its preemption signal (a job running under
    submitit has it): it checkpoints the job's submission, requeues the job and exits."""
    return (
        callable(handler)
        and getattr(handler, "__module__", "").startswith("submitit.")
        and getattr(handler, "__name__", "").startswith("checkpoint_and_")
    )


def restart_count() -> int:
    """How many times SLURM has requeued and restarted this job (``$SLURM_RESTART_COUNT``; 0 elsewhere)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def resume_if_requeued(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """``cfg``, with ``trainer.resume=auto`` where this process is a requeued SLURM job (preempted,
    requeued by submitit, ``scontrol requeue``) whose run directory holds a checkpoint: the job
    continues its own run, as Lightning's SLURM requeue does, instead of being refused by it."""
    count = restart_count()
    if count == 0 or cfg.trainer.resume == "auto":
        return cfg
    if not ((run_dir / "checkpoints" / "last.pt").is_file() or any(run_dir.glob("restart_*/checkpoints/last.pt"))):
        return cfg
    log.info(
        "SLURM restarted this job (SLURM_RESTART_COUNT=%d): it continues from its checkpoint in %s "
        "(trainer.resume=auto instead of %s)",
        count,
        run_dir,
        cfg.trainer.resume or "null",
    )
    cfg = copy.deepcopy(cfg)
    OmegaConf.update(cfg, "trainer.resume", "auto")
    return cfg


def _say(line: str) -> None:
    """One line on stderr by a plain write (a handler may interrupt a buffered write to stderr)."""
    try:
        os.write(2, (line + "\n").encode())
    except OSError:
        pass
