"""Export a registered game to the ``.npz`` game file:
``python scripts/export_game.py ID OUT.npz [key=value ...]`` (values parsed as YAML), e.g.

    python scripts/export_game.py spg/Patrolling-v0 patrol.npz num_nodes=6 graph=line
"""

import sys

import gymnasium as gym
import yaml

import envs  # noqa: F401  (registers the spg/ ids)
from envs.contract import ContractError, find_spec
from spg.game import TabularGame


def main() -> int:
    if len(sys.argv) < 3 or any("=" not in a for a in sys.argv[3:]):
        print(__doc__, file=sys.stderr)
        return 2
    env_id, out, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
    kwargs = {key: yaml.safe_load(value) for key, value in (p.split("=", 1) for p in pairs)}
    try:
        game = gym.make(find_spec(env_id).id, **kwargs).unwrapped.game
    except (ContractError, ValueError, TypeError, gym.error.Error, AttributeError) as error:
        print(f"error: cannot export {env_id}: {error}", file=sys.stderr)
        return 1
    if not isinstance(game, TabularGame):
        print(f"error: {env_id} has no tabular model (env.unwrapped.game)", file=sys.stderr)
        return 1
    game.to_npz(out)
    print(f"wrote {out}: {game}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
