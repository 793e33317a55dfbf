"""``python scripts/train.py --help``: the app's own help (``hydra.help.template`` in
``configs/config.yaml``) names every option a user picks from, no internal group, and the most
used settings with their true defaults; ``--help-settings``: every setting of the schema with its
one-line help and the default the same command composes."""

import re

import pytest
from omegaconf import OmegaConf

from spg.config import Config, schema_leaves
from spg.settings_help import format_value, settings_help
from tests.helpers import ROOT, config

TEMPLATE = OmegaConf.load(ROOT / "configs" / "config.yaml").hydra.help.template


@pytest.mark.parametrize("group", ["algo", "env"])
def test_help_names_every_option_of_the_groups_a_user_picks_from(group):
    options = sorted(path.stem for path in (ROOT / "configs" / group).glob("*.yaml"))
    named = re.findall(r"[a-z_]+", " ".join(re.findall(rf"{group}=([a-z_|\n ]+)", TEMPLATE)))
    assert set(options) <= set(named), set(options) - set(named)
    assert "env_defaults" not in TEMPLATE


def test_help_gives_five_settings_with_their_defaults_and_the_reference():
    block = TEMPLATE.split("The five most used settings")[1].split("\n\n")[0]
    settings = re.findall(r"^\s+([a-z_.]+)=(\S+)", block, re.M)
    assert len(settings) == 5
    default = config("algo=model_spg")  # the default algorithm, as the help states it
    for key, value in settings:
        assert str(OmegaConf.select(default, key, throw_on_missing=True)).lower().replace("none", "null") == value, key
    assert (ROOT / "docs" / "configuration.md").is_file() and "docs/configuration.md" in TEMPLATE


@pytest.mark.slow
def test_train_help_prints_the_apps_help_and_no_internal_group(scripts):
    done = scripts.run("train.py", "--help", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Train a leader and a follower") and "powered by Hydra" not in done.stdout
    assert "env_defaults" not in done.stdout and "docs/configuration.md" in done.stdout


def _leaf_keys(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and key != "kwargs":
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def test_every_setting_of_the_schema_has_a_one_line_help():
    leaves = schema_leaves()
    assert [key for key, _ in leaves] == list(_leaf_keys(OmegaConf.to_container(OmegaConf.structured(Config))))
    for key, f in leaves:
        meaning = f.metadata.get("help", "")
        assert meaning.strip() and "\n" not in meaning, key


@pytest.mark.parametrize("overrides", [[], ["algo=spg"], ["algo=exact_spg", "env=matrix", "trainer.batch_size=7"]])
def test_help_settings_lists_every_setting_with_the_default_the_command_composes(overrides):
    text = settings_help(overrides)
    composed = OmegaConf.to_container(config(*(overrides or ["algo=model_spg"])), resolve=False)
    schema = OmegaConf.to_container(OmegaConf.structured(Config))
    for key, f in schema_leaves():
        value, default = composed, schema
        for part in key.split("."):
            value, default = value[part], default[part]
        shown = format_value(value) if value == default else f"{format_value(value)} (schema: {format_value(default)})"
        line = re.search(rf"^  {re.escape(key)} = (.*)$", text, re.M)
        assert line is not None, key
        assert line.group(1).startswith(shown + "  ") or line.group(1) == shown, (key, line.group(1))
        assert f.metadata["help"] in text, key
    assert "configs/algo/" in text and "--cfg job" in text


def test_help_names_the_settings_flag():
    assert "--help-settings" in TEMPLATE
    assert "--help-settings" in (ROOT / "docs" / "configuration.md").read_text().split("\n\n")[1]


@pytest.mark.slow
def test_train_help_settings_prints_every_setting_and_exits_0(scripts):
    done = scripts.run("train.py", "--help-settings", "algo=spg", timeout=120)
    assert done.returncode == 0, done.stderr
    for key, _ in schema_leaves():
        assert re.search(rf"^  {re.escape(key)} = ", done.stdout, re.M), key
    assert "algo=spg" in done.stdout.splitlines()[0]
    bad = scripts.run("train.py", "--help-settings", "algo=nope", timeout=120)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "algo" in bad.stderr, bad.stderr
