"""common: atomic outputs that survive a full disk, and stage errors in one line."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from mnist_transfer.errors import OutputWriteError
from mnist_transfer.outputs import atomic_path, current_umask


def test_atomic_path_replaces_the_output_only_on_success(tmp_path: Path):
    output = tmp_path / "out" / "metrics.json"
    with atomic_path(output) as tmp:
        tmp.write_text("new")
    assert output.read_text() == "new" and sorted(p.name for p in output.parent.iterdir()) == ["metrics.json"]


def test_atomic_outputs_get_the_mode_of_a_plain_write(tmp_path: Path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    with atomic_path(atomic) as tmp:
        tmp.write_text("x")
    assert atomic.stat().st_mode == plain.stat().st_mode == 0o100666 & ~current_umask()  # not mkstemp's 0600


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free some space on that disk"),
        (errno.EDQUOT, "within your disk quota"),
        (errno.EROFS, "read-only"),
        (errno.EFBIG, "write to another disk"),
    ],
)
def test_a_failed_write_names_the_output_and_keeps_the_previous_one(tmp_path: Path, code: int, advice: str):
    output = tmp_path / "metrics.json"
    output.write_text("previous")
    with pytest.raises(OutputWriteError) as caught, atomic_path(output) as tmp:
        tmp.write_text("half of the new")
        raise OSError(code, "simulated")  # a full disk names no file, like this
    message = str(caught.value)
    assert message.startswith(f"cannot write {output}: simulated;") and advice in message
    assert "metrics.json stays as it was" in message
    assert output.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_other_errors_inside_the_block_pass_unchanged(tmp_path: Path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.txt"):
        (tmp_path / "missing-input").read_bytes()
    assert list(tmp_path.iterdir()) == []
