"""Outputs written atomically: a temporary file beside the target, renamed into place only on success."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from mnist_transfer.errors import OutputWriteError

# errno of a failed write → what the user can do about it
WRITE_FAILURES = {
    errno.ENOSPC: "free some space on that disk",
    errno.EDQUOT: "free some space within your disk quota",
    errno.EFBIG: "the file outgrew the filesystem's limit: write to another disk",
    errno.EROFS: "the filesystem is read-only: make it writable",
}


def current_umask() -> int:
    """The process's umask (os.umask can only be read by setting it, so it is set back at once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(final_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside final_path; rename it into place only if the block succeeds.

    A full disk (or quota, read-only filesystem) while writing becomes an OutputWriteError naming
    final_path; the temporary file is removed and whatever was at final_path stays as it was.
    """
    tmp_path: Path | None = None
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".partial", dir=final_path.parent)
        os.close(fd)
        tmp_path = Path(tmp_name)
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, final_path)
    except OSError as error:
        if error.errno not in WRITE_FAILURES:
            raise
        raise OutputWriteError(
            f"cannot write {final_path}: {error.strerror or error}; nothing partial was left and "
            f"{final_path.name} stays as it was: {WRITE_FAILURES[error.errno]}, then rerun"
        ) from error
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_placeholder(folder: Path, note: str) -> None:
    """Replace folder by one holding only README.txt: a DVC output with nothing to hold for this data source."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "README.txt").write_text(note.rstrip() + "\n", encoding="utf-8")
