"""Users and roles: the full role x action permission matrix (decision and API), per-event access,
passwords, lockout, disabling."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from surgbox.catalog import (
    ACTIONS,
    ROLES,
    AccessDenied,
    AuthenticationError,
    Catalog,
    CatalogError,
    NotFoundError,
    PasswordPolicy,
    User,
    allowed,
    install_home,
)

# The specification, written out independently of surgbox.catalog.users.PERMISSIONS:
# "all" = any event, "own" = only the user's own events, None = denied.
SPEC = {
    "admin": dict.fromkeys(ACTIONS, "all"),
    "surgeon": {"record": "own", "view": "own", "export": "own", "deidentify": "own", "upload": "own",
                "delete": None, "manage_users": None, "view_audit": None},
    "operator": {"record": "all", "view": "all", "export": None, "deidentify": "all", "upload": "all",
                 "delete": None, "manage_users": None, "view_audit": None},
    "viewer": {"record": None, "view": "all", "export": None, "deidentify": None, "upload": None,
               "delete": None, "manage_users": None, "view_audit": None},
    "auditor": {"record": None, "view": None, "export": None, "deidentify": None, "upload": None,
                "delete": None, "manage_users": None, "view_audit": "all"},
}
MATRIX = [(r, a) for r in ROLES for a in ACTIONS]
FAST = PasswordPolicy(time_cost=1, memory_kib=8192, parallelism=1)


def test_spec_covers_every_role_and_action():
    assert set(SPEC) == set(ROLES) == {"admin", "surgeon", "operator", "viewer", "auditor"}
    assert set(ACTIONS) == {"record", "view", "export", "deidentify", "upload", "delete", "manage_users", "view_audit"}


@pytest.mark.parametrize("role,action", MATRIX)
def test_permission_decision(role, action):
    user = User(1, "u", role)
    want = SPEC[role][action]
    assert allowed(user, action) is (want is not None)
    assert allowed(user, action, owns_event=True) is (want is not None)
    assert allowed(user, action, owns_event=False) is (want == "all")
    assert allowed(User(1, "u", role, disabled=True), action, owns_event=True) is False


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One catalog with a user per role (the surgeon linked to physician 'Dr. Mia Sands') and events."""
    home = install_home(tmp_path_factory.mktemp("perm") / "home", "admin", "admin-password")
    cat = Catalog(home, policy=FAST).open()
    admin = cat.login("admin", "admin-password")
    for role in ROLES:
        admin.users.add(f"u_{role}", role, f"{role}-password", physician="Dr. Mia Sands" if role == "surgeon" else None)
    sessions = {role: cat.login(f"u_{role}", f"{role}-password") for role in ROLES}
    yield cat, admin, sessions
    cat.close()


def new_event(admin, physicians):
    ev = admin.events.create(patient="Pat Example", medical_record="MRN-1", procedure="Hernia repair",
                             physicians=physicians, place="OR 1")
    admin.events.write_file(ev.id, "segment", "segment-0001.mp4", b"video")
    return ev


def attempt(session, action, ev, tmp_path):
    """The API call that needs ``action`` (upload is checked by the upload feature through authorize)."""
    e = session.events
    if action == "record":
        return e.start_event(ev.id)
    if action == "view":
        return e.get(ev.id)
    if action == "export":
        return e.export(ev.id, tmp_path / "x")
    if action == "deidentify":
        return e.write_file(ev.id, "deid", "deid-0001.mp4", b"blurred")
    if action == "upload":  # checked by the upload feature, with the event id it was given
        return session.authorize("upload", ev.id, operation="event.upload")
    if action == "delete":
        return e.delete(ev.id)
    if action == "manage_users":
        return session.users.list()
    if action == "view_audit":
        return session.audit.verify()
    raise AssertionError(action)


@pytest.mark.parametrize("owned", [True, False], ids=["own-event", "other-event"])
@pytest.mark.parametrize("role,action", MATRIX)
def test_permission_matrix_through_the_api(world, tmp_path, role, action, owned):
    cat, admin, sessions = world
    s = sessions[role]
    event_actions = {"record", "view", "export", "deidentify", "upload", "delete"}
    ev = new_event(admin, ["Dr. Mia Sands"] if owned else ["Dr. Someone Else"]) if action in event_actions else None
    want = SPEC[role][action]
    ok = want == "all" or (want == "own" and (owned or ev is None))
    before = cat.audit.records(newest_first=True, limit=1)[0].seq
    if ok:
        attempt(s, action, ev, tmp_path)
    else:
        with pytest.raises(AccessDenied) as err:
            attempt(s, action, ev, tmp_path)
        assert err.value.action == action and err.value.role == role
        denied = [r for r in cat.audit.records(since_seq=before) if r.result == "denied"]
        assert len(denied) == 1 and denied[0].actor == s.user.name
        assert denied[0].detail["permission"] == action
        if ev is not None:
            assert denied[0].target == ev.id


@pytest.mark.parametrize("role", ROLES)
def test_creating_events_needs_record(world, role):
    s = world[2][role]
    if SPEC[role]["record"]:
        assert s.events.create(patient="P Q", medical_record="M", procedure="X").created_by == s.user.name
    else:
        with pytest.raises(AccessDenied):
            s.events.create(patient="P Q", medical_record="M", procedure="X")


def test_surgeon_sees_only_own_events(world):
    cat, admin, sessions = world
    mine = new_event(admin, ["Dr. Mia Sands", "Dr. X"])
    other = new_event(admin, ["Dr. Someone Else"])
    surgeon = sessions["surgeon"]
    created = surgeon.events.create(patient="P Q", medical_record="M2", procedure="Y", physicians=[])  # created by them
    seen = {e.id for e in surgeon.events.list(limit=1000)}
    assert mine.id in seen and created.id in seen and other.id not in seen
    assert {e.id for e in surgeon.events.search(text="hernia", limit=1000)} >= {mine.id}
    assert other.id not in {e.id for e in surgeon.events.search(text="hernia", limit=1000)}
    assert other.id in {e.id for e in sessions["viewer"].events.list(limit=1000)}
    with pytest.raises(AccessDenied):
        surgeon.events.get(other.id)


def test_unknown_event_is_not_revealed_to_unauthorized_roles(world):
    _, _, sessions = world
    with pytest.raises(AccessDenied):
        sessions["auditor"].events.get("ev-20990101-00000000")


@pytest.mark.parametrize("role", ROLES)
def test_pipelines_check_deidentify_and_upload_by_event_id(world, role):
    """How the de-identification and upload pipelines ask: session.authorize(action, event id); the
    decision follows the matrix (own/other event), refusals and unknown ids are audited, and the
    pipeline records what it did with session.record_action."""
    cat, admin, sessions = world
    s = sessions[role]
    own, other = new_event(admin, ["Dr. Mia Sands"]), new_event(admin, ["Dr. Someone Else"])
    for action in ("deidentify", "upload"):
        want = SPEC[role][action]
        for ev, owned in ((own, True), (other, False)):
            op = f"event.{action}"
            if want == "all" or (want == "own" and owned):
                assert s.authorize(action, ev.id, operation=op).name == s.user.name
                rec = s.record_action(op, ev.id, detail={"files": 1})
                assert (rec.actor, rec.action, rec.target, rec.result) == (s.user.name, op, ev.id, "ok")
            else:
                with pytest.raises(AccessDenied):
                    s.authorize(action, ev.id, operation=op)
                last = cat.audit.records(newest_first=True, limit=1)[0]
                assert (last.action, last.target, last.result) == (op, ev.id, "denied")
        # an unknown id: NotFoundError only for roles that may take the action on some event
        with pytest.raises(NotFoundError if want else AccessDenied):
            s.authorize(action, "ev-20990101-00000000")
    with pytest.raises(CatalogError, match="unknown action 'deidentfy'"):
        s.authorize("deidentfy", own.id)
    with pytest.raises(CatalogError, match="not an event id"):
        s.record_action("event.upload", "Jane Roe")


@pytest.fixture
def cat(surgbox_home):
    clock = Clock(datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc))
    with Catalog(surgbox_home, now=clock, policy=PasswordPolicy(max_failures=3, lockout_minutes=10, time_cost=1,
                                                                 memory_kib=8192, parallelism=1)) as c:
        yield c


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def test_wrong_password_and_unknown_user(cat):
    with pytest.raises(AuthenticationError, match="wrong user name or password"):
        cat.login("admin", "nope-nope")
    with pytest.raises(AuthenticationError, match="wrong user name or password"):
        cat.login("ghost", "whatever1")
    recs = cat.audit.records(action="user.login")
    assert [(r.actor, r.result, r.detail["reason"]) for r in recs[-2:]] == [
        ("admin", "failed", "wrong password"), ("ghost", "failed", "unknown user")]
    assert cat.login("admin", "admin-password").user.failed_logins == 0


def test_lockout_after_repeated_failures_and_expiry(cat):
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="wrong user name or password"):
            cat.login("admin", "bad-password")
    # issue 18.7: the same answer as an unknown name (was "now locked for 10 minutes"); the audit says why
    with pytest.raises(AuthenticationError, match="wrong user name or password"):
        cat.login("admin", "bad-password")
    assert cat.audit.records(action="user.login")[-1].detail["locked_until"]
    with pytest.raises(AuthenticationError, match="locked"):
        cat.login("admin", "admin-password")  # even the right password
    cat.now.t += timedelta(minutes=9)
    with pytest.raises(AuthenticationError, match="locked"):
        cat.login("admin", "admin-password")
    cat.now.t += timedelta(minutes=2)
    s = cat.login("admin", "admin-password")
    assert s.user.failed_logins == 0 and s.user.locked_until is None
    reasons = [r.detail.get("reason") for r in cat.audit.records(action="user.login")]
    assert reasons.count("locked") == 2


def test_admin_unlocks_and_success_resets_the_count(cat):
    s = cat.login("admin", "admin-password")
    s.users.add("op", "operator", "operator-pw")
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            cat.login("op", "wrong-pw-1")
    with pytest.raises(AuthenticationError, match="locked"):
        cat.login("op", "operator-pw")
    s.users.unlock("op")
    cat.login("op", "operator-pw")
    with pytest.raises(AuthenticationError):
        cat.login("op", "wrong-pw-1")
    cat.login("op", "operator-pw")  # resets
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="wrong user name"):
            cat.login("op", "wrong-pw-1")
    cat.login("op", "operator-pw")


def test_disable_enable_and_last_admin(cat):
    s = cat.login("admin", "admin-password")
    s.users.add("v", "viewer", "viewer-pw1")
    v = cat.login("v", "viewer-pw1")
    v.events.list()
    s.users.disable("v")
    with pytest.raises(AccessDenied):
        v.events.list()  # an open session loses access at its next call
    with pytest.raises(AuthenticationError, match="disabled"):
        cat.login("v", "viewer-pw1")
    s.users.enable("v")
    cat.login("v", "viewer-pw1")
    with pytest.raises(CatalogError, match="last enabled admin"):
        s.users.disable("admin")


def test_passwords_hashed_with_argon2id_and_changed(cat):
    s = cat.login("admin", "admin-password")
    s.users.add("dr", "surgeon", "surgeon-pw", physician="Dr. Q")
    h = cat.db.query_one("SELECT password_hash FROM users WHERE name = 'dr'")[0]
    assert h.startswith("$argon2id$") and "surgeon-pw" not in h
    with pytest.raises(CatalogError, match="at least 8"):
        s.users.add("x", "viewer", "short")
    with pytest.raises(CatalogError, match="unknown role"):
        s.users.add("x", "janitor", "long-enough")
    with pytest.raises(CatalogError, match="user name 'bad name' is not valid"):
        s.users.add("bad name", "viewer", "long-enough")
    with pytest.raises(CatalogError, match="already exists"):
        s.users.add("dr", "viewer", "long-enough")
    dr = cat.login("dr", "surgeon-pw")
    with pytest.raises(AuthenticationError, match="current password is wrong"):
        dr.users.set_password("dr", "new-password", current_password="nope")
    dr.users.set_password("dr", "new-password", current_password="surgeon-pw")
    with pytest.raises(AccessDenied):
        dr.users.set_password("admin", "hijacked!!")
    cat.login("dr", "new-password")
    s.users.set_password("dr", "admin-set-pw")
    cat.login("dr", "admin-set-pw")
    assert s.users.physician_of("dr") == "Dr. Q"


def cli(*args, user="admin", password="admin-password", **env):
    e = {**os.environ, "SURGBOX_USER": user, "SURGBOX_PASSWORD": password, **env}
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True, env=e, timeout=120)


def test_users_cli(surgbox_home):
    assert cli("users", "add", "mia", "--role", "surgeon", "--password", "mia-password", "--physician", "Dr. Mia").returncode == 0
    out = cli("users", "list")
    assert out.returncode == 0 and "mia" in out.stdout and "surgeon" in out.stdout
    out = cli("users", "list", user="mia", password="mia-password")
    assert out.returncode == 1 and "may not manage_users" in out.stderr
    assert cli("users", "passwd", "mia", user="mia", password="mia-password", SURGBOX_NEW_PASSWORD="mia-password-2").returncode == 0
    assert cli("events", "list", user="mia", password="mia-password-2").returncode == 0
    assert cli("users", "disable", "mia").returncode == 0
    out = cli("events", "list", user="mia", password="mia-password-2")
    assert out.returncode == 1 and "disabled" in out.stderr
    assert cli("users", "enable", "mia").returncode == 0
    for _ in range(5):
        cli("events", "list", user="mia", password="wrong-password")
    out = cli("events", "list", user="mia", password="mia-password-2")
    assert out.returncode == 1 and "locked" in out.stderr
    assert cli("users", "unlock", "mia").returncode == 0
    assert cli("events", "list", user="mia", password="mia-password-2").returncode == 0


def cli_on_terminal(*args, answers=(), timeout=60, **env):
    """Run the CLI on a pseudo-terminal (its controlling terminal, so ``getpass`` reads /dev/tty as
    when a person types) and type ``answers`` in turn at each prompt (output ending in ': ').
    Returns ``(exit status, output, prompts seen)``."""
    import pty
    import select
    import time

    e = {k: v for k, v in os.environ.items() if k not in ("SURGBOX_PASSWORD", "SURGBOX_NEW_PASSWORD")}
    e.update(env)
    pid, fd = pty.fork()
    if pid == 0:  # child: the terminal is its stdin/stdout/stderr and controlling tty
        try:
            os.execve(sys.executable, [sys.executable, "-m", "surgbox", *args], e)
        finally:
            os._exit(127)
    out, since, prompts, pending = b"", 0, [], list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"CLI did not finish within {timeout} s; output so far: {out!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if out[since:].endswith(b": "):
                prompts.append(out[since:].decode().strip().splitlines()[-1])
                since = len(out)
                if pending:
                    os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace"), prompts


def test_users_passwd_own_password_typed_at_the_prompts(surgbox_home):
    """A non-admin changes their own password typing everything at the prompts (no environment
    passwords): the password typed to log in is the current password that authorizes the change."""
    assert cli("users", "add", "mia", "--role", "surgeon", "--password", "mia-password").returncode == 0
    rc, out, prompts = cli_on_terminal("users", "passwd", "mia", SURGBOX_USER="mia",
                                       answers=["mia-password", "mia-password-2", "mia-password-2"])
    assert rc == 0, out
    assert prompts == ["password for mia:", "new password for mia:", "again:"] and "password of mia changed" in out
    assert "mia-password" not in out  # typed without echo
    with Catalog(surgbox_home) as cat:
        assert cat.login("mia", "mia-password-2").user.name == "mia"
        with pytest.raises(AuthenticationError):
            cat.login("mia", "mia-password")
    # a wrong login password is refused before the new password is even asked for
    rc, out, prompts = cli_on_terminal("users", "passwd", "mia", SURGBOX_USER="mia", answers=["wrong-password"])
    assert rc == 1 and "login failed" in out and prompts == ["password for mia:"]
    # and nobody changes another user's password without manage_users
    assert cli("users", "add", "ops", "--role", "operator", "--password", "ops-password").returncode == 0
    rc, out, _ = cli_on_terminal("users", "passwd", "mia", SURGBOX_USER="ops", answers=["ops-password", "x" * 10, "x" * 10])
    assert rc == 1 and "may not manage_users" in out
