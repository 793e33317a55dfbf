"""Shared fixtures: a seeded generator, a finished tiny run, and the scripts in subprocesses.
Plain functions and constants (the shipped config, learners, ``TINY``) are in ``tests/helpers.py``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from spg.trainer import train
from tests.helpers import ROOT, TINY, config

torch.set_num_threads(1)


@pytest.fixture
def generator() -> torch.Generator:
    """A torch generator seeded with 1234."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The run directory of ``train(config(*TINY))``, trained once: copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    train(config(*TINY), run_dir=run_dir)
    return run_dir


class Scripts:
    """``scripts/NAME`` run by this Python in subprocesses, from the repository unless ``cwd`` says
    otherwise; the ones started in the background are killed when the test ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def run(self, name: str, *args, cwd: Path = ROOT, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
        """Run to the end; stdout and stderr captured as text."""
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def start(self, name: str, *args, cwd: Path = ROOT, **kwargs) -> subprocess.Popen:
        """Start in the background; ``kwargs`` go to ``subprocess.Popen``."""
        process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], cwd=cwd, **kwargs)
        self.started.append(process)
        return process

    def kill_running(self) -> None:
        """Kill the started processes that are still running, and reap them."""
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture
def scripts(request) -> Iterator[Scripts]:
    """Only for tests marked ``slow``: a script starts a Python process of its own (seconds)."""
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} runs scripts in subprocesses: mark it @pytest.mark.slow")
    runner = Scripts()
    yield runner
    runner.kill_running()
