"""Errors of the upload: every message is one line naming the remote, the file and the fix."""

from __future__ import annotations

from ..errors import SurgboxError


class UploadError(SurgboxError, RuntimeError):
    """An upload could not be configured, sent or verified.

    ``transient``: the same request may succeed later (network cut, server restarting, HTTP 5xx
    other than 507, a verification mismatch that a resend repairs); the job stays queued either
    way, but a transient error is retried at once with backoff, a lasting one (wrong password,
    TLS certificate, full server disk) waits for the next run."""

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status = status


class VerificationError(UploadError):
    """The bytes on the remote differ from the store's (size or SHA-256)."""

    def __init__(self, message: str):
        super().__init__(message, transient=True)
