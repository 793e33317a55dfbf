"""``python scripts/train.py --help``: the app's own help (``hydra.help.template`` in
``configs/config.yaml``) names every option a user picks from, no internal group, and the most
used settings with their true defaults."""

import re

import pytest
from omegaconf import OmegaConf

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
