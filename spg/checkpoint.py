"""Checkpoints: a checksum of their contents, the shape and fingerprint of their game, written
atomically (temp file, fsync, rename), loaded with ``weights_only=True`` and trusted only intact.

Contract (docs/formats.md, Checkpoints): a dict with ``leader`` and ``follower`` state dicts (parameter
``logits [S, A]``), the algorithm's optimiser states, ``iteration``, ``env_steps``, RNG states, the
resolved config as plain containers, ``game`` (``shape [S, A1, A2]`` and ``fingerprint``) and
``checksum`` (SHA-256 of everything else, :func:`state_digest`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from spg.config import SetupError
from spg.faults import writing

TEMP_SUFFIX = ".tmp"  # `.NAME.tmp` beside NAME while it is written


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it into place: a crash at any
    moment leaves either the old file or the new one, never half of one. Files get the user's
    umask (mode ``0666 & ~umask``). The temp name is fixed (``.NAME.tmp``): one writer per run
    directory (:func:`spg.rundir.claim`), which also removes the temp files a killed run left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_temp_files(directory: Path) -> None:
    """Delete the temp files of interrupted :func:`atomic_write` calls below ``directory``."""
    for pattern in (f".*.pt{TEMP_SUFFIX}", f".*.json{TEMP_SUFFIX}"):
        for tmp in directory.rglob(pattern):
            tmp.unlink(missing_ok=True)


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's contents (all but ``checksum``): tensors by dtype, shape and
    bytes, containers and scalars by structure and ``repr``."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != "checksum"})
    return digest.hexdigest()


def _feed(digest, value: Any) -> None:
    if isinstance(value, dict):
        digest.update(b"{%d" % len(value))
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(b"[%d" % len(value))
        for item in value:
            _feed(digest, item)
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def save_checkpoint(state: dict[str, Any], *paths: Path) -> None:
    """Write ``state`` with its checksum to each of ``paths``, in order (the same bytes); a write
    the file system refuses is a :class:`spg.faults.StorageError`, and leaves the file as it was."""
    buffer = io.BytesIO()
    torch.save({**state, "checksum": state_digest(state)}, buffer)
    for path in paths:
        with writing("checkpoint", path):  # a refused write is a StorageError naming the file; the old one stays
            atomic_write(path, buffer.getvalue())


def save_json(path: Path, data: dict[str, Any]) -> None:
    with writing("results", path):
        atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint and verify its checksum; a missing, unreadable, damaged or foreign file
    is a :class:`SetupError` of one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f"checkpoint {path} does not exist: check trainer.resume (a checkpoint file, or auto)")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; a truncated one has lost its directory
        raise SetupError(f"checkpoint {path} is damaged or not a spg checkpoint (not a complete torch zip archive)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files and refused pickles
        if "weights only load failed" in str(error).lower():
            raise SetupError(
                f"checkpoint {path} holds Python objects that weights_only loading refuses: not a spg checkpoint"
            ) from None
        reason = (str(error).strip().splitlines() or [""])[0][:120]
        raise SetupError(
            f"checkpoint {path} is damaged or not a spg checkpoint (torch.load: {type(error).__name__} {reason})"
        ) from None
    if not isinstance(state, dict) or "checksum" not in state:
        raise SetupError(f"checkpoint {path} has no checksum: not a spg checkpoint, or one written before checksums")
    if state["checksum"] != state_digest(state):
        raise SetupError(f"checkpoint {path} is damaged: its contents do not match its checksum")
    return state


def check_game(
    state: dict[str, Any], path: Path, shape: tuple[int, int, int], fingerprint: str, *, allow_other: bool = False
) -> None:
    """The checkpoint at ``path`` must belong to a game of ``shape`` ``(S, A1, A2)`` and, unless
    ``allow_other``, to the game with ``fingerprint`` itself."""
    game = state["game"]
    if tuple(game["shape"]) != tuple(shape):
        raise SetupError(
            f"checkpoint {path} holds policies of a game with [S, A1, A2] = {list(game['shape'])}, but this run's game "
            f"has {list(shape)}: resume with the same env settings, or unset trainer.resume"
        )
    if game["fingerprint"] != fingerprint and not allow_other:
        raise SetupError(
            f"checkpoint {path} belongs to another game of the same shape (fingerprint {game['fingerprint'][:12]}, this "
            f"game {fingerprint[:12]}): resume with the same env settings, or set trainer.resume_any_game=true to continue on this game"
        )
