"""Errors the library raises for problems a user can fix (bad files, bad inputs)."""

__all__ = ["AudioError", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupted, or does not match its config."""


class AudioError(ValueError):
    """An audio or feature file cannot be read or does not fit the model."""
