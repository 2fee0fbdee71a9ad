"""Logging in, the lockout, and user administration (:class:`UserManager`).

A password check is one atomic step against the lockout: in a single ``BEGIN IMMEDIATE``
transaction the account is checked (exists, enabled, not locked) and one attempt is *reserved*
by counting it as a failure before the hash is even checked; a correct password clears the count
afterwards. So however many attempts run in parallel (threads, processes), at most
``max_failures`` of them check a hash before the account locks. Unknown, disabled and locked
accounts, and attempts refused because the reserved ones used up the limit, all get the same
answer after the same work (an Argon2 verification of a dummy hash), so none can be told apart
by the message or the time it took. The audit trail records the real reason.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import argon2
import attrs

from .audit import SYSTEM
from .db import to_text
from .errors import AccessDenied, AuthenticationError, CatalogError, NotFoundError
from .model import check_text
from .users import User, check_role

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_PASSWORD = 4096


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name, else :class:`CatalogError` naming it and the allowed form."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise CatalogError(f"user name {name!r} is not valid: use 1-64 letters, digits, '.', '_', '@' or '-', "
                           f"starting with a letter or digit (e.g. 'dr.sands')")
    return name


def refusal(name: str) -> AuthenticationError:
    """The one answer to every failed login (wrong password, unknown, disabled or locked account)."""
    return AuthenticationError(f"login failed for {name!r}: wrong user name or password, or the account is locked "
                               f"or disabled (an admin can run `surgbox users unlock NAME` or `surgbox users enable NAME`)")


def check_password(cat: Any, name: str, password: str, operation: str = "user.login") -> User:
    """Check ``password`` for account ``name`` against the lockout (see the module doc); returns
    the user, or raises the uniform :func:`refusal`. Every attempt is audited as ``operation``."""
    policy, audit = cat.policy, cat.audit
    valid_name = isinstance(name, str) and bool(_NAME.match(name))
    try:
        check_text(password, "password", limit=MAX_PASSWORD)
        usable = True
    except CatalogError:
        usable = False
    now = cat.now()
    with cat.db.transaction() as c:
        row = c.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone() if valid_name else None
        user = None if row is None else User.from_row(row)
        if user is None:
            reason = "unknown user"
        elif user.disabled:
            reason = "disabled"
        elif user.locked(now) or user.failed_logins >= policy.max_failures:
            reason = "locked"  # or as many attempts in flight as the limit allows
        elif not usable:
            reason = "password is not valid UTF-8"
        else:
            c.execute("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?", (user.id,))  # reserve
            reason = None
        if reason is not None:
            audit.append(c, user.name if user else (name if valid_name else "?"), operation,
                         user.name if user else None, "failed", {"reason": reason})
    if reason is not None:
        cat.dummy_verify(password if usable else "")
        raise refusal(name if valid_name else "?")
    try:
        cat.hasher.verify(row["password_hash"], password)
        ok = True
    except argon2.exceptions.VerificationError:
        ok = False
    with cat.db.transaction() as c:
        if ok:
            new_hash = cat.hasher.hash(password) if cat.hasher.check_needs_rehash(row["password_hash"]) else None
            c.execute("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login = ?, "
                      "password_hash = coalesce(?, password_hash) WHERE id = ?",
                      (to_text(now) if operation == "user.login" else row["last_login"], new_hash, user.id))
            audit.append(c, user.name, operation, user.name, "ok", {"rehashed": new_hash is not None})
        else:
            failed = c.execute("SELECT failed_logins FROM users WHERE id = ?", (user.id,)).fetchone()[0]
            detail: dict[str, Any] = {"reason": "wrong password", "failures": failed}
            if failed >= policy.max_failures:
                until = now + timedelta(minutes=policy.lockout_minutes)
                c.execute("UPDATE users SET failed_logins = 0, locked_until = ? WHERE id = ?", (to_text(until), user.id))
                detail.update(locked_until=to_text(until))
            audit.append(c, user.name, operation, user.name, "failed", detail)
    if not ok:
        raise refusal(name)
    return cat.user_by_id(user.id)


@attrs.define(eq=False)
class UserManager:
    """User administration for a session (``manage_users``), and changing one's own password."""

    session: Any

    @property
    def _cat(self) -> Any:
        return self.session.catalog

    def _get(self, name: str) -> User:
        row = self._cat.user_row(name)
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
        if physician is not None:
            check_text(physician, "physician", limit=1024)
        pw_hash = self._cat.hash_password(password)
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
        row = self._cat.user_row(name)
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
        """Change a password: one's own (needs ``current_password``; refused for a disabled
        account, and a wrong one counts towards the lockout like a wrong login), or anybody's
        with ``manage_users``."""
        me = self.session.current_user()
        if name == me.name and current_password is not None:
            if me.disabled:
                self._cat.audit.record(me.name, "user.passwd", name, "denied", {"reason": "disabled"})
                raise AccessDenied(me.name, me.role, "change a password", hint="the account is disabled")
            try:
                check_password(self._cat, name, current_password, operation="user.passwd")
            except AuthenticationError:
                raise AuthenticationError("the current password is wrong (or the account is locked); "
                                          "the password was not changed") from None
        else:
            me = self.session.authorize("manage_users", operation="user.passwd")
        pw_hash = self._cat.hash_password(new_password)
        with self._cat.db.transaction() as c:
            n = c.execute("UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE name = ?",
                          (pw_hash, name)).rowcount
            if not n:
                raise NotFoundError(f"no user named {name!r}; `surgbox users list` shows them")
            self._cat.audit.append(c, me.name, "user.passwd", name, "ok")


def bootstrap_admin(cat: Any, name: str, password: str) -> User:
    """Create the first admin of an empty catalog (``surgbox init``); refuses if any user exists."""
    check_user_name(name)
    pw_hash = cat.hash_password(password)
    with cat.db.transaction() as c:
        if c.execute("SELECT count(*) FROM users").fetchone()[0]:
            raise CatalogError("the catalog already has users; log in as an admin and use `surgbox users add`")
        cur = c.execute("INSERT INTO users(name, role, password_hash, created_at) VALUES (?, 'admin', ?, ?)",
                        (name, pw_hash, to_text(cat.now())))
        cat.audit.append(c, SYSTEM, "user.create", name, "ok", {"role": "admin", "bootstrap": True})
    return cat.user_by_id(cur.lastrowid)
