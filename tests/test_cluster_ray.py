"""Issue 17 on a real local Ray with 2 CPUs (not mocked): a worker killed mid-task is retried and the
result is correct; an interrupted batch resumes without redoing finished recordings; nothing
decrypted is left on disk after success and after failure. Ray is started once for the module
and shut down after it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from cluster_fixtures import face_video
from surgbox.deid.audit import read_audit
from test_cluster_batch import fast_options, frame_times, hidden, plaintext_files

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_dir():
    """Ray on 2 CPUs, no dashboard, no usage statistics; its session files in a folder of ours
    (short: Ray's socket paths must stay under the Unix limit)."""
    import os
    import shutil

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    d = tempfile.mkdtemp(prefix="sbray", dir="/tmp")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, configure_logging=False, log_to_driver=False,
             _temp_dir=d)
    try:
        yield Path(d)
    finally:
        ray.shutdown()
        shutil.rmtree(d, ignore_errors=True)


def _backend(**kw):
    from surgbox.cluster.backends import RayCluster

    return RayCluster(None, 2, **kw)


def test_a_ray_worker_killed_mid_task_is_retried_and_the_result_is_correct(ray_dir, tmp_path):
    from surgbox.cluster.batch import Batch, PathInput
    from surgbox.deid import deidentify

    src = face_video(tmp_path / "case.mp4", frames=30, fps=10, gop=10, visible=((3, 25),))
    deidentify(src, tmp_path / "single.mp4", options=fast_options(), audit=tmp_path / "single.jsonl")
    marker = tmp_path / "kill-once"
    marker.write_text("")
    seen: list[dict] = []
    work = tmp_path / "work"
    work.mkdir()
    backend = _backend(max_retries=2)
    summary = Batch(fast_options(), backend, segment_seconds=1.5, emit=seen.append, fail_marker=str(marker),
                    work_dir=str(work), audit_template=str(tmp_path / "{name}.audit.jsonl")).run(
        [PathInput(src, tmp_path / "case.deid.mp4")])
    assert summary["done"] == [str(src)] and summary["failed"] == []
    assert not marker.exists()  # a worker killed itself (kill -9) in the middle of its task
    tasks = [e for e in seen if e["event"] == "task"]
    assert len(tasks) == 2 and all(t["state"] == "done" for t in tasks)
    assert max(backend.attempts.values()) == 2  # the lost task ran a second time
    assert len({t["worker_pid"] for t in tasks}) >= 1
    assert frame_times(str(tmp_path / "case.deid.mp4")) == frame_times(str(tmp_path / "single.mp4"))
    _, want, _ = read_audit(tmp_path / "single.jsonl")
    _, got, _ = read_audit(tmp_path / "case.audit.jsonl")
    assert sum(bool(f["regions"]) for f in want) >= 15 and hidden(got) == hidden(want)
    assert list(work.iterdir()) == []
    assert ray.is_initialized()  # the module's Ray was not shut down by the batch


class _Stop(Exception):
    pass


def test_an_interrupted_event_batch_resumes_and_leaves_nothing_decrypted(ray_dir, surgbox_home, tmp_path):
    from surgbox.catalog import Catalog
    from surgbox.cluster.batch import Batch, EventInput
    from surgbox.cluster.state import TaskState

    video = face_video(tmp_path / "v.mp4", frames=20, fps=10, gop=10, visible=((2, 15),))
    data = video.read_bytes()
    video.unlink()
    broken = data[: len(data) // 3]
    work = tmp_path / "work"
    work.mkdir()
    with Catalog(surgbox_home) as cat:
        s = cat.login("admin", "admin-password")
        ids = []
        for _ in range(2):
            ev = s.events.create(patient="Pat Example", medical_record="MRN-1", procedure="Biopsy")
            s.events.write_file(ev.id, "segment", "segment-0001.mp4", data)
            ids.append(ev.id)
        bad = s.events.create(patient="Pat Other", medical_record="MRN-2", procedure="Biopsy")
        s.events.write_file(bad.id, "segment", "segment-0001.mp4", broken)
        inputs = [EventInput(e, "segment-0001.mp4", s.events.get(e).file("segment-0001.mp4").id)
                  for e in (*ids, bad.id)]

        def stop_after_first(e: dict) -> None:
            if e["event"] == "recording" and e["state"] == "done":
                raise _Stop  # as a Ctrl-C would, once one recording is stored

        batch = Batch(fast_options(), _backend(), segment_seconds=1.0, session=s, emit=stop_after_first,
                      work_dir=str(work))
        with pytest.raises(_Stop):
            batch.run(inputs)
        done_first = [e for e in ids if any(f.kind == "deid" for f in s.events.get(e).files)]
        assert len(done_first) == 1
        assert list(work.iterdir()) == [] and plaintext_files(work, surgbox_home.path) == []
        # the rerun (same inputs and settings: same batch id) skips the stored one, does the other
        seen: list[dict] = []
        again = Batch(fast_options(), _backend(), segment_seconds=1.0, session=s, emit=seen.append,
                      work_dir=str(work))
        summary = again.run(inputs)
        assert again.batch == batch.batch
        assert summary["skipped"] == [f"{done_first[0]}/segment-0001.mp4"]
        assert summary["failed"] == [f"{bad.id}/segment-0001.mp4"]
        assert summary["done"] == [f"{e}/segment-0001.mp4" for e in ids if e not in done_first]
        assert {e["recording"] for e in seen if e["event"] == "task"} == set(summary["done"])
        for e in ids:
            [copy] = [f for f in s.events.get(e).files if f.kind == "deid"]
            with s.events.open_file(e, copy.name) as f:
                assert len(frame_times(f)) == 20
        rows = TaskState(cat.db, batch.batch).rows()
        assert {r.state for r in rows if r.event_id in ids} == {"done"}
        finish = [a for a in cat.audit.records(action="deid_batch.finish")]
        assert [a.result for a in finish] == ["failed", "failed"] and finish[0].detail["interrupted"] is True
        assert cat.audit.verify().ok
    # nothing decrypted anywhere: the work folder, the home (store, catalog), Ray's session files
    assert list(work.iterdir()) == []
    assert plaintext_files(work, surgbox_home.path, ray_dir) == []
    assert json.dumps(summary)  # the summary is JSON-ready
