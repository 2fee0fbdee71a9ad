"""Archive-scale de-identification (``surgbox deid-batch``, see ``docs/cluster.md``).

Modules: ``segments`` (GOP-aligned split and lossless join), ``task`` (one segment in a
worker), ``backends`` (a local process pool, or Ray), ``state`` (per-task state in the
catalog, so a batch resumes), ``batch`` (plan, dispatch, retry, join, store), ``progress``.
Ray is imported only by the Ray backend (the ``surgbox[cluster]`` extra).
"""
