"""Export a registered game to the ``.npz`` game file:
``python scripts/export_game.py ID OUT.npz [key=value ...]`` (values parsed as YAML), e.g.

    python scripts/export_game.py spg/Patrolling-v0 patrol.npz num_nodes=6 graph=line
"""

import os
import sys
from pathlib import Path

import gymnasium as gym
import yaml

# like `python -m`: a user's env module ("my_module:Name-v0") is found in the directory the command
# runs from (and on PYTHONPATH)
sys.path.append(os.getcwd())  # last: it never shadows an installed package

import envs  # noqa: F401  (registers the spg/ ids)
from envs.contract import find_spec
from spg.cli import fail
from spg.game import GameModel

USAGE = "usage: python scripts/export_game.py ID OUT.npz [key=value ...]"


def main() -> int:
    if len(sys.argv) < 3:
        fail(f"{USAGE} (a game id and an output file are needed)")
    env_id, out, pairs = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    malformed = [p for p in pairs if "=" not in p or p.startswith("=")]
    if malformed:
        fail(f"{malformed[0]!r} is not key=value: {USAGE}")
    if out.suffix != ".npz":
        fail(f"{out}: the game file must end in .npz")
    if not out.parent.is_dir():
        fail(f"{out}: the directory {out.parent} does not exist")
    try:
        kwargs = {key: yaml.safe_load(value) for key, value in (p.split("=", 1) for p in pairs)}
    except yaml.YAMLError as error:
        fail(f"cannot parse the key=value arguments as YAML: {error}")
    try:
        game = getattr(gym.make(find_spec(env_id).id, disable_env_checker=True, **kwargs).unwrapped, "game", None)
    except (ValueError, TypeError, gym.error.Error) as error:  # ContractError is a ValueError
        fail(f"cannot export {env_id}: {error}")
    if not isinstance(game, GameModel):
        fail(f"{env_id} has no tabular model (env.unwrapped.game) to export")
    game.to_npz(out)
    print(f"wrote {out}: {game}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
