"""Errors the library raises for problems a user can fix (bad files, bad inputs)."""

__all__ = ["AudioError", "CheckpointError", "InputTooLongError", "UnreadableInputError"]


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupted, or does not match its config."""


class AudioError(ValueError):
    """An audio or feature file cannot be read or does not fit the model."""


class UnreadableInputError(AudioError):
    """The bytes are not a file of a format that can be read (not audio, not .npy, damaged)."""


class InputTooLongError(AudioError):
    """An input is longer than its caller accepts (seconds of audio, frames of a mel)."""
