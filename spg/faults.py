"""Faults that end a run after it started: a stop signal, a write the disk refused, a user env that
failed mid-run. Each is one exception whose message is one line, starting with what happened and
ending with what to do; ``exit_code`` is what ``scripts/train.py`` exits with."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RunFault(RuntimeError):
    """A run that stopped mid-way; its run directory holds its last good checkpoint (if any).
    ``detail``: what the one line leaves out, for the run's log."""

    exit_code = 1

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class RunStopped(RunFault):
    """A stop signal (SIGTERM, SIGINT, SIGUSR1, SIGUSR2): the run finished its update and checkpointed."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number  # the shell's convention, which schedulers read


class StorageError(RunFault):
    """A write the file system refused (full, read-only, no permission)."""


class EnvFault(RunFault):
    """A user env that failed mid-run: an exception, a non-finite reward, a step over ``env.step_timeout``."""


def describe_os_error(error: OSError) -> str:
    """``No space left on device (ENOSPC)``: the system's words and the error's name."""
    name = errno.errorcode.get(error.errno, "") if error.errno is not None else ""
    reason = error.strerror or str(error) or type(error).__name__
    return f"{reason} ({name})" if name else reason


@contextmanager
def writing(what: str, path: Path | str) -> Iterator[None]:
    """Turn an ``OSError`` of the block into a :class:`StorageError` naming ``what`` (e.g.
    ``checkpoint``) and ``path``, the cause and the way on."""
    try:
        yield
    except OSError as error:
        raise StorageError(
            f"cannot write {what} {path}: {describe_os_error(error)}; free space or set hydra.run.dir to a writable place, "
            "then trainer.resume=auto"
        ) from error
