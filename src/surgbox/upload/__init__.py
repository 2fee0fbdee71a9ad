"""Upload of recorded events to Nextcloud and any WebDAV server: chunked, resumable, verified,
encrypted (docs/upload.md).

>>> from surgbox.upload import Queue, Uploader           # doctest: +SKIP
>>> job = Queue(session).enqueue("ev-20261201-0a1b2c3d", "hospital-nc")
>>> Uploader(session).run(job.id).status
'done'

Modules: :mod:`.remotes` (where to, credentials encrypted in the catalog), :mod:`.webdav` (the
HTTP client), :mod:`.transfer` (plain WebDAV and Nextcloud chunking v2, read-back verification),
:mod:`.jobs` (the persistent queue), :mod:`.runner` (running jobs: retries, records, audit).
"""

from .errors import UploadError, VerificationError
from .jobs import Job, Queue, UploadedFile
from .remotes import KINDS, Remote, RemoteBook
from .runner import Uploader
from .transfer import Payload, Sender
from .webdav import Dav, Throttle

__all__ = ["KINDS", "Dav", "Job", "Payload", "Queue", "Remote", "RemoteBook", "Sender", "Throttle", "UploadError",
           "UploadedFile", "Uploader", "VerificationError"]
