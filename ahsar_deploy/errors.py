"""One exception family. The CLI prints ``str(err)`` on one line and exits non-zero."""
import errno


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


class WriteError(DeployError):
    """An output could not be written (no space left, read-only, permission, size limit);
    the previous output is left as it was (interrupts.atomic_paths, build._write_build)."""


# errno -> (cause, what to do); the others are named by their strerror (errno(3), write(2)).
_WRITE_CAUSES = {
    "ENOSPC": ("no space left on device", "free space or write elsewhere"),
    "EDQUOT": ("disk quota exceeded", "free space or write elsewhere"),
    "EFBIG": ("file too large for the file size limit (ulimit -f) or the file system", "raise the limit or write elsewhere"),
    "EROFS": ("read-only file system", "write elsewhere (copy a build to a writable place first)"),
    "EACCES": ("permission denied", "fix the permissions or write elsewhere"),
    "EPERM": ("operation not permitted", "fix the permissions or write elsewhere"),
}


WRITE_ERRNOS = frozenset(getattr(errno, n) for n in _WRITE_CAUSES)   # the CLI: exit 1, not "internal error"


def os_error_cause(e: OSError) -> tuple[str, str]:
    """(cause with its errno name, e.g. "no space left on device (ENOSPC)", what to do) of an OSError."""
    name = errno.errorcode.get(e.errno or 0)
    cause, fix = _WRITE_CAUSES.get(name, (e.strerror or " ".join(str(e).split())[:160] or type(e).__name__,
                                          "check the location or write elsewhere"))
    return (f"{cause} ({name})" if name else cause), fix


def write_error(e: OSError, path, kept=None) -> WriteError:
    """The one-line WriteError for an OSError met while writing `path` (the output the user
    named: the final file, not a temporary one), which leaves `kept` (default `path`: the
    file; a build directory for one of its files) as it was."""
    cause, fix = os_error_cause(e)
    return WriteError(f"cannot write {path}: {cause}; {kept or path} is left as it was: {fix}")
