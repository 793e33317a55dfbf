"""Train a leader and a follower: ``python scripts/train.py [group=option ...] [key=value ...]``.

Examples::

    python scripts/train.py                                  # model_spg on a small random game
    python scripts/train.py algo=pg env=matrix trainer.horizon=1
    python scripts/train.py env=file env.path=game.npz algo.lam=0.05
    python scripts/train.py -m seed=0,1,2 algo=spg,pg        # a sweep
"""

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

# like `python -m`: a user's env module (env.id="my_module:Name-v0") is found in the directory the
# command runs from (and on PYTHONPATH)
sys.path.append(os.getcwd())  # last: it never shadows an installed package

from envs.contract import ContractError
from spg.config import register_configs
from spg.rundir import RunDirectoryInUse, holds_only_a_failed_setup, remove_failed_setup
from spg.trainer import SetupError, train

register_configs()
log = logging.getLogger("spg")


@hydra.main(version_base="1.3", config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg).get("game/J")
    except (SetupError, ContractError, FloatingPointError) as error:
        # bad input, an env breaking the two-player contract mid-rollout, a diverging step: one line
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        in_use = isinstance(error, RunDirectoryInUse)  # that directory's train.log belongs to the other run
        failed_setup = not in_use and holds_only_a_failed_setup(run_dir)  # nothing to keep: the log went to the console too
        if in_use or failed_setup:
            root = logging.getLogger()
            for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
                root.removeHandler(handler)
                handler.close()
        if failed_setup:
            remove_failed_setup(run_dir)
        log.error("%s", " ".join(str(error).split()))
        sys.exit(1)


if __name__ == "__main__":
    main()
