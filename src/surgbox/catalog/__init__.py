"""The event catalog: SQLite events and files, users and roles, audit trail (see docs/catalog.md).

>>> from surgbox.catalog import Catalog
>>> with Catalog.at() as catalog:                      # doctest: +SKIP
...     session = catalog.login("admin", "password")
...     for ev in session.events.search(procedure="chole"):
...         print(ev.id, ev.started_at)
"""

from .audit import AuditLog, AuditRecord, VerifyResult
from .db import MIGRATIONS, SCHEMA_VERSION, Database
from .errors import AccessDenied, AuditError, AuthenticationError, CatalogError, NotFoundError
from .events import FILE_KINDS, DeleteResult, Event, EventManager, ExportResult, FileRecord, RecoverResult
from .phi import PhiCipher, normalize
from .session import AuditView, Catalog, Session, UserManager
from .users import ACTIONS, PERMISSIONS, ROLES, PasswordPolicy, Scope, User, allowed

__all__ = [
    "ACTIONS", "FILE_KINDS", "MIGRATIONS", "PERMISSIONS", "ROLES", "SCHEMA_VERSION", "AccessDenied", "AuditError",
    "AuditLog", "AuditRecord", "AuditView", "AuthenticationError", "Catalog", "CatalogError", "Database",
    "DeleteResult", "Event", "EventManager", "ExportResult", "FileRecord", "NotFoundError", "PasswordPolicy", "RecoverResult",
    "PhiCipher", "Scope", "Session", "User", "UserManager", "VerifyResult", "allowed", "normalize",
]
