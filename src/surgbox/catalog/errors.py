"""Errors raised by the catalog. Every message names the thing that failed and the fix."""

from __future__ import annotations

from ..errors import SurgboxError


class CatalogError(SurgboxError, RuntimeError):
    """The catalog database cannot be opened, migrated or written."""


class NotFoundError(CatalogError, LookupError):
    """No event, file or user by that id or name."""


class AuthenticationError(CatalogError):
    """Login failed: unknown user, wrong password, disabled or locked account."""


class AccessDenied(CatalogError, PermissionError):
    """The logged-in user's role does not allow the action (on that event)."""

    def __init__(self, user: str, role: str, action: str, event_id: str | None = None, *, hint: str | None = None):
        self.user, self.role, self.action, self.event_id = user, role, action, event_id
        on = f" on event {event_id}" if event_id else ""
        fix = hint or ("ask an admin for a role that allows it (`surgbox users list` shows roles; "
                       "docs/catalog.md has the permission matrix)")
        super().__init__(f"user {user!r} (role {role}) may not {action}{on}; {fix}")


class AuditError(CatalogError):
    """The audit chain does not verify (records edited, deleted or reordered)."""
