"""wheelport's own errors.

Every failure wheelport reports is a :class:`WheelportError`. Each class carries the
exit code the CLI uses (2: bad usage or bad input; 1: the job failed) and structured
fields (which package, which target, which file), so ``cli.main`` is the one place that
turns them into a single clear line.
"""

from __future__ import annotations


class WheelportError(Exception):
    """Base class. ``str(err)`` is the one line shown to the user."""

    return_code = 1

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        package: str | None = None,
        target: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.package = package
        self.target = target
        self.path = path

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "error": type(self).__name__,
            "message": self.message,
            "exit_code": self.return_code,
        }
        for key in ("hint", "package", "target", "path"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


class UsageError(WheelportError):
    """Bad usage or bad input: unparsable requirement, unknown target form, missing file."""

    return_code = 2


class TargetError(UsageError):
    """A target identifier wheelport cannot understand."""


class ConfigError(UsageError):
    """A configuration file or value that is not valid."""


class RequirementError(UsageError):
    """A requirement that does not parse (names the file and line)."""


class JobError(WheelportError):
    """The job failed although the input was well formed."""

    return_code = 1


class DiskFullError(JobError):
    """A write found no space left on its device (names the path and the space needed)."""


class IndexAccessError(JobError):
    """The package index could not be reached or answered badly."""


class ResolutionError(JobError):
    """No set of versions satisfies the requirements for a target."""


class FetchError(JobError):
    """A download failed or did not match its expected hash/size."""


class BuildError(JobError):
    """Building a wheel from an sdist failed."""


class VerifyError(JobError):
    """Files in the wheelhouse are missing, extra or tampered."""


class ProvisionError(JobError):
    """A virtual environment could not be provisioned from the wheelhouse."""


class ExportError(JobError):
    """An export (docker, publish, bundle, merge) failed."""
