"""Files written on this machine the verified way: under a temporary name beside the
final one (``.NAME.….cmq-part``, never listed), renamed into place only when complete.

New files get the mode the umask allows (0666 less the umask), as ``cp`` and rclone
give them; the temporary name is created exclusively, so two writers never share one.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
from collections.abc import Callable

#: Suffix of a file being written (never listed).
PART = ".cmq-part"
#: Bytes read or written at a time.
CHUNK = 1 << 20

_COUNTER = itertools.count()
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def create_part(directory: str, base: str) -> tuple[int, str]:
    """A new temporary file for ``directory/base``, open for writing: (fd, its path)."""
    while True:
        tmp = os.path.join(directory, f".{base}.{os.getpid()}-{next(_COUNTER)}-{secrets.token_hex(3)}{PART}")
        try:
            return os.open(tmp, _CREATE, 0o666), tmp
        except FileExistsError:
            continue


def copy_file(source: str, directory: str, base: str, on_bytes: Callable[[int], None] | None = None,
              follow: bool = True) -> tuple[int, str, float]:
    """Copy file ``source`` to ``directory/base`` (which must exist), hashing it as it is
    read once; the copy keeps the source's time and appears only when complete. Returns
    (size, SHA-256, time). ``follow=False`` refuses a source that is a symbolic link
    (OSError ELOOP). Raises OSError; nothing is left behind on error."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    try:
        st = os.fstat(src)
        fd, tmp = create_part(directory, base)
        try:
            digest, size = hashlib.sha256(), 0
            try:
                while chunk := os.read(src, CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(directory, base))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    finally:
        os.close(src)
    return size, digest.hexdigest(), st.st_mtime
