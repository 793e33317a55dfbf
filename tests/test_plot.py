"""``scripts/plot.py`` on runs written here as TensorBoard event files: one panel per game and x
axis (env steps for sampled runs, iterations for exact ones), seeds counted by seed, the J of
runs without a model plotted by default, and every skipped run named."""

import runpy
import sys

import numpy as np
import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from tests.helpers import ROOT

PLOT = runpy.run_path(str(ROOT / "scripts" / "plot.py"), run_name="spg_plot")
GAME = {"kind": "gym", "id": "spg/RandomGame-v0", "kwargs": {"num_states": 8, "seed": 0}}
OTHER = {"kind": "gym", "id": "my_games:Inspection-v0", "kwargs": {}, "gamma": 0.9}


def write_run(path, *, overrides, env, seed, scalars, env_steps=None, config_in_events=False):
    """A run directory as the trainer leaves it: events with ``scalars`` ``{tag: [values at steps
    0, 1, ...]}`` (and ``charts/env_steps`` from step 1), ``.hydra/overrides.yaml``, and the config
    in ``.hydra/config.yaml`` or only as the ``config`` text of the events."""
    config = {"env": env, "seed": seed}
    writer = SummaryWriter(str(path))
    if config_in_events:
        writer.add_text("config", "```\n" + yaml.safe_dump(config) + "\n```")
    for tag, values in scalars.items():
        for step, value in enumerate(values):
            writer.add_scalar(tag, value, step)
    for step, value in enumerate(env_steps or [], start=1):
        writer.add_scalar("charts/env_steps", value, step)
    writer.close()
    (path / ".hydra").mkdir()
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}", *overrides]))
    if not config_in_events:
        (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    sampled = {"overrides": [], "env": GAME, "env_steps": [100.0, 200.0, 300.0]}
    write_run(root / "0", seed=0, scalars={"game/J": [1.0, 2.0, 3.0, 4.0]}, **sampled)
    write_run(
        root / "1", seed=0, scalars={"game/J": [1.0, 3.0, 4.0, 5.0]}, **sampled, config_in_events=True
    )  # seed 0 again
    write_run(root / "2", seed=1, scalars={"game/J": [1.0, 1.0, 2.0, 3.0]}, **sampled)
    write_run(
        root / "3", seed=0, overrides=["algo=exact_spg"], env=GAME, scalars={"game/J": [1.0, 5.0, 6.0]}
    )  # samples nothing
    write_run(
        root / "4", seed=0, overrides=["env=gym"], env=OTHER, scalars={"empirical/J": [-1.5, -1.4]}, env_steps=[50.0]
    )
    write_run(root / "5", seed=0, overrides=["algo=pg"], env=GAME, scalars={"leader/return": [0.5]})  # no J at all
    return root


def curves(root, tags=PLOT["J_TAGS"]):
    read = [PLOT["read_curve"](run, tags) for run in PLOT["find_runs"]([str(root)])]
    return [c for c in read if not isinstance(c, str)], [r for r in read if isinstance(r, str)]


def test_one_panel_per_game_and_x_axis_with_seeds_counted_by_seed(sweep):
    found, skipped = curves(sweep)
    assert skipped == ["it logged no game/J or empirical/J"]
    figure, lines = PLOT["draw"](found)
    panels = {(ax.get_title(), ax.get_xlabel()): ax for ax in figure.axes}
    assert set(panels) == {
        ("spg/RandomGame-v0", "env steps"),
        ("spg/RandomGame-v0", "iterations (leader updates)"),
        ("my_games:Inspection-v0", "env steps"),
    }
    assert lines == 3
    sampled = panels["spg/RandomGame-v0", "env steps"]
    (line,) = sampled.get_lines()
    assert line.get_label() == "defaults (2 seeds, 3 runs; game/J)"  # runs 0 and 1 are both seed 0
    assert np.array_equal(line.get_xdata(), [0.0, 100.0, 200.0, 300.0])
    assert np.allclose(line.get_ydata(), np.mean([[1, 2, 3, 4], [1, 3, 4, 5], [1, 1, 2, 3]], axis=0))
    (exact,) = panels["spg/RandomGame-v0", "iterations (leader updates)"].get_lines()
    assert exact.get_label() == "algo=exact_spg (1 seed; game/J)" and np.array_equal(exact.get_xdata(), [0, 1, 2])
    (estimated,) = panels["my_games:Inspection-v0", "env steps"].get_lines()
    assert (
        estimated.get_label() == "env=gym (1 seed; empirical/J)"
        and panels["my_games:Inspection-v0", "env steps"].get_ylabel() == "empirical/J"
    )


def test_games_that_share_an_id_are_told_apart_by_their_settings(tmp_path):
    other_seed = {**GAME, "kwargs": {"num_states": 8, "seed": 1}}
    write_run(tmp_path / "a", seed=0, overrides=[], env=GAME, scalars={"game/J": [1.0]}, env_steps=[])
    write_run(
        tmp_path / "b", seed=0, overrides=["env.kwargs.seed=1"], env=other_seed, scalars={"game/J": [2.0]}, env_steps=[]
    )
    figure, _ = PLOT["draw"](curves(tmp_path)[0])
    titles = sorted(ax.get_title() for ax in figure.axes)
    assert titles == [
        'spg/RandomGame-v0 {"num_states": 8, "seed": 0}',
        'spg/RandomGame-v0 {"num_states": 8, "seed": 1}',
    ]


def test_the_script_names_every_skipped_run_and_writes_the_image(sweep, tmp_path, monkeypatch, capsys):
    out = tmp_path / "curves.png"
    monkeypatch.setattr(sys, "argv", ["plot.py", str(sweep), "--out", str(out)])
    assert PLOT["main"]() == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"wrote {out}: 5 of 6 runs, 3 curves in 3 panels",
        f"skipped {sweep / '5'}: it logged no game/J or empirical/J",
    ]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(sys, "argv", ["plot.py", str(sweep), "--out", str(out), "--tag", "leader/return"])
    assert PLOT["main"]() == 0
    assert capsys.readouterr().out.splitlines()[0] == f"wrote {out}: 1 of 6 runs, 1 curve in 1 panel"


def test_help_explains_every_option(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["plot.py", "--help"])
    with pytest.raises(SystemExit):
        PLOT["main"]()
    text = capsys.readouterr().out
    for option in ("paths", "--tag TAG", "--out OUT"):
        (line,) = [line for line in text.splitlines() if line.strip().startswith(option)]
        assert len(line.split(option, 1)[1].strip()) > 20, line  # followed by its help
    assert "game/J" in text and "empirical/J" in text and "Runs without the scalar are skipped and named." in text
