"""Train a leader and a follower: ``python scripts/train.py [group=option ...] [key=value ...]``.

Examples::

    python scripts/train.py                                  # model_spg on a small random game
    python scripts/train.py algo=pg env=matrix trainer.horizon=1
    python scripts/train.py env=file env.path=game.npz algo.lam=0.05
    python scripts/train.py -m seed=0,1,2 algo=spg,pg        # a sweep
    python scripts/train.py --help-settings [algo=spg ...]   # every setting, its default and meaning
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
from spg.cli import DETAIL, console_skips_details
from spg.config import register_configs
from spg.faults import RunFault
from spg.rundir import RunDirectoryInUse, holds_only_a_failed_setup, remove_failed_setup
from spg.trainer import SetupError, train

register_configs()
log = logging.getLogger("spg")


@hydra.main(version_base="1.3", config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> float | None:
    console_skips_details()
    try:
        return train(cfg).get("game/J")
    except (SetupError, ContractError, FloatingPointError, RunFault) as error:
        # bad input, an env failing mid-run, a diverging step, a refused write, a stop signal: one line
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        detail = getattr(error, "detail", None)  # for train.log only
        in_use = isinstance(error, RunDirectoryInUse)  # that directory's train.log belongs to the other run
        # nothing to keep: the log went to the console too (unless it holds the details the line leaves out)
        failed_setup = not in_use and detail is None and holds_only_a_failed_setup(run_dir)
        if in_use or failed_setup:
            root = logging.getLogger()
            for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
                root.removeHandler(handler)
                handler.close()
        if failed_setup:
            remove_failed_setup(run_dir)
        if detail is not None:
            log.error("details: %s", detail, extra={DETAIL: True})
        log.error("%s", " ".join(str(error).split()))
        sys.exit(getattr(error, "exit_code", 1))


if __name__ == "__main__":
    if "--help-settings" in sys.argv[1:]:  # before Hydra, which knows no such flag
        from spg.settings_help import print_settings_help

        print_settings_help(sys.argv[1:])
    else:
        main()
