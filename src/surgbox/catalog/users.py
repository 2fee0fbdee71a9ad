"""Users, roles, the permission matrix, password hashing and lockout.

Roles and actions are fixed names; :data:`PERMISSIONS` maps each role to the actions it may
take and with what scope: :attr:`Scope.ALL` (any event) or :attr:`Scope.OWN` (only events the
user owns: events whose physicians include the user's linked physician name, or that the user
created). Anything not listed is denied (deny by default). :func:`allowed` is the single
decision function; :class:`~surgbox.catalog.session.Session.authorize` calls it for every API
call and audits the outcome.

Passwords are hashed with Argon2id (``argon2-cffi``, RFC 9106 low-memory profile: 3 passes,
64 MiB, 4 lanes; parameters stored in each hash and upgraded on the next login). After
``max_failures`` wrong passwords in a row an account is locked for ``lockout_minutes``; while
locked even the right password is refused.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import argon2
import attrs

from .db import from_text

ROLES = ("admin", "surgeon", "operator", "viewer", "auditor")
# view_raw: read, export or play an event's raw copies (file kind raw: a source hidden live kept
# unhidden, encrypted, for a stated purpose; docs/security.md) -- only admins by default
ACTIONS = ("record", "view", "export", "deidentify", "upload", "delete", "manage_users", "view_audit", "view_raw")


class Scope(enum.Enum):
    """How far a permission reaches: every event, or only the user's own events."""

    ALL = "all"
    OWN = "own"


_A, _O = Scope.ALL, Scope.OWN

#: role -> action -> scope; a missing entry is a denial.
PERMISSIONS: Mapping[str, Mapping[str, Scope]] = {
    "admin": {a: _A for a in ACTIONS},
    "surgeon": {"record": _O, "view": _O, "export": _O, "deidentify": _O, "upload": _O},
    "operator": {"record": _A, "view": _A, "deidentify": _A, "upload": _A},
    "viewer": {"view": _A},
    "auditor": {"view_audit": _A},
}


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def check_action(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    return action


def scope(role: str, action: str) -> Scope | None:
    """The scope ``role`` has for ``action``, or ``None`` (denied)."""
    return PERMISSIONS.get(check_role(role), {}).get(check_action(action))


@attrs.frozen
class User:
    """A catalog account (no secrets: the password hash stays in the database).

    ``physician_hash`` is the blind-index hash of the physician name linked to the account (a
    surgeon's own events are found through it); the name itself is stored encrypted.
    """

    id: int
    name: str
    role: str
    disabled: bool = False
    failed_logins: int = 0
    locked_until: datetime | None = None
    created_at: datetime | None = None
    last_login: datetime | None = None
    physician_hash: bytes | None = attrs.field(default=None, repr=False)

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        d = {
            "id": self.id, "name": self.name, "role": self.role, "disabled": self.disabled,
            "failed_logins": self.failed_logins,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "last_login": self.last_login.isoformat() if self.last_login else None,
            "physician_linked": self.physician_hash is not None,
        }
        if now is not None:
            d["locked"] = self.locked(now)
        return d

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> User:
        return cls(row["id"], row["name"], row["role"], bool(row["disabled"]), row["failed_logins"],
                   from_text(row["locked_until"]), from_text(row["created_at"]), from_text(row["last_login"]),
                   None if row["physician_hash"] is None else bytes(row["physician_hash"]))


def allowed(user: User, action: str, *, owns_event: bool | None = None) -> bool:
    """The permission decision. ``owns_event``: ``None`` when the action is not about one event,
    else whether ``user`` owns it. A disabled user may do nothing."""
    if user.disabled:
        return False
    s = scope(user.role, action)
    if s is None:
        return False
    if s is Scope.OWN and owns_event is False:
        return False
    return True


def _whole(lo: int, hi: int) -> Any:
    """attrs validator: a whole number from ``lo`` to ``hi`` (a config value of another type or out
    of range is a ValueError naming the setting, never the hasher's TypeError/OverflowError)."""
    def check(inst: Any, attr: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{attr.name!r} must be a whole number from {lo} to {hi}, got {value!r}")
    return check


def _minutes(inst: Any, attr: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 525600:
        raise ValueError(f"{attr.name!r} must be a number of minutes above 0 (at most 525600), got {value!r}")


@attrs.frozen
class PasswordPolicy:
    """Lockout and password rules: ``max_failures`` wrong passwords in a row lock an account for
    ``lockout_minutes``; passwords need ``min_length`` characters; the Argon2id cost parameters."""

    max_failures: int = attrs.field(default=5, validator=_whole(1, 1000))
    lockout_minutes: float = attrs.field(default=15.0, validator=_minutes)
    min_length: int = attrs.field(default=8, validator=_whole(1, 1024))
    time_cost: int = attrs.field(default=3, validator=_whole(1, 100))
    memory_kib: int = attrs.field(default=65536, validator=_whole(8, 1 << 22))  # up to 4 GiB per login
    parallelism: int = attrs.field(default=4, validator=_whole(1, 255))

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> PasswordPolicy:
        names = {f.name for f in attrs.fields(cls)}
        unknown = set(m) - names
        if unknown:
            raise ValueError(f"unknown [users] settings {sorted(unknown)}; known: {sorted(names)}")
        return cls(**m)

    def hasher(self) -> Any:
        return argon2.PasswordHasher(time_cost=self.time_cost, memory_cost=self.memory_kib,
                                     parallelism=self.parallelism, type=argon2.Type.ID)

    def check_password(self, password: str) -> None:
        if len(password) < self.min_length:
            raise ValueError(f"password too short: use at least {self.min_length} characters")
