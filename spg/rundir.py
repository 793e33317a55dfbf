"""A run directory belongs to one run at a time: an OS-level lock (``flock`` on ``RUN_DIR/.lock``),
which the kernel releases when the process ends however it ends (a SIGKILL included), so a killed
run never leaves it behind; the run holding it removes the temp files a killed run left."""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from spg.checkpoint import remove_temp_files
from spg.config import SetupError

LOCK_NAME = ".lock"
LOG_NAME = "train.log"  # Hydra's log file of the run (configs/config.yaml)


class RunDirectoryInUse(SetupError):
    """Another live process holds the run directory."""


@contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for the duration of the block (its ``.lock`` records the holder's pid);
    :class:`RunDirectoryInUse` if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise SetupError(
            f"cannot lock run directory {run_dir}: {error.strerror}; choose another hydra.run.dir"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirectoryInUse(
                f"run directory {run_dir} is in use by another run (pid {holder}): wait for it to end, "
                "or choose another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_temp_files(run_dir)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_hydra_config(run_dir: Path, cfg: DictConfig) -> None:
    """Hydra's record of the run in ``RUN_DIR/.hydra/`` (``config.yaml``, ``hydra.yaml``,
    ``overrides.yaml``), written by the run once it holds the directory and its setup passed
    (``hydra.output_subdir`` is null in ``configs/config.yaml``, so Hydra does not write it
    earlier and a refused run cannot overwrite another run's record)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    record = run_dir / ".hydra"
    record.mkdir(exist_ok=True)
    (record / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (record / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": hydra_cfg}))
    (record / "overrides.yaml").write_text(OmegaConf.to_yaml(hydra_cfg.overrides.task))


def holds_only_a_failed_setup(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds nothing but its lock and its log: what a run whose setup failed
    leaves (it writes ``.hydra/``, events and checkpoints only once its checks passed)."""
    return run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {LOCK_NAME, LOG_NAME}


def remove_failed_setup(run_dir: Path) -> None:
    """Remove a run directory that :func:`holds_only_a_failed_setup` (its log was also printed)."""
    shutil.rmtree(run_dir, ignore_errors=True)
