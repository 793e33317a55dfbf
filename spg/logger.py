"""TensorBoard logging of a run: scalars by tag family (``leader/``, ``follower/``, ``game/``,
``estimator/``, ``cg/``, ``charts/``), policy heatmaps, the config as text, hparams at the end."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from torch.utils.tensorboard.summary import hparams as hparams_summary  # noqa: E402

from spg.faults import writing  # noqa: E402

log = logging.getLogger(__name__)
_thread_excepthook = threading.excepthook


def _quiet_event_writer(args: threading.ExceptHookArgs) -> None:
    """A write the disk refused in TensorBoard's event writer thread ends that thread with a
    traceback on stderr; the writer raises the same error again at the run's next write, which
    ends the run in one line (:class:`spg.faults.StorageError`): the traceback goes to the debug log."""
    if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError):
        log.debug("TensorBoard's event writer thread failed: %s", args.exc_value)
        return
    _thread_excepthook(args)


threading.excepthook = _quiet_event_writer


class RunLogger:
    """One ``SummaryWriter`` per run; ``purge_step`` drops events a crashed run logged after its
    last checkpoint, so a resumed run's curves continue without duplicates. A refused write
    (a full or read-only disk) is a :class:`spg.faults.StorageError`."""

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        self.run_dir = run_dir
        with self._writing():
            self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    def _writing(self):
        """A write the file system refuses is a :class:`spg.faults.StorageError` naming the run directory."""
        return writing("TensorBoard events in", self.run_dir)

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        with self._writing():
            for tag, value in metrics.items():
                self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int | None = None) -> None:
        with self._writing():
            self.writer.add_text(tag, text, step)

    def policy_heatmaps(self, leader_probs: torch.Tensor, follower_probs: torch.Tensor, step: int) -> None:
        """State x action probability images of both players."""
        with self._writing():
            for tag, probs in (("leader/policy", leader_probs), ("follower/policy", follower_probs)):
                self.writer.add_figure(tag, policy_figure(probs.detach().cpu(), tag.split("/")[0]), step)

    def hparams(self, hparams: dict, metric_tags: list[str]) -> None:
        """The HPARAMS view's row of this run: ``hparams`` and the last values of the already
        logged scalars ``metric_tags`` (no extra scalar cards)."""
        with self._writing():
            for summary in hparams_summary(hparams, {tag: 0.0 for tag in metric_tags}):
                self.writer._get_file_writer().add_summary(summary)

    def close(self) -> None:
        with self._writing():
            self.writer.close()


def policy_figure(probs: torch.Tensor, player: str) -> Figure:
    """A state x action heatmap of ``probs`` ``[S, A]`` with integer ticks and a labelled colour bar."""
    S, A = probs.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * A, 1.0 + 0.25 * min(S, 60)))
    image = ax.imshow(probs.numpy(), aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    ax.set_xlabel(f"{player} action")
    ax.set_ylabel("state")
    for axis in (ax.xaxis, ax.yaxis):  # actions and states are indices: integer ticks, even for one state
        axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.colorbar(image, ax=ax, fraction=0.08, label="probability")
    fig.tight_layout()
    return fig
