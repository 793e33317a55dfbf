"""Where each update's objectives come from (:mod:`spg.objectives`): the game's model, or a fresh
batch of rollouts, used alone (``spg``, ``pg``) or added to the empirical game (``model_spg``).

The collector owns the sampler, the empirical game, the count of env steps and the last batch;
the trainer asks it for one :class:`~spg.objectives.ObjectiveSource` per learner update.
"""

from __future__ import annotations

from omegaconf import DictConfig

from envs.contract import ContractError, contract_problem
from spg.algorithms import TwoTimescalePolicyGradient
from spg.empirical import EmpiricalGame
from spg.faults import EnvFault
from spg.objectives import ExactObjectives, ObjectiveSource, SampledObjectives
from spg.policy import TabularSoftmaxPolicy
from spg.sampler import Batch, Sampler
from spg.schedules import growing_batch
from spg.task import Rollouts, Task


class Collector:
    """The objectives of ``algorithm``'s updates (its spec's ``source``): the model of ``task``,
    the batch alone, or the empirical game the batch joins. Sampled updates draw
    :func:`spg.schedules.growing_batch` trajectories for the leader's update count."""

    def __init__(
        self,
        cfg: DictConfig,
        task: Task,
        algorithm: TwoTimescalePolicyGradient,
        sampler: Sampler,
        empirical: EmpiricalGame | None,
        rollouts: Rollouts,
    ) -> None:
        self.cfg, self.task, self.algorithm, self.sampler, self.empirical, self.rollouts = (
            cfg,
            task,
            algorithm,
            sampler,
            empirical,
            rollouts,
        )
        self.discount = rollouts.discount(task.gamma)
        self.model = ExactObjectives(task.game) if algorithm.spec.source == "model" else None
        self.env_steps = 0
        self.last_batch: Batch | None = None

    def objectives(self, leader: TabularSoftmaxPolicy, follower: TabularSoftmaxPolicy) -> ObjectiveSource:
        """The model, or the objectives of a fresh batch of rollouts of ``leader`` and ``follower``."""
        if self.model is not None:
            return self.model
        trainer, algo = self.cfg.trainer, self.cfg.algo
        size = growing_batch(
            trainer.batch_size, trainer.batch_growth, self.algorithm.leader_lr, self.algorithm.leader_updates
        )
        env, steps = self.cfg.env.id, self.env_steps
        try:
            batch = self.last_batch = self.sampler.collect(leader, follower, size, self.rollouts.horizon)
        except ContractError as error:  # a user env that breaks the contract after its first step
            raise EnvFault(
                f"env {env} broke the two-player contract mid-rollout after {steps} env steps: {contract_problem(error)}",
                detail=str(error),
            ) from None
        except EnvFault as error:  # it raised, or took longer than env.step_timeout
            raise EnvFault(f"env {env} {error} after {steps} env steps", detail=error.detail) from None
        self.env_steps += batch.env_steps
        if self.empirical is not None:
            self.empirical.update(batch, self.task.start_weights)
        if self.algorithm.spec.source == "empirical":
            return ExactObjectives(self.empirical.model())
        return SampledObjectives(
            batch,
            self.discount,
            baseline=algo.baseline,
            center=self.rollouts.geometric,
            start_weights=self.task.start_weights,
            estimator=algo.estimator,
        )
