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
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from ..home import Home
from .audit import SYSTEM, AuditLog, AuditRecord, VerifyResult
from .db import Database, to_text, utcnow
from .errors import AccessDenied, AuthenticationError, CatalogError, NotFoundError
from .phi import PhiCipher, derive_subkey, normalize
from .users import ROLES, PasswordPolicy, User, allowed, check_action, check_role

if TYPE_CHECKING:  # pragma: no cover
    from .events import Event, EventManager

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_OPERATION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name, else :class:`CatalogError` naming it and the allowed form."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise CatalogError(f"user name {name!r} is not valid: use 1-64 letters, digits, '.', '_', '@' or '-', "
                           f"starting with a letter or digit (e.g. 'dr.sands')")
    return name


@attrs.define(eq=False)
class Catalog:
    """The event catalog of one :class:`~surgbox.home.Home`: open with ``with Catalog(home):`` or
    :meth:`at`. ``now`` is the wall clock (UTC, injectable for tests); ``plugins`` the plugin
    manager that builds the store (default: the process-wide one); ``policy`` overrides the
    home's ``[users]`` settings. Thread-safe (one SQLite connection under a lock)."""

    home: Home
    plugins: Any = None
    now: Callable[[], datetime] = utcnow
    policy: PasswordPolicy | None = None
    create: bool = False
    db: Database = attrs.field(init=False, default=None)
    phi: PhiCipher = attrs.field(init=False, default=None, repr=False)
    audit: AuditLog = attrs.field(init=False, default=None, repr=False)
    _kek: bytes = attrs.field(init=False, default=b"", repr=False)
    _hasher: Any = attrs.field(init=False, default=None, repr=False)
    _dummy_hash: str = attrs.field(init=False, default="", repr=False)

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
        master = self.home.master_key()
        if self.policy is None:
            try:
                self.policy = PasswordPolicy.from_mapping(self.home.user_settings())
            except (TypeError, ValueError) as exc:
                raise CatalogError(f"{self.home.config_path}: bad [users] settings: {exc}") from None
        if not self.create and not self.home.catalog_path.exists():
            raise CatalogError(f"no catalog at {self.home.catalog_path}; run `surgbox init` "
                               f"(or point SURGBOX_HOME at an initialized home)")
        self.phi = PhiCipher.from_master(master)
        self._kek = derive_subkey(master, "event_kek")
        self.db = Database(self.home.catalog_path).open(create=True)
        self.db.conn.create_function("sb_norm", 1, lambda v: normalize(v or ""), deterministic=True)
        self.audit = AuditLog(self.db, derive_subkey(master, "audit_mac"), self.now)
        self._hasher = self.policy.hasher()
        return self

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
        :class:`surgbox.crypto.KeyRing`). Stores used by the catalog accept ``keyring=``."""
        from ..plugins import get_plugins

        name, options = self.store_settings()
        plugins = self.plugins or get_plugins()
        store = plugins.create("store", name, keyring=keyring, init=init, **options)
        store.open()
        return store

    def create_store(self) -> None:
        """Initialize the configured store's roots (used by ``surgbox init``)."""
        from ..crypto.keys import KeyRing, MasterKey

        self.make_store(KeyRing.of(MasterKey(self.home.master_key(), str(self.home.master_key_path))), init=True).close()

    # ---- users ----------------------------------------------------------------------------
    def _hash_password(self, password: str) -> str:
        try:
            self.policy.check_password(password)
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        return self._hasher.hash(password)

    def bootstrap_admin(self, name: str, password: str) -> User:
        """Create the first admin of an empty catalog (``surgbox init``); refuses if any user exists."""
        check_user_name(name)
        pw_hash = self._hash_password(password)
        with self.db.transaction() as c:
            if c.execute("SELECT count(*) FROM users").fetchone()[0]:
                raise CatalogError("the catalog already has users; log in as an admin and use `surgbox users add`")
            now = to_text(self.now())
            cur = c.execute("INSERT INTO users(name, role, password_hash, created_at) VALUES (?, 'admin', ?, ?)",
                            (name, pw_hash, now))
            self.audit.append(c, SYSTEM, "user.create", name, "ok", {"role": "admin", "bootstrap": True})
        return self._user_by_id(cur.lastrowid)

    def _user_row(self, name: str) -> Any:
        return self.db.query_one("SELECT * FROM users WHERE name = ?", (name,))

    def _user_by_id(self, uid: int) -> User:
        row = self.db.query_one("SELECT * FROM users WHERE id = ?", (uid,))
        if row is None:
            raise NotFoundError(f"no user with id {uid}")
        return User.from_row(row)

    def _dummy_verify(self, password: str) -> None:
        """Spend the time of a real verification so unknown names cannot be told from wrong passwords."""
        import argon2

        if not self._dummy_hash:
            self._dummy_hash = self._hasher.hash("surgbox-dummy-password")
        try:
            self._hasher.verify(self._dummy_hash, password)
        except argon2.exceptions.VerificationError:
            pass

    def login(self, name: str, password: str) -> Session:
        """Check ``password`` and return a :class:`Session`; raises :class:`AuthenticationError`.

        Wrong passwords count towards the lockout; a locked or disabled account is refused even with
        the right password. Every attempt is audited (``user.login``)."""
        import argon2

        now = self.now()
        row = self._user_row(name)
        if row is None:
            self._dummy_verify(password)
            self.audit.record(name if _NAME.match(name or "") else "?", "user.login", None, "failed",
                              {"reason": "unknown user"})
            raise AuthenticationError(f"login failed for {name!r}: wrong user name or password")
        user = User.from_row(row)
        if user.disabled:
            self.audit.record(user.name, "user.login", user.name, "failed", {"reason": "disabled"})
            raise AuthenticationError(f"account {name!r} is disabled; ask an admin (`surgbox users enable {name}`)")
        if user.locked(now):
            self.audit.record(user.name, "user.login", user.name, "failed", {"reason": "locked"})
            raise AuthenticationError(
                f"account {name!r} is locked after {self.policy.max_failures} wrong passwords until "
                f"{user.locked_until.isoformat(timespec='seconds')}; wait, or ask an admin (`surgbox users unlock {name}`)"
            )
        try:
            self._hasher.verify(row["password_hash"], password)
        except argon2.exceptions.VerificationError:
            with self.db.transaction() as c:
                failed = c.execute("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ? "
                                   "RETURNING failed_logins", (user.id,)).fetchone()[0]
                detail: dict[str, Any] = {"reason": "wrong password", "failures": failed}
                if failed >= self.policy.max_failures:
                    until = now + timedelta(minutes=self.policy.lockout_minutes)
                    c.execute("UPDATE users SET failed_logins = 0, locked_until = ? WHERE id = ?", (to_text(until), user.id))
                    detail.update(locked_until=to_text(until))
                self.audit.append(c, user.name, "user.login", user.name, "failed", detail)
            if "locked_until" in detail:
                raise AuthenticationError(f"login failed for {name!r}: wrong password; the account is now locked for "
                                          f"{self.policy.lockout_minutes:g} minutes") from None
            raise AuthenticationError(f"login failed for {name!r}: wrong user name or password") from None
        with self.db.transaction() as c:
            new_hash = self._hasher.hash(password) if self._hasher.check_needs_rehash(row["password_hash"]) else None
            c.execute("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login = ?, "
                      "password_hash = coalesce(?, password_hash) WHERE id = ?", (to_text(now), new_hash, user.id))
            self.audit.append(c, user.name, "user.login", user.name, "ok", {"rehashed": new_hash is not None})
        return Session(self, self._user_by_id(user.id))

    def wrap_event_key(self, event_id: str, key: bytes) -> bytes:
        from .events import wrap_key

        return wrap_key(self._kek, event_id, key)

    def unwrap_event_key(self, event_id: str, wrapped: bytes) -> bytes:
        from .events import unwrap_key

        return unwrap_key(self._kek, event_id, wrapped)


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

    def authorize(self, action: str, event: Event | str | None = None, *, operation: str | None = None) -> User:
        """Allow ``action`` (one of :data:`~surgbox.catalog.ACTIONS`) on ``event`` (an
        :class:`~surgbox.catalog.Event` or an event id; ``None`` for actions not about one event),
        or audit the refusal (as ``operation``, default ``action``) and raise :class:`AccessDenied`.
        An unknown event id raises :class:`NotFoundError` (audited), but only to users who may take
        ``action`` on some event: others get :class:`AccessDenied`, so ids cannot be probed.
        Returns the freshly loaded user. This is how features outside the catalog (de-identification,
        upload) check permission: ``session.authorize("upload", event_id, operation="event.upload")``."""
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
            raise AccessDenied(user.name, user.role, action, event.id if event else None)
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
        if target is not None:
            from .events import _EVENT_ID

            if not _EVENT_ID.match(target):
                raise CatalogError(f"{target!r} is not an event id (ev-YYYYMMDD-xxxxxxxx)")
        return self.catalog.audit.record(self.current_user().name, operation, target, result, detail)

    @property
    def events(self) -> EventManager:
        from .events import EventManager

        return EventManager(self)

    @property
    def users(self) -> UserManager:
        return UserManager(self)

    @property
    def audit(self) -> AuditView:
        return AuditView(self)


@attrs.define(eq=False)
class UserManager:
    """User administration for a session (``manage_users``), and changing one's own password."""

    session: Session

    @property
    def _cat(self) -> Catalog:
        return self.session.catalog

    def _get(self, name: str) -> User:
        row = self._cat._user_row(name)
        if row is None:
            raise NotFoundError(f"no user named {name!r}; `surgbox users list` shows them")
        return User.from_row(row)

    def add(self, name: str, role: str, password: str, *, physician: str | None = None) -> User:
        """Create an account. ``physician`` links a physician name (a surgeon sees events listing it)."""
        me = self.session.authorize("manage_users", operation="user.create")
        check_user_name(name)
        try:
            check_role(role)
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        pw_hash = self._cat._hash_password(password)
        phi = self._cat.phi
        with self._cat.db.transaction() as c:
            if c.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise CatalogError(f"user {name!r} already exists; choose another name or `surgbox users passwd {name}`")
            cur = c.execute("INSERT INTO users(name, role, password_hash, created_at, physician_hash) VALUES (?, ?, ?, ?, ?)",
                            (name, role, pw_hash, to_text(self._cat.now()),
                             phi.blind("physician", physician) if physician else None))
            if physician:
                c.execute("UPDATE users SET physician_enc = ? WHERE id = ?",
                          (phi.encrypt(physician, f"users.physician:{cur.lastrowid}"), cur.lastrowid))
            self._cat.audit.append(c, me.name, "user.create", name, "ok", {"role": role, "physician_linked": bool(physician)})
        return self._get(name)

    def list(self) -> list[User]:
        me = self.session.authorize("manage_users", operation="user.list")
        users = [User.from_row(r) for r in self._cat.db.query("SELECT * FROM users ORDER BY name")]
        self._cat.audit.record(me.name, "user.list", None, "ok", {"count": len(users)})
        return users

    def physician_of(self, name: str) -> str | None:
        """The physician name linked to ``name`` (decrypted), for admins."""
        me = self.session.authorize("manage_users", operation="user.show")
        row = self._cat._user_row(name)
        if row is None:
            raise NotFoundError(f"no user named {name!r}; `surgbox users list` shows them")
        self._cat.audit.record(me.name, "user.show", name, "ok")
        return None if row["physician_enc"] is None else self._cat.phi.decrypt(row["physician_enc"], f"users.physician:{row['id']}")

    def _set_disabled(self, name: str, disabled: bool) -> User:
        op = "user.disable" if disabled else "user.enable"
        me = self.session.authorize("manage_users", operation=op)
        with self._cat.db.transaction() as c:
            row = c.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFoundError(f"no user named {name!r}; `surgbox users list` shows them")
            if disabled and row["role"] == "admin" and not row["disabled"]:
                admins = c.execute("SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0").fetchone()[0]
                if admins <= 1:
                    raise CatalogError(f"{name!r} is the last enabled admin; add another admin before disabling it")
            c.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), row["id"]))
            self._cat.audit.append(c, me.name, op, name, "ok")
        return self._get(name)

    def disable(self, name: str) -> User:
        """Disable an account (it can no longer log in; open sessions lose access at their next call)."""
        return self._set_disabled(name, True)

    def enable(self, name: str) -> User:
        return self._set_disabled(name, False)

    def unlock(self, name: str) -> User:
        """Clear a lockout and the failure count."""
        me = self.session.authorize("manage_users", operation="user.unlock")
        with self._cat.db.transaction() as c:
            n = c.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE name = ?", (name,)).rowcount
            if not n:
                raise NotFoundError(f"no user named {name!r}; `surgbox users list` shows them")
            self._cat.audit.append(c, me.name, "user.unlock", name, "ok")
        return self._get(name)

    def set_password(self, name: str, new_password: str, *, current_password: str | None = None) -> None:
        """Change a password: one's own (needs ``current_password``), or anybody's with ``manage_users``."""
        import argon2

        me = self.session.current_user()
        if name == me.name and current_password is not None:
            row = self._cat._user_row(name)
            try:
                self._cat._hasher.verify(row["password_hash"], current_password)
            except argon2.exceptions.VerificationError:
                self._cat.audit.record(me.name, "user.passwd", name, "failed", {"reason": "wrong current password"})
                raise AuthenticationError("the current password is wrong; the password was not changed") from None
        else:
            me = self.session.authorize("manage_users", operation="user.passwd")
        pw_hash = self._cat._hash_password(new_password)
        with self._cat.db.transaction() as c:
            n = c.execute("UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE name = ?",
                          (pw_hash, name)).rowcount
            if not n:
                raise NotFoundError(f"no user named {name!r}; `surgbox users list` shows them")
            self._cat.audit.append(c, me.name, "user.passwd", name, "ok")


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
        recs = self.session.catalog.audit.records(**filters)
        self.session.catalog.audit.record(me.name, "audit.show", None, "ok", {"count": len(recs)})
        return recs

    def verify(self) -> VerifyResult:
        """Verify the whole chain (see :meth:`AuditLog.verify`); the check itself is audited after it ran."""
        me = self.session.authorize("view_audit", operation="audit.verify")
        result = self.session.catalog.audit.verify()
        self.session.catalog.audit.record(me.name, "audit.verify", None, "ok" if result.ok else "failed",
                                          {"records": result.records, "problems": len(result.problems)})
        return result


__all__ = ["ROLES", "AuditView", "Catalog", "Session", "UserManager", "check_user_name"]
