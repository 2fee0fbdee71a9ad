"""The event catalog: SQLite events and files, users and roles, audit trail (see docs/catalog.md).

>>> from surgbox.catalog import Catalog
>>> with Catalog.at() as catalog:                      # doctest: +SKIP
...     session = catalog.login("admin", "password")
...     for ev in session.events.search(procedure="chole"):
...         print(ev.id, ev.started_at)

Layers, each depending only on those before it: values and checks (:mod:`.model`, :mod:`.users`,
:mod:`.phi`, :mod:`.db`), keys (:mod:`.keys`), the audit trail and its anchor (:mod:`.audit`,
:mod:`.anchor`), the work on events (:mod:`.search`, :mod:`.files`, :mod:`.export`,
:mod:`.retention`, :mod:`.reports`), the facades (:mod:`.events`, :mod:`.accounts`,
:mod:`.session`) and installing a home (:mod:`.install`).
"""

from .audit import AuditLog, AuditRecord, VerifyResult
from .db import MIGRATIONS, SCHEMA_VERSION, Database
from .errors import AccessDenied, AuditError, AuthenticationError, CatalogError, NotFoundError
from .events import EventManager
from .export import DEFAULT_PLAYERS
from .files import EventStore
from .install import install_home
from .model import FILE_KINDS, DeleteResult, Event, ExportResult, FileRecord, RecoverResult
from .phi import PhiCipher, normalize
from .session import AuditView, Catalog, Session, UserManager, key_check_value
from .users import ACTIONS, PERMISSIONS, ROLES, PasswordPolicy, Scope, User, allowed

__all__ = [
    "ACTIONS", "DEFAULT_PLAYERS", "FILE_KINDS", "MIGRATIONS", "PERMISSIONS", "ROLES", "SCHEMA_VERSION", "AccessDenied",
    "AuditError", "AuditLog", "AuditRecord", "AuditView", "AuthenticationError", "Catalog", "CatalogError", "Database",
    "DeleteResult", "Event", "EventManager", "EventStore", "ExportResult", "FileRecord", "NotFoundError",
    "PasswordPolicy", "PhiCipher", "RecoverResult", "Scope", "Session", "User", "UserManager", "VerifyResult",
    "allowed", "install_home", "key_check_value", "normalize",
]
