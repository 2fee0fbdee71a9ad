"""Where the tasks run: a process pool on this machine (``local``) or Ray (``ray``, ``ray://``).

Both take :class:`Job` s (a segment's MP4 bytes, the segment, the options) and give back
``(job, SegmentResult)`` or ``(job, exception)`` as tasks finish, in any order, keeping at most
``in_flight`` jobs submitted (the caller feeds them lazily, so the bytes held stay bounded).
A task whose worker process dies (killed, out of memory) is retried up to ``max_retries``
times; an error raised by the task itself (a corrupt segment, bad options) is not retried: it
would fail the same way again.

Ray is imported only here, when a Ray backend starts (the ``surgbox[cluster]`` extra). A local
``ray`` start runs without the dashboard and with usage statistics off, on ``num_cpus`` cores;
``ray://HOST:PORT`` joins an existing cluster (Ray Client).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from ..errors import ConfigError, SurgboxError
from .segments import Segment
from .task import run_segment

RAY_HINT = "install the cluster extra: pip install 'surgbox[cluster]' (Ray), or use --cluster local"


class WorkerLost(SurgboxError):
    """A task's worker process died more often than the retries allow."""


@attrs.frozen(eq=False)
class Job:
    """One task: ``key`` (the caller's), the segment's MP4 ``data``, the ``segment``, the
    :class:`~surgbox.deid.DeidOptions` as keyword arguments (``options``: plain values)."""

    key: Any
    data: bytes
    segment: Segment
    options: dict[str, Any]
    work_dir: str | None = None
    fail_marker: str | None = None


def _run(job: Job) -> Any:
    from ..deid import DeidOptions

    return run_segment(job.data, job.segment, DeidOptions(**job.options), job.work_dir, job.fail_marker)


@attrs.define(eq=False)
class _Feed:
    """Jobs to submit, with the ones to run again first; counts each job's attempts."""

    jobs: Iterator[Job]
    attempts: dict[Any, int]
    max_retries: int
    retry: list[Job] = attrs.field(factory=list)
    exhausted: bool = False

    def fill(self, running: dict[Any, Job], in_flight: int, submit: Callable[[Job], Any]) -> None:
        """Submit jobs until ``in_flight`` run (``running``: handle -> job)."""
        while len(running) < in_flight and (self.retry or not self.exhausted):
            job = self.retry.pop(0) if self.retry else next(self.jobs, None)
            if job is None:
                self.exhausted = True
                return
            self.attempts[job.key] = self.attempts.get(job.key, 0) + 1
            running[submit(job)] = job

    def lost(self, job: Job, why: str) -> WorkerLost | None:
        """A job whose worker died: queued again (``None``) or, out of retries, the error."""
        if self.attempts[job.key] <= self.max_retries:
            self.retry.append(job)
            return None
        return WorkerLost(f"segment {job.segment.index}: its worker died {self.attempts[job.key]} times ({why})")


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@attrs.define(eq=False)
class LocalPool:
    """``workers`` processes (spawned, so no thread of the caller is forked) on this machine."""

    workers: int
    max_retries: int = 2
    name: str = "local"
    attempts: dict[Any, int] = attrs.field(factory=dict)
    _pool: cf.ProcessPoolExecutor | None = attrs.field(default=None, alias="_pool")

    def start(self) -> None:
        self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        """Stop now (the batch was interrupted): the workers are terminated, their tasks lost."""
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> dict[str, Any]:
        return {"cluster": "local", "workers": self.workers}

    def run(self, jobs: Iterable[Job], in_flight: int) -> Iterator[tuple[Job, Any]]:
        feed = _Feed(iter(jobs), self.attempts, self.max_retries)
        running: dict[cf.Future, Job] = {}
        while True:
            feed.fill(running, in_flight, self._submit)
            if not running:
                return
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            broken = False
            for fut in done:
                job = running.pop(fut)
                exc = fut.exception()
                if exc is None:
                    yield job, fut.result()
                elif isinstance(exc, cf.process.BrokenProcessPool):
                    broken = True
                    yield from self._lost(feed, job)
                else:
                    yield job, exc
            if broken:  # every other task of the dead pool is lost too: restart it and resubmit them
                for fut, job in list(running.items()):
                    running.pop(fut)
                    yield from self._lost(feed, job)
                self.close()
                self.start()

    def _submit(self, job: Job) -> cf.Future:
        assert self._pool is not None, "start() first"
        try:
            return self._pool.submit(_run, job)
        except cf.process.BrokenProcessPool:
            self.close()
            self.start()
            return self._pool.submit(_run, job)

    @staticmethod
    def _lost(feed: _Feed, job: Job) -> Iterator[tuple[Job, Any]]:
        err = feed.lost(job, "killed or out of memory; see the system log")
        if err is not None:
            yield job, err


@attrs.define(eq=False)
class RayCluster:
    """Ray: a local instance (``address=None``) on ``num_cpus`` cores, or a cluster at
    ``address`` (``ray://HOST:PORT`` or ``auto``). Each task asks for ``cpus_per_task`` CPUs
    and ``gpus_per_task`` GPUs. A task whose worker or node died is submitted again, up to
    ``max_retries`` times, by this driver (not by Ray's own ``max_retries``), so the attempts
    are known and reported like the local pool's."""

    address: str | None
    num_cpus: int | None
    max_retries: int = 2
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    temp_dir: str | None = None
    name: str = "ray"
    attempts: dict[Any, int] = attrs.field(factory=dict)
    _ray: Any = attrs.field(default=None, alias="_ray")
    _remote: Any = attrs.field(default=None, alias="_remote")
    _started: bool = attrs.field(default=False, alias="_started")
    _running: dict[Any, Job] = attrs.field(factory=dict, alias="_running")

    def start(self) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(f"--cluster {self.address or 'ray'} needs Ray, which is not installed; {RAY_HINT}") from None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._ray = ray
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
            if self.address is None:
                kw["num_cpus"] = self.num_cpus
                kw["num_gpus"] = 0 if not self.gpus_per_task else None
                if self.temp_dir:
                    kw["_temp_dir"] = self.temp_dir
            else:
                kw = {"address": self.address, "log_to_driver": False}
            try:
                ray.init(**kw)
            except ConnectionError as exc:
                raise ConfigError(f"cannot reach the Ray cluster at {self.address}: {exc}; check the address "
                                  f"(ray://HOST:10001) and that the cluster is up") from None
            self._started = True
        self._remote = ray.remote(_run).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                                max_retries=0, retry_exceptions=False)

    def close(self) -> None:
        if self._started and self._ray is not None:
            self._ray.shutdown()
            self._started = False

    def abort(self) -> None:
        """Stop now (the batch was interrupted): running tasks are cancelled (their workers killed)."""
        if self._ray is not None and self._ray.is_initialized():
            for ref in list(self._running):
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # already finished, or the cluster is gone
                    pass
        self._running.clear()
        self.close()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"cluster": self.address or "ray"}
        if self._ray is not None and self._ray.is_initialized():
            res = self._ray.cluster_resources()
            info.update(cpus=res.get("CPU", 0), gpus=res.get("GPU", 0), nodes=len(self._ray.nodes()))
        return info

    def run(self, jobs: Iterable[Job], in_flight: int) -> Iterator[tuple[Job, Any]]:
        ray = self._ray
        feed = _Feed(iter(jobs), self.attempts, self.max_retries)
        running = self._running
        lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError,
                ray.exceptions.ObjectLostError)
        while True:
            feed.fill(running, in_flight, self._remote.remote)
            if not running:
                return
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                job = running.pop(ref)
                try:
                    result: Any = ray.get(ref)
                except lost as exc:
                    result = feed.lost(job, f"{type(exc).__name__}; see the Ray logs")
                    if result is None:
                        continue
                except ray.exceptions.RayTaskError as exc:
                    result = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                yield job, result


def make_backend(spec: str, *, workers: int | None, max_retries: int, gpus_per_task: float = 0.0,
                 ray_address_env: str = "RAY_ADDRESS", temp_dir: str | None = None) -> Any:
    """The backend for ``--cluster SPEC``: ``local``, ``ray``, ``ray://HOST:PORT`` or ``auto``
    (Ray at ``$RAY_ADDRESS`` when set, else local). ``workers``: processes / CPUs (default: the
    cores of this machine)."""
    n = workers or cpu_count()
    if spec == "auto":
        address = os.environ.get(ray_address_env)
        if not address:
            spec = "local"
        else:
            _need_ray(f"auto (${ray_address_env}={address})")
            return RayCluster(address, None, max_retries, gpus_per_task=gpus_per_task, name=address)
    if spec == "local":
        if gpus_per_task:
            raise ConfigError("--gpus-per-task needs Ray (--cluster ray or ray://HOST:PORT); the local pool does not "
                              "schedule GPUs")
        return LocalPool(n, max_retries)
    if spec == "ray":
        _need_ray(spec)
        return RayCluster(None, n, max_retries, gpus_per_task=gpus_per_task, temp_dir=temp_dir)
    if spec.startswith("ray://") or (":" in spec and "/" not in spec):
        _need_ray(spec)
        return RayCluster(spec, None, max_retries, gpus_per_task=gpus_per_task, name=spec)
    raise ConfigError(f"--cluster {spec!r} is not local, ray, ray://HOST:PORT or auto")


def _need_ray(spec: str) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(f"--cluster {spec} needs Ray, which is not installed; {RAY_HINT}") from None
