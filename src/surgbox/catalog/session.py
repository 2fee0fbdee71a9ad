"""The catalog facade: :class:`Catalog` (database, keys, store) and :class:`Session` (a logged-in user).

>>> from surgbox.catalog import Catalog
>>> with Catalog.at() as catalog:                                    # doctest: +SKIP
...     session = catalog.login("alice", "correct horse")
...     ev = session.events.create(patient="Jane Doe", medical_record="MRN-1", procedure="Cholecystectomy",
...                                physicians=["Dr. Who"], place="OR 3")
...     session.events.start_event(ev.id)

Every method of a session's managers (``session.events``, ``session.users``, ``session.audit``)
first calls :meth:`Session.authorize`, which reloads the user, applies the permission matrix
(:mod:`surgbox.catalog.users`), audits a refusal and raises :class:`AccessDenied`.

Opening a catalog checks the master key against the catalog's key check value (``meta.key_check``
= ``HMAC-SHA256(HKDF(master, "surgbox/catalog/key-check/v1"), "surgbox-catalog-key-check")``): a
wrong ``master.key`` (another home's) is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import argon2
import attrs

from ..crypto.keys import KeyRing, MasterKey
from ..errors import IntegrityError
from ..home import Home
from ..interfaces import check_store
from ..plugins import get_plugins
from . import accounts
from .anchor import AuditAnchor
from .audit import AuditLog, AuditRecord, VerifyResult
from .db import Database, utcnow
from .errors import AccessDenied, AuthenticationError, CatalogError
from .events import EventManager
from .keys import unwrap_key, wrap_key
from .model import EVENT_ID, Event, check_text
from .phi import PhiCipher, derive_subkey, normalize
from .users import ROLES, PasswordPolicy, User, allowed, check_action

log = logging.getLogger(__name__)

_OPERATION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
check_user_name = accounts.check_user_name
UserManager = accounts.UserManager


def _takes(factory: Any, option: str) -> bool:
    """Whether a plugin factory accepts the keyword ``option``."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == option or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def key_check_value(master: bytes) -> bytes:
    """The catalog's key check value of a master key (reveals nothing about the key)."""
    return hmac.new(derive_subkey(master, "key_check"), b"surgbox-catalog-key-check", hashlib.sha256).digest()


@attrs.define(eq=False)
class Catalog:
    """The event catalog of one :class:`~surgbox.home.Home`: open with ``with Catalog(home):`` or
    :meth:`at`. ``now`` is the wall clock (UTC, injectable for tests); ``plugins`` the plugin
    manager that builds the store (default: the process-wide one); ``policy`` overrides the
    home's ``[users]`` settings. :meth:`open` reads the home's ``config.toml`` afresh.
    Thread-safe (one SQLite connection under a lock)."""

    home: Home
    plugins: Any = None
    now: Callable[[], datetime] = utcnow
    policy: PasswordPolicy | None = None
    create: bool = False
    db: Database = attrs.field(init=False, default=None)
    phi: PhiCipher = attrs.field(init=False, default=None, repr=False)
    audit: AuditLog = attrs.field(init=False, default=None, repr=False)
    kek: bytes = attrs.field(init=False, default=b"", repr=False)
    hasher: Any = attrs.field(init=False, default=None, repr=False)
    _dummy_hash: str = attrs.field(init=False, default="", repr=False)
    _master: bytes = attrs.field(init=False, default=b"", repr=False)

    @classmethod
    def at(cls, home: Home | str | None = None, **options: Any) -> Catalog:
        """A catalog for ``home`` (default ``$SURGBOX_HOME``), not yet opened."""
        h = home if isinstance(home, Home) else Home.from_env(home)
        return cls(h, **options)

    def open(self) -> Catalog:
        if self.db is not None:
            return self
        if not self.create and not self.home.exists():
            raise CatalogError(f"{self.home.path} is not a surgbox home (no catalog, key or config there); "
                               f"run `surgbox init --home {self.home.path}`, or point --home / SURGBOX_HOME at "
                               f"an initialized home")
        self.home = self.home.load()  # the configuration as it is now
        master = self.home.master_key()
        if self.policy is None:
            try:
                self.policy = PasswordPolicy.from_mapping(self.home.user_settings())
            except (TypeError, ValueError) as exc:
                raise CatalogError(f"{self.home.config_path}: bad [users] settings: {exc}") from None
        if not self.create and not self.home.catalog_path.exists():
            raise CatalogError(f"no catalog at {self.home.catalog_path}; run `surgbox init` "
                               f"(or point SURGBOX_HOME at an initialized home)")
        self._master = master
        mac_key = derive_subkey(master, "audit_mac")
        anchor = AuditAnchor(self.home.anchor_path, mac_key)
        db = Database(self.home.catalog_path, writer_lock=anchor.lock).open(create=True)
        try:
            db.conn.create_function("sb_norm", 1, lambda v: normalize(v or ""), deterministic=True)
            self._check_key(db, master, mac_key)
            anchor.catalog_id = self._catalog_id(db)
            self.phi = PhiCipher.from_master(master)
            self.kek = derive_subkey(master, "event_kek")
            self.db = db
            self.audit = AuditLog(db, mac_key, self.now, anchor)
            self._seal_legacy_names()
            self.audit.ensure_anchor()
            self.hasher = self.policy.hasher()
        except BaseException:
            db.close()
            self.db = None
            raise
        return self

    def _check_key(self, db: Database, master: bytes, mac_key: bytes) -> None:
        """Refuse a master key that is not this catalog's; give a catalog without a key check value
        (new, or from before key checks) one once its contents verify with the key."""
        kcv = key_check_value(master)
        row = db.query_one("SELECT value FROM meta WHERE key = 'key_check'")
        if row is not None:
            if hmac.compare_digest(bytes(row[0]), kcv):
                return
            raise CatalogError(self._wrong_key())
        last = db.query_one("SELECT hash, mac FROM audit ORDER BY seq DESC LIMIT 1")
        wrapped = db.query_one("SELECT event_id, wrapped FROM event_keys LIMIT 1")
        if last is not None:
            if not hmac.compare_digest(hmac.new(mac_key, bytes(last["hash"]), hashlib.sha256).digest(), bytes(last["mac"])):
                raise CatalogError(self._wrong_key())
        elif wrapped is not None:
            try:
                unwrap_key(derive_subkey(master, "event_kek"), wrapped["event_id"], bytes(wrapped["wrapped"]))
            except IntegrityError:
                raise CatalogError(self._wrong_key()) from None
        with db.transaction() as c:
            c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('key_check', ?)", (kcv,))

    def _wrong_key(self) -> str:
        return (f"the master key {self.home.master_key_path} is not the key of the catalog {self.home.catalog_path} "
                f"(its key check value differs); put back this home's own master.key from your key backup. "
                f"Nothing was read or written")

    @staticmethod
    def _catalog_id(db: Database) -> str:
        row = db.query_one("SELECT value FROM meta WHERE key = 'catalog_id'")
        if row is not None:
            return bytes(row[0]).decode()
        with db.transaction() as c:
            c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('catalog_id', ?)", (uuid.uuid4().hex.encode(),))
            return bytes(c.execute("SELECT value FROM meta WHERE key = 'catalog_id'").fetchone()[0]).decode()

    def _seal_legacy_names(self) -> None:
        """Encrypt the file names of a catalog from before version 2 (kept in clear until now)."""
        rows = self.db.query("SELECT id, store_key, legacy_name FROM files WHERE legacy_name IS NOT NULL")
        if not rows:
            return
        with self.db.transaction() as c:
            for r in rows:
                c.execute("UPDATE files SET name_enc = ?, legacy_name = NULL WHERE id = ?",
                          (self.phi.encrypt(r["legacy_name"], f"files.name:{r['store_key']}"), r["id"]))
        self.db.checkpoint()
        log.info("catalog %s: encrypted %d file names", self.home.catalog_path, len(rows))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def __enter__(self) -> Catalog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- store ----------------------------------------------------------------------------
    def store_settings(self) -> tuple[str, dict[str, Any]]:
        return self.home.store_settings()

    def make_store(self, keyring: Any, *, init: bool = False) -> Any:
        """An opened store (configured plugin) that encrypts with ``keyring`` (a
        :class:`surgbox.crypto.KeyRing`): stores used by the catalog have the ``keyring``
        capability (docs/storage.md). A store that takes ``metadata_key=`` gets the master key, so
        the tombstones of what the catalog deletes verify in ``surgbox store scrub`` too."""
        name, options = self.store_settings()
        plugins = self.plugins or get_plugins()
        if _takes(plugins.entry("store", name).factory, "metadata_key"):
            options["metadata_key"] = MasterKey(self._master, str(self.home.master_key_path))
        store = check_store(plugins.create("store", name, keyring=keyring, init=init, **options), "keyring",
                            plugin=name, purpose="the catalog (per-event keys)")
        store.open()
        return store

    def create_store(self) -> None:
        """Initialize the configured store's roots (used by ``surgbox init``)."""
        self.make_store(KeyRing.of(MasterKey(self.home.master_key(), str(self.home.master_key_path))), init=True).close()

    # ---- users ----------------------------------------------------------------------------
    def hash_password(self, password: str) -> str:
        """The Argon2id hash of a new password that meets the policy (:class:`CatalogError` if not)."""
        try:
            check_text(password, "password", limit=accounts.MAX_PASSWORD)
            self.policy.check_password(password)
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        return self.hasher.hash(password)

    def bootstrap_admin(self, name: str, password: str) -> User:
        """Create the first admin of an empty catalog (``surgbox init``); refuses if any user exists."""
        return accounts.bootstrap_admin(self, name, password)

    def user_row(self, name: str) -> Any:
        return self.db.query_one("SELECT * FROM users WHERE name = ?", (name,))

    def user_by_id(self, uid: int) -> User:
        row = self.db.query_one("SELECT * FROM users WHERE id = ?", (uid,))
        if row is None:
            raise CatalogError(f"no user with id {uid}")
        return User.from_row(row)

    def dummy_verify(self, password: str) -> None:
        """Spend the time of a real verification, so refusals cannot be told apart by timing."""
        if not self._dummy_hash:
            self._dummy_hash = self.hasher.hash("surgbox-dummy-password")
        try:
            self.hasher.verify(self._dummy_hash, password)
        except argon2.exceptions.VerificationError:
            pass

    def login(self, name: str, password: str) -> Session:
        """Check ``password`` and return a :class:`Session`; raises :class:`AuthenticationError`.

        Wrong passwords count towards the lockout (atomically, whatever runs in parallel); a
        locked or disabled account is refused even with the right password, with the same answer
        as a wrong password or an unknown name. Every attempt is audited (``user.login``)."""
        return Session(self, accounts.check_password(self, name, password))

    def wrap_event_key(self, event_id: str, key: bytes) -> bytes:
        return wrap_key(self.kek, event_id, key)

    def unwrap_event_key(self, event_id: str, wrapped: bytes) -> bytes:
        return unwrap_key(self.kek, event_id, wrapped)


@attrs.define(eq=False)
class Session:
    """A logged-in user of a :class:`Catalog`. Managers: :attr:`events`, :attr:`users`, :attr:`audit`."""

    catalog: Catalog
    user: User

    def current_user(self) -> User:
        """The user re-read from the catalog (a disabled account loses access at once)."""
        row = self.catalog.db.query_one("SELECT * FROM users WHERE id = ?", (self.user.id,))
        if row is None:
            raise AuthenticationError(f"user {self.user.name!r} no longer exists; log in again")
        self.user = User.from_row(row)
        return self.user

    def owns(self, event: Event, user: User | None = None) -> bool:
        """True when the event's physicians include the user's linked physician, or the user created it."""
        u = user or self.user
        if event.created_by_id is not None and event.created_by_id == u.id:
            return True
        return u.physician_hash is not None and u.physician_hash in event.physician_hashes

    def can(self, action: str, event: Event | None = None) -> bool:
        """The permission decision without auditing (to filter lists and show menus)."""
        user = self.user
        return allowed(user, action, owns_event=None if event is None else self.owns(event, user))

    def authorize(self, action: str, event: Event | str | None = None, *, operation: str | None = None,
                  hint: str | None = None) -> User:
        """Allow ``action`` (one of :data:`~surgbox.catalog.ACTIONS`) on ``event`` (an
        :class:`~surgbox.catalog.Event` or an event id; ``None`` for actions not about one event),
        or audit the refusal (as ``operation``, default ``action``) and raise :class:`AccessDenied`
        (with ``hint`` as its fix, if given). An unknown event id raises :class:`NotFoundError`
        (audited), but only to users who may take ``action`` on some event: others get
        :class:`AccessDenied`, so ids cannot be probed. Returns the freshly loaded user. This is how
        features outside the catalog (de-identification, upload) check permission:
        ``session.authorize("upload", event_id, operation="event.upload")``."""
        try:
            check_action(action)
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        if isinstance(event, str):
            self.events._authorized(action, event, operation or action)
            return self.user
        user = self.current_user()
        owns = None if event is None else self.owns(event, user)
        if not allowed(user, action, owns_event=owns):
            self.catalog.audit.record(user.name, operation or action, event.id if event else None, "denied",
                                      {"permission": action, "role": user.role,
                                       **({"disabled": True} if user.disabled else {})})
            raise AccessDenied(user.name, user.role, action, event.id if event else None, hint=hint)
        return user

    def record_action(self, operation: str, event: Event | str | None = None, result: str = "ok",
                      detail: Mapping[str, Any] | None = None) -> AuditRecord:
        """Append an audit record for something this user did outside the catalog (e.g.
        ``"event.upload"`` after :meth:`authorize`). ``operation`` is a dotted name
        (``event.deidentify``); ``result`` is ``ok``, ``denied`` or ``failed``; ``detail`` a mapping of
        non-PHI facts (counts, checksums, a destination's host name): it is stored in clear."""
        if not isinstance(operation, str) or not _OPERATION.match(operation):
            raise CatalogError(f"audit operation {operation!r} is not valid: use dotted lowercase words, "
                               f"e.g. 'event.upload'")
        if result not in ("ok", "denied", "failed"):
            raise CatalogError(f"audit result {result!r} is not one of ok, denied, failed")
        target = event.id if event is not None and not isinstance(event, str) else event
        if target is not None and not (isinstance(target, str) and EVENT_ID.match(target)):
            raise CatalogError(f"{target!r} is not an event id (ev-YYYYMMDD-xxxxxxxx)")
        try:
            return self.catalog.audit.record(self.current_user().name, operation, target, result, detail)
        except (TypeError, ValueError) as exc:  # detail not JSON
            raise CatalogError(f"audit detail of {operation} must be a JSON object of plain values: {exc}") from None

    @property
    def events(self) -> EventManager:
        return EventManager(self)

    @property
    def users(self) -> UserManager:
        return UserManager(self)

    @property
    def audit(self) -> AuditView:
        return AuditView(self)


@attrs.define(eq=False)
class AuditView:
    """Reading and verifying the audit trail (``view_audit``)."""

    session: Session

    def records(self, **filters: Any) -> list[AuditRecord]:
        """Records filtered as :meth:`AuditLog.records` (``since_seq``, ``limit``, ``actor``, ``action``, ``target``)."""
        me = self.session.authorize("view_audit", operation="audit.show")
        limit = filters.get("limit")
        if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= 1_000_000):
            raise CatalogError(f"--limit must be a whole number from 1 to 1000000, got {limit!r}")
        for k in ("actor", "action", "target"):
            if filters.get(k) is not None:
                check_text(filters[k], k, limit=256)
        recs = self.session.catalog.audit.records(**filters)
        self.session.catalog.audit.record(me.name, "audit.show", None, "ok", {"count": len(recs)})
        return recs

    def verify(self) -> VerifyResult:
        """Verify the whole chain and its anchor (see :meth:`AuditLog.verify`); the check itself is
        audited after it ran."""
        me = self.session.authorize("view_audit", operation="audit.verify")
        result = self.session.catalog.audit.verify()
        self.session.catalog.audit.record(me.name, "audit.verify", None, "ok" if result.ok else "failed",
                                          {"records": result.records, "problems": len(result.problems)})
        return result


__all__ = ["ROLES", "AuditView", "Catalog", "Session", "UserManager", "check_user_name", "key_check_value"]
