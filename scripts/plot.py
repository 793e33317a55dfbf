"""Learning curves of runs and sweeps, in one image file:
python scripts/plot.py RUN_OR_SWEEP_DIR [...] [--tag TAG] [--out curves.png]

Every directory below the given paths that holds TensorBoard events is a run. The image has one
panel per game and x axis: runs that sampled rollouts (spg, pg, model_spg) are drawn against env
steps, runs that sampled nothing (exact_spg, exact_pg) against iterations (leader updates), never
on the same axis; runs on different games (env id or game file, with their env.kwargs) go to
different panels, each titled with its game. Runs whose Hydra overrides differ only in the seed
form one curve: their mean, with the min-max spread shaded; the legend counts the distinct seeds.
Without --tag each run is drawn with its J: exact (game/J) where its game has a model, else the
estimate from its rollouts (empirical/J). Runs without the scalar are skipped and named.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from omegaconf import ListConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.compat.tensorflow_stub.errors import DataLossError  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

from spg.cli import OneLineParser, fail  # noqa: E402

J_TAGS = ("game/J", "empirical/J")  # the default: exact J where the game has a model, else its estimate
ENV_STEPS, ITERATIONS = "env steps", "iterations (leader updates)"


@dataclass
class Curve:
    """One run's scalar ``tag`` against ``x`` (env steps or iterations, as ``axis`` says)."""

    run: Path
    tag: str
    axis: str
    x: np.ndarray
    values: np.ndarray
    game: str  # the game, as a panel title
    seed: Any
    label: str  # the run's overrides without the seed


def find_runs(paths: list[str]) -> list[Path]:
    return sorted({event.parent for p in paths for event in Path(p).rglob("events.out.tfevents.*")})


def label(run: Path) -> str:
    """The run's Hydra overrides without the seed (and the settings that do not change what is
    learned: where it runs, the progress bar, resuming), or its directory name."""
    overrides = run / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return run.name
    try:
        listed = OmegaConf.load(overrides)
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        raise ValueError(f"cannot read {overrides}: {error}") from None
    if not isinstance(listed, ListConfig):
        raise ValueError(f"{overrides} is not a list of overrides")
    kept = [o for o in listed if not str(o).startswith(("seed=", "hydra.", "trainer.progress", "trainer.resume"))]
    return " ".join(str(o) for o in kept) or "defaults"


def run_config(run: Path, events: EventAccumulator) -> dict | None:
    """The run's resolved config: ``.hydra/config.yaml``, else the ``config`` text it logged."""
    saved = run / ".hydra" / "config.yaml"
    if saved.is_file():
        text = saved.read_text()
    elif "config/text_summary" in events.Tags()["tensors"]:
        text = tensor_util.make_ndarray(events.Tensors("config/text_summary")[0].tensor_proto).item().decode()
        text = text.strip().removeprefix("```").removesuffix("```")
    else:
        return None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"cannot read the config of {run}: {error}") from None
    return config if isinstance(config, dict) else None


def game_of(config: dict | None) -> str:
    """The game a run trained on: its env id (or game file) and env.kwargs."""
    if config is None or not isinstance(config.get("env"), dict):
        return "a game its run did not record"
    env = config["env"]
    name = Path(str(env.get("path"))).name if env.get("kind") == "file" else str(env.get("id"))
    settings = dict(env.get("kwargs") or {})
    if env.get("gamma") is not None:
        settings["gamma"] = env["gamma"]
    return name + (" " + json.dumps(settings, sort_keys=True) if settings else "")


def read_curve(run: Path, tags: tuple[str, ...]) -> Curve | str:
    """The run's first scalar of ``tags``, or why the run has none."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    try:
        events.Reload()
    except (OSError, ValueError, DataLossError) as error:
        raise ValueError(f"cannot read the TensorBoard events of {run}: {error}") from None
    scalars = set(events.Tags()["scalars"])
    tag = next((t for t in tags if t in scalars), None)
    if tag is None:
        return f"it logged no {' or '.join(tags)}"
    points = events.Scalars(tag)
    steps = np.array([p.step for p in points], dtype=float)
    env_steps = {p.step: p.value for p in events.Scalars("charts/env_steps")} if "charts/env_steps" in scalars else {}
    sampled = any(value > 0 for value in env_steps.values())
    x = np.array([env_steps.get(p.step, 0.0) for p in points]) if sampled else steps
    config = run_config(run, events)
    return Curve(
        run,
        tag,
        ENV_STEPS if sampled else ITERATIONS,
        x,
        np.array([p.value for p in points]),
        game_of(config),
        (config or {}).get("seed", run.name),
        label(run),
    )


def short_titles(games: list[str]) -> dict[str, str]:
    """Panel titles: the env id or game file, with its settings only where two games share it."""
    names = defaultdict(list)
    for game in games:
        names[game.split(" ", 1)[0]].append(game)
    return {game: game if len(same) > 1 else game.split(" ", 1)[0] for same in names.values() for game in same}


def draw(curves: list[Curve]) -> tuple[Figure, int]:
    """One panel per (game, axis); one line per label and tag, with the number of lines."""
    panels: dict[tuple[str, str], dict[tuple[str, str], list[Curve]]] = defaultdict(lambda: defaultdict(list))
    for curve in curves:
        panels[curve.game, curve.axis][curve.label, curve.tag].append(curve)
    titles = short_titles(sorted({game for game, _ in panels}))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.8 * len(panels)), squeeze=False)
    lines = 0
    for ax, ((game, axis), groups) in zip(axes[:, 0], sorted(panels.items())):
        for (name, tag), members in sorted(groups.items()):
            length = min(len(c.values) for c in members)
            x = np.mean([c.x[:length] for c in members], axis=0)
            values = np.stack([c.values[:length] for c in members])
            seeds = len({str(c.seed) for c in members})
            count = f"{seeds} seed{'s' if seeds > 1 else ''}" + (
                f", {len(members)} runs" if len(members) != seeds else ""
            )
            ax.plot(x, values.mean(0), marker="o" if length == 1 else None, label=f"{name} ({count}; {tag})")
            if len(members) > 1:
                ax.fill_between(x, values.min(0), values.max(0), alpha=0.25)
            lines += 1
        ax.set_title(titles[game], fontsize=9)
        ax.set_xlabel(axis)
        ax.set_ylabel(" / ".join(sorted({tag for _, tag in groups})))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig, lines


def main() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "paths", nargs="+", help="run directories or sweep directories (searched for TensorBoard events)"
    )
    parser.add_argument(
        "--tag",
        help="the scalar to plot for every run, e.g. leader/return (default: game/J, or empirical/J for runs without a model)",
    )
    parser.add_argument(
        "--out", default="curves.png", help="the image to write; its suffix picks the format (default curves.png)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    formats = FigureCanvasBase.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        fail(f"--out {out}: choose a file ending in one of .{', .'.join(sorted(formats))}")
    if not out.parent.is_dir():
        fail(f"--out {out}: the directory {out.parent} does not exist")
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        fail(f"{' '.join(missing)} does not exist: give run or sweep directories")
    runs = find_runs(args.paths)
    if not runs:
        fail(f"no TensorBoard events under {' '.join(args.paths)}")
    tags = (args.tag,) if args.tag else J_TAGS
    curves, skipped = [], []
    try:
        for run in runs:
            read = read_curve(run, tags)
            if isinstance(read, str):
                skipped.append(f"{run}: {read}")
            else:
                curves.append(read)
    except ValueError as error:
        fail(error)
    if not curves:
        fail(
            f"no run logged {' or '.join(repr(t) for t in tags)}; choose a scalar with --tag, e.g. --tag leader/return"
        )
    fig, lines = draw(curves)
    fig.savefig(out, dpi=120)
    panels = len({(c.game, c.axis) for c in curves})
    print(
        f"wrote {out}: {len(curves)} of {len(runs)} runs, {lines} curve{'s' if lines > 1 else ''} "
        f"in {panels} panel{'s' if panels > 1 else ''}"
    )
    for line in skipped:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
