"""Checkpoints: written atomically (temp file, fsync, rename), loaded with ``weights_only=True``.

Contract (docs/formats.md, Checkpoints): a dict with ``leader`` and ``follower`` state dicts (parameter
``logits [S, A]``), the algorithm's optimiser states, ``iteration``, ``env_steps``, RNG states and
the resolved config as plain containers.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it into place:
    a crash at any moment leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def save_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode()))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint; a missing or unreadable file is a ``ValueError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist: check trainer.resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    missing = {"leader", "follower", "iteration"} - set(state)
    if missing:
        raise ValueError(f"checkpoint {path} lacks {', '.join(sorted(missing))}: not a spg checkpoint")
    return state
