"""Shared test helpers: seeded logits and z-scores of Monte Carlo means."""

import torch


def seeded_logits(S: int, A: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(S, A, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def z_scores(samples: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """``(mean - expected) / standard error`` entry by entry, over the first axis of ``samples``."""
    standard_error = samples.std(0) / samples.shape[0] ** 0.5
    return (samples.mean(0) - expected) / standard_error.clamp_min(1e-15)
