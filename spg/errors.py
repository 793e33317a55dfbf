"""The error of a run that cannot start (:class:`SetupError`), shared by every layer that checks settings."""

from __future__ import annotations


class SetupError(ValueError):
    """A run that cannot start: the message names the problem and the setting to change;
    ``detail``, what that one line leaves out, for the run's log."""

    def __init__(self, message: str = "", detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


def invalid(key: str, value: object, rule: str) -> SetupError:
    """``key = value: rule; set key=...``."""
    return SetupError(f"{key} = {value}: {rule}; set {key}=...")
