"""``python scripts/train.py --help-settings [GROUP=OPTION ...] [KEY=VALUE ...]``: every setting
with its default and its one-line meaning, generated from the schema (:mod:`spg.config`, each
field's ``metadata["help"]``) and the config that the same arguments compose (so an ``algo=NAME``
shows that algorithm's defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from spg.cli import fail
from spg.config import Config, register_configs, schema_leaves

FLAG = "--help-settings"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SCHEMA = OmegaConf.to_container(OmegaConf.structured(Config))


def format_value(value: Any) -> str:
    """A value as it is written on the command line (YAML's spelling: null, true, [a, b])."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    if value == "":
        return "''"
    return str(value)


def _select(container: dict, key: str) -> Any:
    for part in key.split("."):
        container = container[part]
    return container


def compose_settings(overrides: Sequence[str] = ()) -> tuple[dict, dict[str, str]]:
    """The config ``scripts/train.py`` composes from ``overrides`` (unresolved, as a plain dict) and
    the option chosen in each group."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    choices = {group: str(option) for group, option in cfg.hydra.runtime.choices.items() if group in ("env", "algo")}
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra")
    return container, choices


def settings_help(overrides: Sequence[str] = ()) -> str:
    """Every leaf setting of the schema as ``key = default    meaning``, one a line, grouped by
    section; a default that the chosen group files change is followed by the schema's own."""
    values, choices = compose_settings(overrides)
    rows = []
    for key, f in schema_leaves():
        value = format_value(_select(values, key))
        schema = format_value(_select(SCHEMA, key))
        shown = value if value == schema else f"{value} (schema: {schema})"
        rows.append((key, f"{key} = {shown}", f.metadata["help"]))
    width = min(max(len(left) for _, left, _ in rows), 44)
    picked = " ".join(f"{group}={option}" for group, option in sorted(choices.items()))
    lines = [
        f"Every setting (KEY=VALUE on the command line) with its default for {picked} and its meaning.",
        "The schema (spg/config.py) holds the defaults; the files of configs/algo/ and configs/env/ override",
        "some of them, marked (schema: ...). Another algorithm's or game's defaults: add it, e.g.",
        f"python scripts/train.py {FLAG} algo=spg. The resolved config of a command: add --cfg job.",
    ]
    section = None
    for key, left, meaning in rows:
        top = key.split(".")[0] if "." in key else ""
        if top != section:
            section = top
            lines.append("")
        if len(left) > width:  # a long value (a game's kwargs): the meaning on the next line
            lines += [f"  {left}", f"  {'':{width}}  {meaning}"]
        else:
            lines.append(f"  {left.ljust(width)}  {meaning}")
    return "\n".join(lines)


def print_settings_help(overrides: Sequence[str]) -> None:
    """Print :func:`settings_help`; an argument that does not compose ends with one line and exit code 1."""
    try:
        text = settings_help([arg for arg in overrides if arg != FLAG])
    except (HydraException, OmegaConfBaseException) as error:
        fail(f"{FLAG}: {str(error).split('Config search path')[0]}")
    print(text)
