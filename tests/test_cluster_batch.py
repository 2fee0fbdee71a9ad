"""Issue 17: ``surgbox deid-batch`` on the local process pool (no Ray): files and catalog events,
resume, retries, failures, task state in the catalog, clean temporary folders, CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_fixtures import cut_off, face_video
from surgbox.deid.audit import read_audit

FAST = ["--detector", "retinaface", "--detector-option", "scale=1.0", "--region", "full", "--carry", "2",
        "--max-gap", "2"]
PLAINTEXT = (b"ftyp", b"moof", b"mdat")


def fast_options():
    from surgbox.deid import DeidOptions

    return DeidOptions(region="full", detector="retinaface", detector_options={"scale": 1.0}, carry=2, max_gap=2)


def surgbox(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "surgbox", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def hidden(frames: list[dict]) -> list[tuple]:
    return [(f["frame"], f["pts"], [(tuple(round(v, 3) for v in r["box"]), r["kind"]) for r in f["regions"]])
            for f in frames]


def plaintext_files(*roots: Path) -> list[str]:
    """Files under ``roots`` that hold MP4 boxes in clear (a decrypted recording would)."""
    hits = []
    for root in roots:
        for p in Path(root).rglob("*"):
            try:
                if p.is_file() and any(b in p.read_bytes()[: 1 << 20] for b in PLAINTEXT):
                    hits.append(str(p))
            except OSError:
                pass
    return hits


def frame_times(path) -> list:
    import av

    with av.open(path) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """TMPDIR of this test (the pool's workers inherit it): what is left there is visible."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def test_cli_files_on_the_local_pool_match_a_single_pass_and_a_rerun_skips(tmp_path, private_tmp):
    src = face_video(tmp_path / "case.mp4", frames=40, fps=10, gop=10, visible=((5, 18), (24, 36)))
    single = tmp_path / "single.deid.mp4"
    r = surgbox("deid", str(src), str(single), *FAST, "--quiet", "--audit", str(tmp_path / "single.jsonl"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    out.mkdir()
    args = ["deid-batch", str(src), "--out-dir", str(out), "--cluster", "local", "--workers", "2",
            "--segment-seconds", "2", "--audit", str(out / "{name}.audit.jsonl"), *FAST]
    r = surgbox(*args, "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "end" and kinds.count("task") == 2
    tasks = [e for e in events if e["event"] == "task"]
    assert all(t["state"] == "done" and t["video_s"] == 2.0 and t["video_s_per_s"] > 0 and t["worker_peak_rss_mb"] > 0
               for t in tasks)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["tasks_done"] == 2 and progress[-1]["video_s_done"] == 4.0 and progress[-1]["eta_s"] == 0
    assert events[-1]["done"] == [str(src)] and events[-1]["failed"] == []
    dst = out / "case.deid.mp4"
    assert frame_times(str(dst)) == frame_times(str(single))
    _, want, _ = read_audit(tmp_path / "single.jsonl")
    _, got, summary = read_audit(out / "case.audit.jsonl")
    assert sum(bool(f["regions"]) for f in want) >= 20 and hidden(got) == hidden(want)
    assert summary["complete"] and summary["frames"] == 40
    assert list(private_tmp.iterdir()) == []  # task and spool folders removed
    # a rerun resumes: the finished recording is skipped, its output untouched
    mtime = dst.stat().st_mtime_ns
    r = surgbox(*args)
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stderr and "0 done, 1 skipped, 0 failed" in r.stdout
    assert dst.stat().st_mtime_ns == mtime


def test_a_pool_worker_killed_mid_task_is_retried_and_the_result_is_complete(tmp_path, private_tmp):
    from surgbox.cluster.backends import LocalPool
    from surgbox.cluster.batch import Batch, PathInput

    src = face_video(tmp_path / "case.mp4", frames=30, fps=10, gop=10, visible=((3, 25),))
    marker = tmp_path / "kill-once"
    marker.write_text("")
    seen: list[dict] = []
    batch = Batch(fast_options(), LocalPool(2, max_retries=2), segment_seconds=1.5, emit=seen.append,
                  fail_marker=str(marker))
    out = tmp_path / "case.deid.mp4"
    summary = batch.run([PathInput(src, out)])
    assert summary["done"] == [str(src)] and summary["failed"] == []
    assert not marker.exists()  # a worker did kill itself
    attempts = sorted(e["attempts"] for e in seen if e["event"] == "task")
    assert attempts[-1] >= 2 and all(e["state"] == "done" for e in seen if e["event"] == "task")
    assert len(frame_times(str(out))) == 30
    assert list(private_tmp.iterdir()) == []


def _event_with(cat_session, data: bytes, name: str = "segment-0001.mp4") -> str:
    ev = cat_session.events.create(patient="Pat Example", medical_record="MRN-1", procedure="Biopsy")
    cat_session.events.write_file(ev.id, "segment", name, data)
    return ev.id


def test_events_are_stored_encrypted_with_state_audit_and_a_failure_leaves_nothing(surgbox_home, tmp_path,
                                                                                   private_tmp):
    from surgbox.catalog import Catalog
    from surgbox.cluster.backends import LocalPool
    from surgbox.cluster.batch import Batch, EventInput
    from surgbox.cluster.state import TaskState

    good = face_video(tmp_path / "good.mp4", frames=30, fps=10, gop=10, visible=((3, 25),)).read_bytes()
    broken = good[: len(good) // 2]  # cut: the index (moov) is at the end, so nothing can be read
    (tmp_path / "good.mp4").unlink()
    work = tmp_path / "work"
    work.mkdir()
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        e1, e2 = _event_with(s, good), _event_with(s, broken)
        inputs = [EventInput(e, "segment-0001.mp4", s.events.get(e).file("segment-0001.mp4").id) for e in (e1, e2)]
        seen: list[dict] = []
        batch = Batch(fast_options(), LocalPool(2), segment_seconds=1.5, session=s, emit=seen.append,
                      work_dir=str(work))
        summary = batch.run(inputs)
        assert summary["done"] == [f"{e1}/segment-0001.mp4"] and summary["failed"] == [f"{e2}/segment-0001.mp4"]
        files = {f.name: f for f in s.events.get(e1).files}
        assert files["segment-0001.deid.mp4"].kind == "deid"
        assert files["segment-0001.deid.audit.jsonl"].kind == "data"
        with s.events.open_file(e1, "segment-0001.deid.mp4") as f:
            assert len(frame_times(f)) == 30
        with s.events.open_file(e1, "segment-0001.deid.audit.jsonl") as f:
            lines = [json.loads(x) for x in f.read().splitlines()]
        assert lines[-1]["frames"] == 30 and sum(bool(x.get("regions")) for x in lines) >= 20
        assert [f.kind for f in s.events.get(e2).files] == ["segment"]  # nothing stored for the failure
        rows = TaskState(cat.db, summary["batch"]).rows()
        assert {r.state for r in rows if r.event_id == e1} == {"done"} and len([r for r in rows if r.event_id == e1]) == 2
        actions = [(a.action, a.result) for a in cat.audit.records()]
        assert ("deid_batch.start", "ok") in actions and ("deid_batch.finish", "failed") in actions
        assert ("event.deidentify", "ok") in actions
        assert cat.audit.verify().ok
        # a rerun skips the finished recording and tries the failed one again
        seen.clear()
        again = Batch(fast_options(), LocalPool(2), segment_seconds=1.5, session=s, emit=seen.append,
                      work_dir=str(work)).run(inputs)
        assert again["skipped"] == [f"{e1}/segment-0001.mp4"] and again["failed"] == [f"{e2}/segment-0001.mp4"]
        assert not [e for e in seen if e["event"] == "task"]
    assert list(work.iterdir()) == [] and list(private_tmp.iterdir()) == []
    assert plaintext_files(work, private_tmp, surgbox_home.path) == []


@pytest.mark.parametrize("old", [2, 3])
def test_an_older_catalog_is_upgraded_in_place(tmp_path, monkeypatch, old):
    from surgbox.catalog import db as dbmod

    path = tmp_path / "c.db"
    monkeypatch.setattr(dbmod, "MIGRATIONS", dbmod.MIGRATIONS[:old])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", old)
    db = dbmod.Database(path).open(create=True)
    assert db.schema_version() == old and not db.query("SELECT name FROM sqlite_master WHERE name = 'deid_tasks'")
    db.close()
    monkeypatch.undo()
    db = dbmod.Database(path).open()
    assert db.schema_version() == dbmod.SCHEMA_VERSION >= 4
    assert db.query("SELECT name FROM sqlite_master WHERE name = 'deid_tasks'")
    from surgbox.cluster.state import TaskState

    st = TaskState(db, "b1")
    st.begin("E1", 7, [10, 5])
    st.mark(7, 0, "done", attempts=1, seconds=1.5)
    assert [r.state for r in st.rows()] == ["done", "pending"] and not st.finished(7)
    st.begin("E1", 7, [10, 5])  # a rerun keeps what is done
    assert [r.state for r in st.rows()] == ["done", "pending"]
    db.close()


@pytest.mark.parametrize("args, message", [
    ([], "give either --events QUERY or PATHS"),
    (["x.mp4"], "PATHS need --out-dir"),
    (["--events", "all", "x.mp4"], "not both or neither"),
    (["--events", "colour=red"], "--events field 'colour' is unknown"),
    (["--events", "procedure"], "is not FIELD=VALUE"),
    (["x.mp4", "-o", ".", "--cluster", "slurm"], "--cluster 'slurm' is not local, ray"),
    (["x.mp4", "-o", ".", "--segment-seconds", "-1"], "--segment-seconds must be >= 0"),
    (["x.mp4", "-o", ".", "--workers", "0"], "--workers must be >= 1"),
    (["x.mp4", "-o", ".", "--cluster", "local", "--gpus-per-task", "1"], "--gpus-per-task needs Ray"),
    (["x.mp4", "-o", "/nonexistent-dir"], "is not a folder"),
    (["missing.mp4", "-o", "."], "input 'missing.mp4' is not a file"),
    (["x.mp4", "-o", ".", "--carry", "-3"], "carry must be an integer"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "x.mp4").write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "surgbox", "deid-batch", *args], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("surgbox: error: ") and message in lines[0], r.stderr


def test_the_audit_sidecar_never_replaces_an_input_or_an_existing_file(tmp_path, private_tmp):
    """--audit '{name}.mp4' named the input itself: the joined audit was written over the
    recording after the run. Now refused (as an existing sidecar without --overwrite) up front."""
    src = face_video(tmp_path / "case.mp4", frames=10, fps=10, gop=10, visible=((2, 6),))
    original = src.read_bytes()
    kept = tmp_path / "case.a.jsonl"
    kept.write_text("kept")
    out = tmp_path / "out"
    out.mkdir()
    base = ["deid-batch", str(src), "--out-dir", str(out), "--cluster", "local", "--workers", "1", *FAST]
    for audit, msg in [(str(tmp_path / "{name}.mp4"), "is the input file"),
                       (str(out / "{name}.deid.mp4"), "is the output video"),
                       (str(tmp_path / "{name}.a.jsonl"), "exists; pass --overwrite")]:
        r = surgbox(*base, "--audit", audit)
        assert r.returncode == 1 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert src.read_bytes() == original and kept.read_text() == "kept" and list(out.iterdir()) == []
    r = surgbox(*base, "--audit", str(tmp_path / "{name}.a.jsonl"), "--overwrite", "--quiet")
    assert r.returncode == 0, r.stderr
    assert read_audit(kept)[2]["frames"] == 10 and src.read_bytes() == original


def test_one_inputs_output_is_never_another_input_of_the_batch(tmp_path, private_tmp):
    src = face_video(tmp_path / "case.mp4", frames=10, fps=10, gop=10, visible=((2, 6),))
    other = face_video(tmp_path / "case.deid.mp4", frames=10, fps=10, gop=10, visible=((1, 4),))
    before = other.read_bytes()
    r = surgbox("deid-batch", str(src), str(other), "--out-dir", str(tmp_path), "--cluster", "local", "--workers", "1",
                "--overwrite", *FAST)
    assert r.returncode == 1 and "is the input" in r.stderr and "inputs are never overwritten" in r.stderr, r.stderr
    assert other.read_bytes() == before


def test_without_ray_the_ray_modes_say_what_to_install(tmp_path):
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    (tmp_path / "x.mp4").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "noray")}
    for mode in ("ray", "ray://head:10001"):
        r = subprocess.run([sys.executable, "-m", "surgbox", "deid-batch", "x.mp4", "-o", ".", "--cluster", mode],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert "needs Ray, which is not installed" in r.stderr and "surgbox[cluster]" in r.stderr


def test_cli_events_query_stores_the_copy_and_status_lists_the_tasks(surgbox_home, tmp_path, private_tmp):
    from surgbox.catalog import Catalog

    data = face_video(tmp_path / "v.mp4", frames=20, fps=10, gop=10, visible=((2, 15),)).read_bytes()
    with Catalog(surgbox_home) as cat:
        eid = _event_with(cat.login("admin", "admin-password"), data)
    env = {"SURGBOX_USER": "admin", "SURGBOX_PASSWORD": "admin-password"}
    r = surgbox("deid-batch", "--events", f"id={eid}", "--cluster", "local", "--workers", "1",
                "--segment-seconds", "0", *FAST, env=env)
    assert r.returncode == 0, r.stderr
    assert "1 done, 0 skipped, 0 failed" in r.stdout and f"{eid}/segment-0001.mp4: done -> {eid}/segment-0001.deid.mp4" in r.stderr
    r = surgbox("deid-batch", "--events", "all", "--cluster", "local", *FAST, env=env)  # not stopped: nothing taken
    assert r.returncode == 0 and "0 done, 0 skipped, 0 failed" in r.stdout, r.stderr
    r = surgbox("deid-batch", "--status", "--json", env=env)
    [batch] = json.loads(r.stdout)
    assert batch["tasks"] == 1 and batch["done"] == 1
    r = surgbox("deid-batch", "--status", "--batch-id", batch["batch"], env=env)
    assert r.returncode == 0 and f"{eid} file" in r.stdout and "segment 0: done (attempts 1)" in r.stdout
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        assert sorted(f.kind for f in s.events.get(eid).files) == ["data", "deid", "segment"]
    assert plaintext_files(private_tmp, surgbox_home.path) == []


@pytest.mark.parametrize("keep", [5, 0.5], ids=["undecodable", "half"])
def test_a_recording_cut_off_by_a_crash_is_joined_as_a_single_pass_writes_it(tmp_path, private_tmp, keep):
    """A recording whose last packet is cut off (kill -9, then ``events recover``) failed the
    join ("segment 1 holds 39 frames, not its 40"): the batch now writes the frames that decode,
    with surgbox deid's warning and hiding the same regions, and --strict refuses it."""
    src = face_video(tmp_path / "case.mp4", frames=40, fps=10, gop=10, visible=((5, 18), (24, 36)), fragmented=True)
    whole = cut_off(src, keep)
    single = tmp_path / "single.deid.mp4"
    r = surgbox("deid", str(src), str(single), *FAST, "--quiet", "--audit", str(tmp_path / "single.jsonl"))
    assert r.returncode == 0 and "is incomplete" in r.stderr, r.stderr
    out = tmp_path / "out"
    out.mkdir()
    args = ["deid-batch", str(src), "--out-dir", str(out), "--cluster", "local", "--workers", "2",
            "--segment-seconds", "2", "--audit", str(out / "{name}.audit.jsonl"), *FAST]
    r = surgbox(*args)
    assert r.returncode == 0, r.stderr
    assert "1 done, 0 skipped, 0 failed" in r.stdout
    dst = out / "case.deid.mp4"
    frames = len(frame_times(str(single)))  # half a packet may decode (to a damaged picture); 5 bytes never do
    assert f"is incomplete (1 video packet(s) at its end are cut off or corrupt); the {frames} frames" in r.stderr
    assert frames == whole if keep == 5 else frames in (whole, whole + 1)
    assert frame_times(str(dst)) == frame_times(str(single))
    _, want, _ = read_audit(tmp_path / "single.jsonl")
    _, got, _ = read_audit(out / "case.audit.jsonl")
    assert sum(bool(f["regions"]) for f in want) >= 15 and hidden(got) == hidden(want)
    r = surgbox(*args, "--strict", "--overwrite")
    assert r.returncode == 1 and "is incomplete: its last 1 video packet(s) are cut off" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_join_that_fails_marks_every_task_failed_so_a_rerun_redoes_it(surgbox_home, tmp_path, private_tmp,
                                                                         monkeypatch):
    """Every segment was done and the join failed: --status said "2 done, 0 failed" and a
    rerun skipped the recording as "finished by this batch"."""
    from surgbox.catalog import Catalog
    from surgbox.cluster import segments
    from surgbox.cluster.backends import LocalPool
    from surgbox.cluster.batch import Batch, EventInput
    from surgbox.cluster.state import TaskState, all_batches
    from surgbox.errors import DeidError

    data = face_video(tmp_path / "v.mp4", frames=30, fps=10, gop=10, visible=((3, 25),)).read_bytes()
    real_join = segments.join

    def failing_join(*a, **kw):
        raise DeidError("segment 1 holds 9 frames, not its 10")

    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        eid = _event_with(s, data)
        inputs = [EventInput(eid, "segment-0001.mp4", s.events.get(eid).file("segment-0001.mp4").id)]
        monkeypatch.setattr(segments, "join", failing_join)
        summary = Batch(fast_options(), LocalPool(1), segment_seconds=1.5, session=s).run(inputs)
        assert summary["failed"] == [f"{eid}/segment-0001.mp4"]
        rows = TaskState(cat.db, summary["batch"]).rows()
        assert len(rows) == 2 and {(r.state, r.error) for r in rows} == {("failed", "segment 1 holds 9 frames, not its 10")}
        [listed] = all_batches(cat.db)
        assert (listed["done"], listed["failed"]) == (0, 2)
        monkeypatch.setattr(segments, "join", real_join)
        again = Batch(fast_options(), LocalPool(1), segment_seconds=1.5, session=s).run(inputs)
        assert again["done"] == [f"{eid}/segment-0001.mp4"] and again["skipped"] == []
        assert {r.state for r in TaskState(cat.db, again["batch"]).rows()} == {"done"}


def test_sigterm_stops_the_batch_at_once_and_leaves_nothing(tmp_path, private_tmp):
    import signal
    import time

    # one worker, two long tasks: when the first is done the second has just begun
    src = face_video(tmp_path / "case.mp4", frames=80, fps=10, gop=10, visible=((5, 30),))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "deid-batch", str(src), "--out-dir", str(out),
                             "--cluster", "local", "--workers", "1", "--segment-seconds", "4", *FAST],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(private_tmp)})
    t_start = time.monotonic()
    try:
        for line in proc.stderr:
            if line.startswith("overall: 1/"):
                break
        t_first = time.monotonic() - t_start
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert rc == 128 + signal.SIGTERM and "stopped by SIGTERM" in rest
    # the task in flight is not waited for (it would take about as long as the first one did)
    assert time.monotonic() - t0 < max(3.0, t_first / 4), (time.monotonic() - t0, t_first)
    assert list(out.iterdir()) == [] and list(private_tmp.iterdir()) == []


def test_auto_picks_ray_only_when_an_address_is_configured(monkeypatch):
    from surgbox.cluster.backends import LocalPool, RayCluster, make_backend

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert isinstance(make_backend("auto", workers=2, max_retries=1), LocalPool)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    b = make_backend("auto", workers=2, max_retries=1)
    assert isinstance(b, RayCluster) and b.address == "ray://head:10001" and b.max_retries == 1
    b = make_backend("ray", workers=2, max_retries=1, gpus_per_task=0.5)
    assert b.address is None and b.num_cpus == 2 and b.gpus_per_task == 0.5
