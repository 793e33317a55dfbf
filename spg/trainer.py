"""The training loop: game -> env -> sampler -> batch -> algorithm update -> logs and checkpoints.

``train(cfg, run_dir)`` is what ``scripts/train.py`` runs under Hydra and what tests call
in-process. Everything a run writes goes under ``run_dir``: TensorBoard events,
``checkpoints/last.pt`` (and every ``checkpoint_every``), ``metrics.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from envs.tabular_vector import TabularVectorEnv
from spg.algorithms import ALGORITHMS, make_learner
from spg.checkpoint import atomic_write, check_game, load_checkpoint, save_checkpoint, save_json
from spg.collector import Collector
from spg.config import SetupError, check_config, config_warnings, game_source
from spg.empirical import COUNT_LIMIT, EmpiricalGame
from spg.evaluation import (
    empirical_metrics,
    empirical_verdict,
    equilibrium_problems,
    exact_metrics,
    format_table,
    j_motion,
    last_quarter,
    local_ascent_metrics,
    metric_rows,
    monte_carlo_returns,
    returns_sampler,
    value_scale,
)
from spg.faults import EnvFault, RunFault, RunStopped, writing
from spg.logger import RunLogger
from spg.objectives import ExactObjectives
from spg.rundir import claim, write_hydra_config
from spg.sampler import Sampler
from spg.signals import StopSignals, resume_if_requeued, signal_name
from spg.sparse_game import DENSIFY_LIMIT
from spg.sse import SSEReference
from spg.task import Rollouts, Task, has_derivatives, make_task, plan_rollouts, resolve_device

log = logging.getLogger(__name__)


def _checkpoint_state(
    cfg, task, leader, follower, algorithm, sampler, empirical, iteration, env_steps
) -> dict[str, Any]:
    returned = algorithm.average  # the policies the run returns: the iterates, or their average
    return {
        "leader": returned.leader.state_dict(),
        "follower": returned.follower.state_dict(),
        "iterates": {"leader": leader.state_dict(), "follower": follower.state_dict()},
        "algorithm": algorithm.state_dict(),
        "empirical": empirical.state_dict() if empirical is not None else None,
        "iteration": iteration,
        "env_steps": env_steps,
        "rng": {"torch": torch.get_rng_state(), "sampler": sampler.state_dict()},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "game": {"shape": [task.num_states, *task.num_actions], "fingerprint": task.fingerprint},
    }


def _restore(cfg, task, state, path, leader, follower, algorithm, sampler, empirical) -> None:
    """Load a verified checkpoint of this game into the run; the settings that shape the saved
    state (the algorithm, the leader's optimiser) must be the ones it was written with."""
    check_game(
        state, path, (task.num_states, *task.num_actions), task.fingerprint, allow_other=cfg.trainer.resume_any_game
    )
    saved = state["config"]["algo"]
    for key, then, now in (
        ("name", saved["name"], cfg.algo.name),
        ("leader.optimizer", saved["leader"]["optimizer"], cfg.algo.leader.optimizer),
    ):
        if then != now:
            raise SetupError(
                f"checkpoint {path} was written with algo.{key}={then}, this run has algo.{key}={now}: "
                f"resume with {'algo=' if key == 'name' else 'algo.' + key + '='}{then}"
            )
    iterates = state.get("iterates", state)  # checkpoints of runs that returned their last iterates hold only those
    leader.load_state_dict(iterates["leader"])
    follower.load_state_dict(iterates["follower"])
    algorithm.average.load_state_dict(state)
    algorithm.load_state_dict(state["algorithm"])
    torch.set_rng_state(state["rng"]["torch"])
    sampler.load_state_dict(state["rng"]["sampler"])
    if empirical is not None and state.get("empirical") is not None:
        empirical.load_state_dict(state["empirical"])


def _resume_path(cfg: DictConfig, run_dir: Path) -> Path | None:
    resume = cfg.trainer.resume
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.pt"
        return last if last.is_file() else None
    if not Path(resume).is_file():
        raise SetupError(f"trainer.resume = {resume}: no such checkpoint file; give a checkpoint (.pt), auto, or null")
    return Path(resume)


def _load_resume(path: Path, run_dir: Path) -> dict[str, Any]:
    """The verified checkpoint to resume from; for a damaged one, the error names the newest
    intact periodic checkpoint of the run to resume from instead."""
    try:
        return load_checkpoint(path)
    except SetupError as error:
        for candidate in sorted((run_dir / "checkpoints").glob("iteration_*.pt"), reverse=True):
            try:
                load_checkpoint(candidate)
            except SetupError:
                continue
            raise SetupError(
                f"{error}; the newest intact checkpoint is {candidate}: set trainer.resume={candidate}"
            ) from None
        raise


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, float]:
    """Train a leader and a follower as ``cfg`` says; returns the final metrics (``metrics.json``).

    With ``trainer.restarts = K > 1`` the run trains ``K`` pairs in ``restart_k/`` (the first from
    the uniform leader, the others from random leader logits of scale ``trainer.restart_scale``)
    and keeps the one whose leader has the best estimated ``J`` (exact where the game has a model,
    else from the empirical game, or the leader's Monte Carlo return where none was estimated) as the run's
    ``checkpoints/last.pt`` and ``metrics.json``. Finished restarts are skipped on resume."""
    under_hydra = run_dir is None
    run_dir = Path(run_dir) if run_dir is not None else _hydra_output_dir()
    with claim(run_dir), StopSignals() as stop:
        cfg = resume_if_requeued(cfg, run_dir)  # a job SLURM requeued continues its run
        check_config(cfg)
        started = (lambda: write_hydra_config(run_dir, cfg)) if under_hydra else (lambda: None)
        return _train(cfg, run_dir, started, stop)


def _train(
    cfg: DictConfig, run_dir: Path, started: Callable[[], None], stop: StopSignals | None = None
) -> dict[str, float]:
    if cfg.trainer.restarts == 1:
        return _train_one(cfg, run_dir, started, stop=stop)
    finals = []
    for k in range(cfg.trainer.restarts):
        done = run_dir / f"restart_{k}" / "metrics.json"
        if cfg.trainer.resume == "auto" and done.is_file():
            finals.append(json.loads(done.read_text()))
            continue
        generator = torch.Generator().manual_seed(int(cfg.seed) * 100003 + k)
        finals.append(_train_one(cfg, run_dir / f"restart_{k}", started, restart=(k, generator), stop=stop))
    estimates = [final.get("game/J", final.get("empirical/J", final["leader/return"])) for final in finals]
    best = max(range(len(finals)), key=estimates.__getitem__)
    with writing("checkpoint", run_dir / "checkpoints" / "last.pt"):
        atomic_write(
            run_dir / "checkpoints" / "last.pt", (run_dir / f"restart_{best}" / "checkpoints" / "last.pt").read_bytes()
        )
    final = {**finals[best], "restart": best, "restart_estimates": estimates}
    save_json(run_dir / "metrics.json", final)
    log.info(
        "restarts: estimated J %s; kept restart %d, whose results are the run's:",
        ", ".join(f"{e:.5g}" for e in estimates),
        best,
    )
    _summary(cfg, final)
    return final


def _train_one(
    cfg: DictConfig,
    run_dir: Path,
    started: Callable[[], None],
    restart: tuple[int, torch.Generator] | None = None,
    stop: StopSignals | None = None,
) -> dict[str, float]:
    """One training run into ``run_dir`` (``restart``: its index and the generator of its random
    initial leader logits; index 0 starts uniform). Every check runs before the run writes
    anything; ``started`` is called once they passed. ``stop``: the stop signals it obeys."""
    return Experiment(cfg, run_dir, started, restart, stop).run()


class Experiment:
    """One run, in the order it happens: the task (env and model), the learner, the collector of
    objectives, the resume point, the logger; then the loop of updates with their evaluations and
    checkpoints; then the final table."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        started: Callable[[], None],
        restart: tuple[int, torch.Generator] | None = None,
        stop: StopSignals | None = None,
    ) -> None:
        self.cfg, self.run_dir, self.stop = cfg, run_dir, stop
        self.home = run_dir.parent if restart is not None else run_dir  # the hydra.run.dir that continues the run
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self._setup_task()
        self._setup_learner(restart)
        self._setup_collector()
        self._setup_resume()
        started()
        self._setup_logger()

    # -- setup -------------------------------------------------------------------------------------
    def _setup_task(self) -> None:
        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        self.task = task = make_task(cfg, self.device)
        if ALGORITHMS[cfg.algo.name].source == "model" and not has_derivatives(task):
            raise SetupError(
                f"algo={cfg.algo.name} needs exact derivatives from the game's model, and this env has none "
                f"(no env.unwrapped.game, or a sparse game over {DENSIFY_LIMIT} states): use algo=spg, algo=model_spg or algo=pg"
            )
        self.empirical = _empirical_game(cfg, task, self.device)
        self.rollouts = plan_rollouts(task.gamma, cfg.trainer.horizon, cfg.trainer.rollouts)
        self.native = native = isinstance(task.env.unwrapped, TabularVectorEnv)
        for warning in config_warnings(
            cfg,
            gamma=task.gamma,
            horizon=self.rollouts.horizon,
            geometric=self.rollouts.geometric,
            native=native,
            max_abs_reward=task.game.max_abs_reward() if task.game is not None else None,
        ):
            log.warning("%s", warning)
        self.judged = "game" if task.game is not None else "empirical"  # the metric family the equilibrium check reads
        self.game_scale = value_scale(task.game) if task.game is not None else None  # the equilibrium check's unit
        self.sse = SSEReference(
            task.game, cfg.env.path if cfg.env.kind == "file" else None
        )  # game/J_sse_gap (docs/sse.md)
        log.info("%s", self.sse.line)

    def _setup_learner(self, restart: tuple[int, torch.Generator] | None) -> None:
        cfg = self.cfg
        self.leader, self.follower, self.algorithm = make_learner(
            cfg.algo, self.task.num_states, self.task.num_actions, self.device
        )
        if restart is not None and restart[0] > 0:
            with torch.no_grad():
                self.leader.logits.copy_(
                    cfg.trainer.restart_scale
                    * torch.randn(self.leader.logits.shape, generator=restart[1], dtype=self.leader.logits.dtype)
                )
            self.algorithm.average.update(0)  # the average starts where the iterates do
        self.returned = self.algorithm.average  # what evaluations judge and the run returns (spg.averaging)

    def _setup_collector(self) -> None:
        cfg, task = self.cfg, self.task
        self.sampler = Sampler(
            task.env,
            seed=cfg.seed,
            probe_discount=task.gamma,
            probe_share=cfg.algo.probes,
            geometric_discount=task.gamma if self.rollouts.geometric else None,
        )
        self.collector = Collector(cfg, task, self.algorithm, self.sampler, self.empirical, self.rollouts)

    def _setup_resume(self) -> None:
        """The iteration to start from: 0, or a checkpoint's (restored into the run)."""
        cfg, run_dir = self.cfg, self.run_dir
        self.start = 0
        self.resumed_history: list[tuple[int, float]] = []
        self.resume_from = _resume_path(cfg, run_dir)
        last = run_dir / "checkpoints" / "last.pt"
        if last.is_file() and (self.resume_from is None or self.resume_from.resolve() != last.resolve()):
            raise SetupError(
                f"run directory {run_dir} already holds a run ({last}): continue it with trainer.resume=auto, "
                "or choose another hydra.run.dir"
            )
        if self.resume_from is not None:
            state = _load_resume(self.resume_from, run_dir)
            _restore(
                cfg,
                self.task,
                state,
                self.resume_from,
                self.leader,
                self.follower,
                self.algorithm,
                self.sampler,
                self.empirical,
            )
            self.start, self.collector.env_steps = int(state["iteration"]), int(state["env_steps"])
            self.resumed_history = [
                (int(i), float(J)) for i, J in state.get("J_history", [])
            ]  # older checkpoints hold none
            log.info("resumed from %s at iteration %d", self.resume_from, self.start)
            if self.start >= cfg.trainer.iterations:
                log.info(
                    "the run was already complete (iteration %d of trainer.iterations=%d): nothing to train, its final "
                    "policies are evaluated again; raise trainer.iterations to train on",
                    self.start,
                    cfg.trainer.iterations,
                )
        elif cfg.trainer.resume == "auto":
            log.info(
                "trainer.resume=auto: no checkpoint to resume in %s (checkpoints/last.pt), so this is a fresh run",
                run_dir,
            )
        self.already_complete = self.start >= cfg.trainer.iterations and self.resume_from is not None
        self.written = self.start if self.resume_from is not None else None  # the iteration last.pt holds
        self.last_good: tuple[int, dict[str, Any]] | None = None  # a user env's run: the state after its last update

    def _setup_logger(self) -> None:
        cfg = self.cfg
        # the checkpoint holds iteration `start` and everything logged up to it; a killed run's later events go
        self.logger = RunLogger(self.run_dir, purge_step=self.start + 1 if self.resume_from is not None else None)
        if self.start == 0:
            self.logger.text("config", "```\n" + OmegaConf.to_yaml(cfg) + "\n```")
        _describe(cfg, self.task, self.rollouts, self.run_dir)
        self.show_bar = cfg.trainer.progress and sys.stderr.isatty()
        self.J_history: list[tuple[int, float]] = list(self.resumed_history)  # (iteration, J) at the run's evaluations

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        """The updates and the final table; a fault mid-run (:mod:`spg.faults`) ends it after what
        can be saved is saved: the last good update of a failed env, the checkpoint of a stop."""
        try:
            return self._run()
        except EnvFault as fault:
            saved = self._save_last_good()
            self._close()
            where = (
                f"checkpoints/last.pt holds update {saved}"
                if saved is not None
                else "no update finished, so there is no checkpoint"
            )
            then = "continue with trainer.resume=auto" if saved is not None else "run again"
            raise EnvFault(f"{fault}; {where}: fix the env, then {then}", detail=fault.detail) from None
        except RunFault:
            self._close()
            raise

    def _run(self) -> dict[str, float]:
        cfg, iterations = self.cfg, self.cfg.trainer.iterations
        bar = tqdm(total=iterations, initial=self.start, disable=not self.show_bar, desc=cfg.algo.name)
        began = time.perf_counter()
        metrics: dict[str, float] = {}
        if self.start == 0:
            self._evaluate_start()
            for _ in range(
                cfg.algo.follower_warmup
            ):  # the follower approaches its best response before the leader moves
                self.algorithm.follower_step(self._objectives())
        for iteration in range(self.start, iterations):
            evaluating = (iteration + 1) % cfg.trainer.eval_every == 0 or iteration + 1 == iterations
            metrics = self._update(evaluating)
            if evaluating:
                self._evaluate(iteration + 1, metrics)
            self.logger.scalars(metrics, iteration + 1)
            self._checkpoint(iteration + 1)
            if not self.native:
                self._keep_last_good(iteration + 1)
            bar.update(1)
            bar.set_postfix(_postfix(metrics), refresh=False)
            if self.stop is not None and self.stop.received is not None:
                bar.close()
                self._stop(iteration + 1)
        bar.close()
        if self.stop is not None and self.stop.received is not None and self.written == iterations:
            self._stop(iterations)  # the run is trained; its final evaluation runs on resume
        return self._finish(metrics, time.perf_counter() - began)

    def _objectives(self):
        return self.collector.objectives(self.leader, self.follower)

    def _update(self, evaluating: bool) -> dict[str, float]:
        """One learner update (after ``follower.steps - 1`` follower-only ones on sampled sources)
        and its metrics; at evaluations also the cosine of its direction to the exact one."""
        tick, steps_before = time.perf_counter(), self.collector.env_steps
        algorithm, task = self.algorithm, self.task
        if algorithm.spec.source == "samples":
            for _ in range(self.cfg.algo.follower.steps - 1):
                algorithm.follower_step(self._objectives())
        objectives = self._objectives()
        compare = evaluating and algorithm.spec.source != "model" and has_derivatives(task)
        reference = algorithm.reference_direction(ExactObjectives(task.game)) if compare else None
        result = algorithm.step(objectives)
        metrics = dict(result.metrics)
        if self.collector.last_batch is not None:
            for name, returns in zip(
                ("leader", "follower"), self.collector.last_batch.discounted_returns(self.collector.discount)
            ):
                metrics[f"{name}/return"] = float(returns.mean())
        elapsed = time.perf_counter() - tick
        metrics["charts/env_steps"] = float(self.collector.env_steps)
        metrics["charts/env_steps_per_second"] = (self.collector.env_steps - steps_before) / elapsed
        metrics["charts/iterations_per_second"] = 1.0 / elapsed
        if reference is not None:
            metrics["estimator/cosine_to_exact"] = float(
                torch.cosine_similarity(result.leader_direction.flatten(), reference.flatten(), 0)
            )
        return metrics

    # -- evaluation --------------------------------------------------------------------------------
    def _evaluate_start(self) -> None:
        """Where the run starts, for the dashboards."""
        task, returned = self.task, self.returned
        if task.game is None:
            return
        initial = exact_metrics(task.game, returned.leader, returned.follower, self.cfg.algo.lam)
        problems = equilibrium_problems(initial, self.game_scale)
        initial["game/equilibrium"] = float(not problems)
        self.logger.scalars(initial, 0)
        self.logger.text("game/equilibrium_check", _verdict(problems, 0), 0)
        self.logger.policy_heatmaps(returned.leader.probs(), returned.follower.probs(), 0)
        self.J_history.append((0, initial["game/J"]))

    def _evaluate(self, iteration: int, metrics: dict[str, float]) -> None:
        """Add the evaluation of the returned policies to ``metrics``: exact on the model (with the
        local-ascent probe at the end), else estimated on the empirical game; the equilibrium check."""
        cfg, task, returned, judged = self.cfg, self.task, self.returned, self.judged
        final_evaluation = iteration == cfg.trainer.iterations
        if task.game is not None:
            metrics.update(exact_metrics(task.game, returned.leader, returned.follower, cfg.algo.lam))
            metrics.update(self.sse.metrics(task.game, returned.leader))
            if final_evaluation:
                metrics.update(local_ascent_metrics(task.game, returned.leader, cfg.algo.lam))
        if self.empirical is not None:
            metrics.update(
                empirical_metrics(
                    self.empirical,
                    returned.leader,
                    returned.follower,
                    cfg.algo.lam,
                    probe=final_evaluation and task.game is None,
                )
            )
        if f"{judged}/J" in metrics:
            scale = self.game_scale if task.game is not None else metrics["empirical/value_scale"]
            problems = equilibrium_problems(metrics, scale, family=judged)
            metrics[f"{judged}/equilibrium"] = float(not problems)
            self.logger.text(f"{judged}/equilibrium_check", _verdict(problems, iteration), iteration)
            self.J_history.append((iteration, metrics[f"{judged}/J"]))
        self.logger.policy_heatmaps(returned.leader.probs(), returned.follower.probs(), iteration)
        if not self.show_bar:  # off a terminal (nohup, SLURM logs): one line per evaluation
            log.info("iteration %d/%d: %s", iteration, cfg.trainer.iterations, _progress_line(metrics))

    def _checkpoint(self, iteration: int) -> None:
        """Every ``checkpoint_every`` iterations and at the end: the periodic checkpoint, then ``last.pt``."""
        trainer = self.cfg.trainer
        periodic = iteration % trainer.checkpoint_every == 0
        if not periodic and iteration != trainer.iterations:
            return
        state = self._state(iteration)
        checkpoints = self.run_dir / "checkpoints"
        extra = [checkpoints / f"iteration_{iteration:06d}.pt"] if periodic else []
        save_checkpoint(state, *extra, checkpoints / "last.pt")  # last.pt never moves past a missing periodic one
        self.written = iteration

    def _state(self, iteration: int) -> dict[str, Any]:
        """The checkpoint of the run after update ``iteration``, with the ``J`` of its evaluations
        so far (the final table's last quarter then reads the same after a resume)."""
        state = _checkpoint_state(
            self.cfg,
            self.task,
            self.leader,
            self.follower,
            self.algorithm,
            self.sampler,
            self.empirical,
            iteration,
            self.collector.env_steps,
        )
        state["J_history"] = [[int(i), float(J)] for i, J in self.J_history]
        return state

    def _keep_last_good(self, iteration: int) -> None:
        """Keep a copy of the state after update ``iteration``: a user env that fails in the next
        one leaves the updates it finished in a checkpoint (:meth:`_save_last_good`)."""
        self.last_good = None if self.written == iteration else (iteration, copy.deepcopy(self._state(iteration)))

    def _save_last_good(self) -> int | None:
        """Write the kept state of the last finished update to ``last.pt`` (if newer than it); the
        iteration ``last.pt`` now holds."""
        if self.last_good is not None and self.last_good[0] != self.written:
            iteration, state = self.last_good
            save_checkpoint(state, self.run_dir / "checkpoints" / "last.pt")
            self.written = iteration
        return self.written

    def _stop(self, iteration: int) -> None:
        """End the run for a stop signal after update ``iteration``: ``last.pt`` at it, then :class:`RunStopped`."""
        last = self.run_dir / "checkpoints" / "last.pt"
        if self.written != iteration:
            save_checkpoint(self._state(iteration), last)
            self.written = iteration
        number = self.stop.received
        log.info("%s: stopping after update %d", signal_name(number), iteration)
        raise RunStopped(
            f"stopped by {signal_name(number)} at update {iteration}: checkpoint written to {last}; "
            f"continue with trainer.resume=auto hydra.run.dir={self.home}",
            number,
        )

    def _close(self) -> None:
        """Close the event files and the env of a run that ends early; they may fail in turn (a full disk)."""
        for close in (getattr(self, "logger", None) and self.logger.close, self.task.env.close):
            try:
                if close:
                    close()
            except Exception:  # the fault being reported matters more
                log.debug("closing after a fault failed", exc_info=True)

    # -- the end -----------------------------------------------------------------------------------
    def _finish(self, metrics: dict[str, float], seconds: float) -> dict[str, float]:
        """``metrics.json``, the HParams table and the final table, from the last evaluation."""
        cfg, task, judged = self.cfg, self.task, self.judged
        exact_now = {k: v for k, v in metrics.items() if k.startswith(f"{judged}/")}  # the last iteration's evaluation
        moved = last_quarter(self.J_history, cfg.trainer.iterations) if f"{judged}/J" in exact_now else {}
        exact_now.update({f"{judged}/{key}": value for key, value in moved.items()})
        final = _final_metrics(
            cfg,
            task,
            self.returned.leader,
            self.returned.follower,
            self.rollouts,
            self.collector.env_steps,
            seconds,
            exact_now,
            self.game_scale,
        )
        motion = None
        if moved:
            motion = j_motion(
                final, self.game_scale if task.game is not None else final["empirical/value_scale"], judged
            )
            spread = final[f"{judged}/J_spread_last_quarter"]
            final["J_last_quarter"] = f"{motion[0]}: {motion[1]}" if motion else f"settled (spread {spread:.3g})"
        save_json(self.run_dir / "metrics.json", final)
        metric_tags = (
            "game/J",
            "game/best_response_gap",
            "empirical/J",
            "empirical/best_response_gap",
            "leader/return",
            "follower/return",
        )
        self.logger.hparams(_hparams(cfg), [tag for tag in metric_tags if tag in metrics])
        self.logger.close()
        task.env.close()
        _summary(
            cfg,
            final,
            advice=f"J over the last quarter {motion[0]}: {motion[1]}" if motion else None,
            already_complete=self.already_complete,
        )
        return final


def _verdict(problems: list[str], iteration: int) -> str:
    """The equilibrium check at an evaluation, as the dashboard's Text tab shows it."""
    return f"iteration {iteration}: " + ("ok (1)" if not problems else "not yet (0): " + "; ".join(problems))


def _empirical_game(cfg: DictConfig, task: Task, device: torch.device) -> EmpiricalGame | None:
    """The empirical game the run counts into: for ``model_spg`` (which learns on it) and for envs
    without a model (whose estimates of ``J`` and the gap it gives); none where the counts would
    not fit (``model_spg`` then cannot run)."""
    learns_on_it = ALGORITHMS[cfg.algo.name].source == "empirical"
    if task.game is not None and not learns_on_it:
        return None
    if EmpiricalGame.fits(task.num_states, task.num_actions):
        return EmpiricalGame(task.num_states, task.num_actions, task.gamma, device)
    if learns_on_it:
        raise SetupError(
            f"algo={cfg.algo.name} estimates the game's model, and S = {task.num_states} with actions "
            f"{task.num_actions} needs {task.num_states**2 * task.num_actions[0] * task.num_actions[1]:,} transition counts, "
            f"more than it keeps ({COUNT_LIMIT:,}): train from samples alone with algo=spg"
        )
    log.warning(
        "no estimates of J or of the follower's gap: the env's %d states are too many for an empirical model",
        task.num_states,
    )
    return None


def _postfix(metrics: dict[str, float]) -> dict[str, str]:
    keys = {"leader/return": "R1", "follower/return": "R2", "game/J": "J"}
    return {short: f"{metrics[key]:.4g}" for key, short in keys.items() if key in metrics}


def _progress_line(metrics: dict[str, float]) -> str:
    names = {
        "game/J": "J",
        "game/best_response_gap": "gap",
        "empirical/J": "J (estimated)",
        "empirical/best_response_gap": "gap (estimated)",
        "leader/return": "R1",
        "follower/return": "R2",
        "charts/env_steps_per_second": "env steps/s",
    }
    return ", ".join(f"{short} {metrics[key]:.4g}" for key, short in names.items() if key in metrics)


def _final_metrics(
    cfg, task, leader, follower, rollouts: Rollouts, env_steps, seconds, exact_now, game_scale
) -> dict[str, Any]:
    horizon = rollouts.horizon
    final: dict[str, Any] = {
        "algorithm": cfg.algo.name,
        "iterations": int(cfg.trainer.iterations),
        "env_steps": int(env_steps),
        "seconds": seconds,
        "horizon": int(horizon),
        "rollouts": "geometric" if rollouts.geometric else "fixed",
        "truncation_bias_bound": task.game.truncation_bias(horizon) if task.game is not None else None,
    }
    if task.game is not None:
        final.update(exact_now or exact_metrics(task.game, leader, follower, cfg.algo.lam))
        final.pop("game/equilibrium", None)
        problems = equilibrium_problems(final, game_scale)
        resting = (
            "a local maximum of J (exact ascent from it climbs no further)"
            if "game/J_local_ascent" in final
            else "a stationary point of J that no longer rises"
        )
        final["equilibrium"] = (
            "; ".join(problems) if problems else f"ok (follower at its best response, leader at {resting})"
        )
        final["evaluation_start"] = "rho"
    else:
        final.update(exact_now)
        final.pop("empirical/equilibrium", None)
        if "empirical/J" in final:
            final["equilibrium"] = empirical_verdict(final)
        else:
            final["equilibrium"] = "not checked: the env has no model (env.unwrapped.game) and none was estimated"
        final["evaluation_start"] = "the env's reset distribution"
    sampler = returns_sampler(task, cfg.trainer.eval_episodes, cfg.seed + 1, rollouts)
    final.update(monte_carlo_returns(sampler, leader, follower, cfg.trainer.eval_episodes, rollouts, task.gamma))
    return final


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    return {
        "algo": cfg.algo.name,
        "lam": cfg.algo.lam,
        "leader_lr": cfg.algo.leader.lr,
        "follower_kappa": cfg.algo.follower.kappa,
        "follower_power": cfg.algo.follower.power,
        "follower_t0": cfg.algo.follower.t0,
        "batch_size": cfg.trainer.batch_size,
        "batch_growth": cfg.trainer.batch_growth,
        "seed": cfg.seed,
        "env": game_source(cfg.env),
    }


def _describe(cfg: DictConfig, task: Task, rollouts: Rollouts, run_dir: Path) -> None:
    horizon = rollouts.horizon
    log.info("run directory: %s", run_dir)
    log.info(
        "%s on %s: S=%d, A1=%d, A2=%d, gamma=%g, lam=%g, %s, batch=%d",
        cfg.algo.name,
        game_source(cfg.env),
        task.num_states,
        *task.num_actions,
        task.gamma,
        cfg.algo.lam,
        f"geometric rollout lengths (mean {1 / (1 - task.gamma):.0f}, cut at {horizon})"
        if rollouts.geometric
        else f"horizon={horizon}",
        cfg.trainer.batch_size,
    )
    if task.game is not None:
        mu = "rho (full support)" if torch.equal(task.game.mu, task.game.rho) else "mu != rho"
        log.info(
            "training rollouts start from %s; J is judged at rho; truncation bias <= %.2e",
            mu,
            task.game.truncation_bias(horizon),
        )


def _summary(cfg: DictConfig, final: dict[str, Any], advice: str | None = None, already_complete: bool = False) -> None:
    """The final table, and a warning when the equilibrium check failed, with ``advice`` (what
    to change, from how ``J`` moved over the last quarter) where there is any."""
    rows = [("algorithm", final["algorithm"]), ("iterations", final["iterations"]), ("env steps", final["env_steps"])]
    wall = f"{final['seconds']:.1f}" + (
        " (the run was already complete: nothing was trained)" if already_complete else ""
    )
    rows.append(("wall time [s]", wall))
    log.info("final results\n" + format_table(rows + metric_rows(final)))
    if not final["equilibrium"].startswith(("ok", "not checked")):
        log.warning(
            "not at a Stackelberg equilibrium yet: %s (%s; see docs/results.md, When a run does not reach the equilibrium)",
            final["equilibrium"],
            advice or "more trainer.iterations",
        )


def _hydra_output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise SetupError("train(cfg) outside Hydra needs run_dir=...")
    return Path(HydraConfig.get().runtime.output_dir)
