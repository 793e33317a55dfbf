"""Learning curves of runs or sweeps in one PNG:
``python scripts/plot.py RUN_OR_SWEEP_DIR [...] [--tag game/J] [--out curves.png]``.

Every directory holding TensorBoard events below the given paths is a run. Runs whose Hydra
overrides differ only in ``seed`` form one curve: the mean over seeds, with the min-max spread
shaded. The x axis is env steps (iterations for exact algorithms, which sample nothing).
"""

import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from omegaconf import ListConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402
from tensorboard.compat.tensorflow_stub.errors import DataLossError  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from spg.cli import OneLineParser, fail  # noqa: E402


def find_runs(paths: list[str]) -> list[Path]:
    runs = {event.parent for p in paths for event in Path(p).rglob("events.out.tfevents.*")}
    return sorted(runs)


def label(run: Path) -> str:
    """The run's Hydra overrides without the seed, or its directory name."""
    overrides = run / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return run.name
    try:
        listed = OmegaConf.load(overrides)
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        raise ValueError(f"cannot read {overrides}: {error}") from None
    if not isinstance(listed, ListConfig):
        raise ValueError(f"{overrides} is not a list of overrides")
    kept = [o for o in listed if not str(o).startswith(("seed=", "hydra.", "trainer.progress"))]
    return " ".join(str(o) for o in kept) or "defaults"


def curve(run: Path, tag: str) -> tuple[np.ndarray, np.ndarray] | None:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    try:
        events.Reload()
    except (OSError, ValueError, DataLossError) as error:
        raise ValueError(f"cannot read the TensorBoard events of {run}: {error}") from None
    if tag not in events.Tags()["scalars"]:
        return None
    points = events.Scalars(tag)
    steps = np.array([p.step for p in points])
    values = np.array([p.value for p in points])
    env_steps = {p.step: p.value for p in events.Scalars("charts/env_steps")} if "charts/env_steps" in events.Tags()["scalars"] else {}
    x = np.array([env_steps.get(s, 0.0) for s in steps])
    return (x if x.any() else steps.astype(float)), values


def main() -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run directories or sweep directories")
    parser.add_argument("--tag", default="game/J", help="scalar to plot (default game/J; leader/return without a model)")
    parser.add_argument("--out", default="curves.png")
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
    groups: dict[str, list] = defaultdict(list)
    try:
        for run in runs:
            data = curve(run, args.tag)
            if data is not None:
                groups[label(run)].append(data)
    except ValueError as error:
        fail(error)
    if not groups:
        fail(f"no run logged {args.tag!r}; try --tag leader/return")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curves in sorted(groups.items()):
        length = min(len(v) for _, v in curves)
        x = np.mean([c[0][:length] for c in curves], axis=0)
        values = np.stack([c[1][:length] for c in curves])
        ax.plot(x, values.mean(0), marker="o" if length == 1 else None,  # a single point is drawn as a marker
                label=f"{name} ({len(curves)} seed{'s' if len(curves) > 1 else ''})")
        if len(curves) > 1:
            ax.fill_between(x, values.min(0), values.max(0), alpha=0.25)
    ax.set_xlabel("env steps (iterations for exact algorithms)")
    ax.set_ylabel(args.tag)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out} ({len(runs)} runs, {len(groups)} curves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
