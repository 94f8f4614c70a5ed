"""IDX parsing and validation: known answers on tiny files and every failing case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_transfer.data.idx import IdxError, check_split_counts, encode_idx, read_images, read_labels, validate_idx


def write(tmp_path: Path, payload: bytes, name: str = "file-ubyte") -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def test_known_answer_round_trip(tmp_path: Path):
    images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28).astype(np.uint8)
    labels = np.array([7, 3], dtype=np.uint8)
    images_bytes = encode_idx(images)
    # header: magic 2051, then 2, 28, 28 as big-endian uint32
    assert images_bytes[:16] == bytes.fromhex("00000803 00000002 0000001c 0000001c")
    assert encode_idx(labels) == bytes.fromhex("00000801 00000002 07 03")
    np.testing.assert_array_equal(read_images(write(tmp_path, images_bytes, "i")), images)
    np.testing.assert_array_equal(read_labels(write(tmp_path, encode_idx(labels), "l")), labels)


@pytest.mark.parametrize(
    "payload, message",
    [
        (bytes.fromhex("00000802 00000001 05"), "bad magic number 2050"),
        (bytes.fromhex("00000801"), "too short"),
        (bytes.fromhex("00000803 00000001 0000001b 0000001c") + bytes(27 * 28), "27x28"),
        (bytes.fromhex("00000801 00000003 01 02"), "truncated or padded"),  # 2 labels of 3
        (bytes.fromhex("00000801 00000002 01 02 03"), "truncated or padded"),  # 1 byte too many
        (bytes.fromhex("00000801 00000002 01 0a"), "label 10 out of range"),
    ],
)
def test_malformed_files_fail_naming_the_file(tmp_path: Path, payload: bytes, message: str):
    path = write(tmp_path, payload, "broken-ubyte")
    with pytest.raises(IdxError, match=message) as raised:
        validate_idx(path)
    assert "broken-ubyte" in str(raised.value)


def test_wrong_item_count(tmp_path: Path):
    path = write(tmp_path, encode_idx(np.zeros(5, dtype=np.uint8)))
    with pytest.raises(IdxError, match="holds 5 items, expected 6"):
        validate_idx(path, expected_count=6)


def test_images_and_labels_must_pair_up(tmp_path: Path):
    images = validate_idx(write(tmp_path, encode_idx(np.zeros((3, 28, 28), dtype=np.uint8)), "i"))
    labels = validate_idx(write(tmp_path, encode_idx(np.zeros(4, dtype=np.uint8)), "l"))
    with pytest.raises(IdxError, match="testing: 3 images but 4 labels"):
        check_split_counts(images, labels, "testing")


def test_reading_labels_as_images_fails(tmp_path: Path):
    with pytest.raises(IdxError, match="is a labels file"):
        read_images(write(tmp_path, encode_idx(np.zeros(2, dtype=np.uint8))))
