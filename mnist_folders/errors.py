"""The project's exceptions: each carries one user-facing line.

The CLIs catch :class:`PipelineError` and print ``error: <message>`` on stderr
with exit code 2; anything else is a bug and keeps its traceback.
"""


class PipelineError(Exception):
    """Base class: a user's mistake or a bad input, reported in one line."""


class IdxFormatError(PipelineError):
    """An IDX file is malformed: wrong magic, dimensions, length or checksum."""


class DatasetError(PipelineError):
    """An image-folder tree is missing, empty or inconsistent."""


class SettingError(PipelineError):
    """A setting (flag, TOML key or value) is invalid."""


class CheckpointError(PipelineError):
    """A model directory is missing, incomplete or unreadable."""


class TrainingError(PipelineError):
    """Training cannot go on (e.g. the loss diverged); the last good checkpoint is kept."""
