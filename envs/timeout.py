"""A time limit on each step of a Python env (``env.step_timeout``): :class:`StepTimeout` arms a
real-time timer around ``step``; a step still running when it fires raises :class:`StepTimedOut`
(in the step, so the run can end with a message instead of hanging)."""

from __future__ import annotations

import signal
import threading

import gymnasium as gym


class StepTimedOut(TimeoutError):
    """A step of a user env that took longer than ``env.step_timeout``."""


class StepTimeout(gym.Wrapper):
    """``env`` whose ``step`` raises :class:`StepTimedOut` after ``seconds`` (SIGALRM, so only in
    a process's main thread: elsewhere the step runs without a limit). A step blocked inside C
    code that does not return to Python is interrupted when it does."""

    def __init__(self, env: gym.Env, seconds: float) -> None:
        super().__init__(env)
        self.seconds = float(seconds)

    def step(self, action):
        if threading.current_thread() is not threading.main_thread():
            return self.env.step(action)
        previous = signal.signal(signal.SIGALRM, self._expired)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            return self.env.step(action)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _expired(self, number, frame) -> None:
        raise StepTimedOut(f"took longer than env.step_timeout = {self.seconds:g} s in one step")
