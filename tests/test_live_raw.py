"""The encrypted raw copy of a source hidden live (issue 15 item 3): ``keep_raw = "<purpose>"`` in
the source's table keeps the raw room view as a file of the event of kind ``raw``, readable only
by roles with ``view_raw``; the recording itself keeps only the hidden frames. Real catalog,
real encrypted store, real recordings (file source, libx264), real decoding."""

from __future__ import annotations

import io
import json

import av
import pytest
from live_fixtures import FPS, H, W, decode_luma, exposed, read_code, room_layout, write_video
from test_live_deid import face_frame, plugins  # noqa: F401 - the fixture registering the magenta detector

from surgbox.catalog import AccessDenied, Catalog, install_home
from surgbox.catalog.recording_sink import EventSink
from surgbox.config import RecordConfig
from surgbox.errors import ConfigError

RAW = "segment-0001.mp4.raw-room.mp4"
USERS = {"op": "operator", "view": "viewer", "doc": "surgeon"}


def config(video, keep_raw="complication review", deidentify=True):
    room = {"plugin": "file", "path": str(video), "deidentify": deidentify, **({"keep_raw": keep_raw} if keep_raw else {})}
    return RecordConfig.from_mapping({
        "fps": FPS, "sources": {"room": room},
        "layout": {"slots": [s.to_dict() for s in room_layout().slots], "width": W, "height": H},
        "encoder": {"plugin": "libx264", "preset": "ultrafast", "crf": 18}, "deid": {"detector": "magenta"},
    })


@pytest.fixture
def recorded(tmp_path, plugins):  # noqa: F811
    """An event recorded by an operator with keep_raw on the room camera (2 s)."""
    plugins, _ = plugins
    home = install_home(tmp_path / "home", "admin", "admin-password")
    cfg = home.config_path.read_text()  # cheap Argon2: a fast test
    home.config_path.write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"))
    video = tmp_path / "room.mp4"
    truth = write_video(video, 4 * FPS, face_frame)
    with Catalog.at(home) as catalog:
        admin = catalog.login("admin", "admin-password")
        for name, role in USERS.items():
            admin.users.add(name, role, f"{name}-password-1", physician="Dr. Raw" if role == "surgeon" else None)
        ev = admin.events.create(patient="Pat Raw", medical_record="MRN-R", procedure="Hernia repair",
                                 physicians=["Dr. Raw"], place="OR 4")
        events = catalog.login("op", "op-password-1").events
        rec = config(video).build_recorder(plugins=plugins, output=EventSink(events=events, event_id=ev.id, report=False),
                                           duration=2.0, max_behind_s=30.0)
        rec.start()
        rec.wait(60)
        stats = rec.stop()
    return {"home": home, "event": ev.id, "stats": stats, "video": video, "truth": truth, "tmp": tmp_path}


def test_keep_raw_stores_an_encrypted_raw_file_only_view_raw_roles_read(recorded):
    home, event_id, truth = recorded["home"], recorded["event"], recorded["truth"]
    raw_src = decode_luma(recorded["video"])
    with Catalog.at(home) as catalog:
        admin = catalog.login("admin", "admin-password")
        ev = admin.events.get(event_id)
        kinds = {f.name: f.kind for f in ev.files}
        assert kinds[RAW] == "raw" and kinds["segment-0001.mp4"] == "segment"
        # the recording hides the face; the raw copy shows it (an authorised role reads it)
        with admin.events.open_file(event_id, "segment-0001.mp4") as f:
            seg = [(read_code(y), y) for y in _luma(f.read())]
        shown = [(c, y) for c, y in seg if c is not None]
        assert shown and not any(exposed(y, raw_src[c], truth[c][0]) for c, y in shown)
        with admin.events.open_file(event_id, RAW) as f:
            raw = [(read_code(y), y) for y in _luma(f.read())]
        assert len(raw) >= 1.5 * FPS and all(c is not None for c, _ in raw)
        assert sum(exposed(y, raw_src[c], truth[c][0]) for c, y in raw) >= 0.9 * len(raw)
        with admin.events.open_file(event_id, "segment-0001.mp4.json") as f:
            side = json.loads(f.read())
        room = next(s for s in side["sources"] if s["name"] == "room")
        assert room["deid"]["raw_copy"] == {"file": RAW, "purpose": "complication review"}
        assert side["stats"]["sources"]["room"]["source"]["deid"]["raw_copy"]["frames"] == len(raw)
        added = [r for r in admin.audit.records(limit=500) if r.action == "file.add" and r.detail.get("kind") == "raw"]
        assert len(added) == 1 and added[0].actor == "op"

        # a viewer sees the event but cannot read or play the raw copy (audited refusals)
        viewer = catalog.login("view", "view-password-1")
        assert RAW in {f.name for f in viewer.events.get(event_id).files}
        with pytest.raises(AccessDenied) as err, viewer.events.open_file(event_id, RAW):
            pass
        assert err.value.action == "view_raw" and "view_raw" in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(AccessDenied, match="view_raw"):
            viewer.events.play(event_id, ["cat"], names=[RAW])
        # a surgeon may export the event, but the raw copy stays out of it (and named, it is refused)
        doc = catalog.login("doc", "doc-password-1")
        out = doc.events.export(event_id, recorded["tmp"] / "export")
        assert "segment-0001.mp4" in out.files and RAW not in out.files
        assert not (recorded["tmp"] / "export" / RAW).exists()
        with pytest.raises(AccessDenied, match="view_raw"):
            doc.events.export(event_id, recorded["tmp"] / "export2", names=[RAW])
        denied = [r for r in admin.audit.records(limit=500) if r.result == "denied" and r.detail.get("permission") == "view_raw"]
        assert {r.actor for r in denied} == {"view", "doc"} and len(denied) == 3
        # an admin exports it
        assert RAW in admin.events.export(event_id, recorded["tmp"] / "export3").files


def _luma(data: bytes):
    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def test_keep_raw_into_a_plain_file_is_refused(tmp_path, plugins):  # noqa: F811
    """Plaintext raw video must not rest on disk: a plain-file output refuses keep_raw before any
    source starts, in one line, and leaves no file."""
    plugins, made = plugins
    video = tmp_path / "room.mp4"
    write_video(video, FPS, face_frame)
    rec = config(video).build_recorder(plugins=plugins, output=tmp_path / "rec.mp4", duration=1.0)
    with pytest.raises(ConfigError) as err:
        rec.start()
    assert "keep_raw needs an encrypted destination" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "rec.mp4").exists() and not made  # no detector was built: nothing started


@pytest.mark.parametrize("room, message", [
    ({"keep_raw": "review"}, "keep_raw applies to a source hidden live"),
    ({"keep_raw": "", "deidentify": True}, "keep_raw must be the purpose"),
    ({"keep_raw": 3, "deidentify": True}, "keep_raw must be the purpose"),
])
def test_bad_keep_raw_is_one_line(room, message):
    with pytest.raises(ConfigError) as err:
        RecordConfig.from_mapping({"sources": {"room": {"plugin": "testsrc", **room}},
                                   "layout": {"preset": "single", "sources": {"main": "room"}}})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_v4_catalog_takes_raw_files_after_the_upgrade(tmp_path, monkeypatch):
    """Schema 5 rebuilds the files table (kind raw): an existing catalog's files survive in place."""
    from surgbox.catalog import db as dbmod

    path = tmp_path / "c.db"
    monkeypatch.setattr(dbmod, "MIGRATIONS", dbmod.MIGRATIONS[:4])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", 4)
    db = dbmod.Database(path).open(create=True)
    cols = [r for r in db.query("PRAGMA table_info(events)") if r["notnull"] and r["dflt_value"] is None and r["name"] != "id"]
    values = {r["name"]: ("created" if r["name"] == "status" else b"x" if "BLOB" in r["type"] else "2026-12-01") for r in cols}
    with db.transaction() as c:
        c.execute(f"INSERT INTO events(id, {', '.join(values)}) VALUES ('e1', {', '.join('?' * len(values))})", tuple(values.values()))
        c.execute("INSERT INTO files(event_id, kind, name_enc, store_key, size, sha256, key_id, created_at) "
                  "VALUES ('e1', 'segment', x'00', 'k1', 5, ?, 'kid', '2026-12-01T00:00:00+00:00')", ("a" * 64,))
    with pytest.raises(Exception, match="CHECK"), db.transaction() as c:
        c.execute("INSERT INTO files(event_id, kind, name_enc, store_key, size, sha256, key_id, created_at) "
                  "VALUES ('e1', 'raw', x'00', 'k2', 5, ?, 'kid', '2026-12-01T00:00:00+00:00')", ("b" * 64,))
    db.close()
    monkeypatch.undo()
    db = dbmod.Database(path).open()
    assert db.schema_version() == dbmod.SCHEMA_VERSION >= 5
    with db.transaction() as c:
        c.execute("INSERT INTO files(event_id, kind, name_enc, store_key, size, sha256, key_id, created_at) "
                  "VALUES ('e1', 'raw', x'00', 'k2', 5, ?, 'kid', '2026-12-01T00:00:00+00:00')", ("b" * 64,))
    assert [tuple(r) for r in db.query("SELECT kind, store_key FROM files ORDER BY id")] == [("segment", "k1"), ("raw", "k2")]
    assert db.check() == []
    db.close()


def test_keep_raw_reaches_a_live_source_inside_another_wrapper(tmp_path, plugins):  # noqa: F811
    """deidentify + out_of_body on one source: the out-of-body wrapper hands the destination on,
    so a plain-file output still refuses keep_raw, and the sidecar keeps both entries."""
    plugins, _ = plugins
    video = tmp_path / "room.mp4"
    write_video(video, FPS, face_frame)
    cfg = RecordConfig.from_mapping({**_mapping(video), "sources": {"room": {"plugin": "file", "path": str(video),
                                     "deidentify": True, "out_of_body": True, "keep_raw": "review"}}})
    rec = cfg.build_recorder(plugins=plugins, output=tmp_path / "rec.mp4", duration=1.0)
    with pytest.raises(ConfigError, match="keep_raw needs an encrypted destination"):
        rec.start()
    src = rec.sources[0]
    assert set(src.sidecar_info()) == {"deid", "out_of_body"}


def _mapping(video):
    return {"fps": FPS, "layout": {"slots": [s.to_dict() for s in room_layout().slots], "width": W, "height": H},
            "encoder": {"plugin": "libx264", "preset": "ultrafast", "crf": 18}, "deid": {"detector": "magenta"}}
