"""Files the gateway writes whole: the new content lands complete, or the old file stays.

    write_atomically(Path("/var/lib/bcpm-gateway/web-settings.toml"), text.encode(), mode=0o600)

The temporary file is made beside the target with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and its final
mode at once, so a secret is never readable by others for a moment (not even under a loose umask)
and a link planted at the temporary name is never followed; then the data, fsync, rename over the
target, fsync of the folder (so the rename itself survives a power cut).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, data: bytes, mode: int = 0o600, owner: tuple[int, int] | None = None) -> None:
    """Replace `path` with `data`, with permissions `mode` (and `owner`, uid and gid, when given:
    set before the data, as the mode is). Raises OSError; the old file is then untouched."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)  # the umask may have taken bits off at creation
            if owner is not None:
                os.fchown(file.fileno(), *owner)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
