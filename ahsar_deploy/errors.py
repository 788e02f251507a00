"""One exception family. The CLI prints ``str(err)`` on one line and exits non-zero."""


class DeployError(Exception):
    """Base class: the message says what was wrong, where, and what to do."""


class ModelFileError(DeployError):
    """A model file is missing, unreadable, corrupt or malformed."""


class UnsupportedLayerError(DeployError):
    """A layer or node the toolchain cannot deploy."""


class TargetError(DeployError):
    """Unknown target, or a parameter outside the target's limits."""


class DatasetError(DeployError):
    """A dataset is unknown, missing, or does not match the model."""


class BuildError(DeployError):
    """A build directory is missing, incomplete or already exists."""


class FidelityError(DeployError):
    """--strict: the integer build differs from the float model for a named cause."""


class BackendError(DeployError):
    """A backend is unknown, failed, or timed out."""


class AttachError(DeployError):
    """AHSAR cannot be attached to a user's model, or the attached regulator was misused."""


class ConfigError(DeployError):
    """A sweep config file is unreadable, or has an unknown key, a wrong type or an empty grid."""
