"""Encoded JPEG/PNG/GIF/BMP bytes → uint8 grayscale tensors (TensorFlow), and which image of a batch is at fault."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

from mnist_transfer.errors import DataError

TF_OP_NOISE = re.compile(r"\{\{[^}]*\}\}|\[Op:\w+\]")  # "{{function_node …}} … [Op:DecodeImage]" around TF's words


class UndecodableImage(ValueError):
    """Image number `index` of a chunk cannot be decoded."""

    def __init__(self, index: int, reason: str):
        super().__init__(index, reason)
        self.index = index
        self.reason = reason

    def naming(self, path: Path) -> DataError:
        return DataError(
            f"{path}: cannot be decoded ({self.reason}); replace or delete it "
            "(`dvc checkout` restores a file that the pipeline wrote)"
        )


def first_undecodable(encoded: Sequence[bytes]) -> tuple[int, str] | None:
    """(position, reason) of the first image that does not decode as JPEG/PNG/GIF/BMP, else None."""
    import tensorflow as tf

    for index, blob in enumerate(encoded):
        try:
            tf.io.decode_image(blob, channels=1, expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError) as error:
            reason = getattr(error, "message", str(error)).splitlines()[0]
            return index, TF_OP_NOISE.sub("", reason).strip()
    return None


def decode_image(encoded: Any) -> Any:
    """Encoded JPEG/PNG bytes (scalar string tensor) → uint8 (h, w, 1) grayscale."""
    import tensorflow as tf

    return tf.io.decode_image(encoded, channels=1, expand_animations=False)


def map_decoded(encoded: Any, prepare: Callable[[Any], Any]) -> Any:
    """Encoded JPEG/PNG bytes (string tensor, (batch,)) → prepare(each decoded uint8 (1, h, w, 1)), stacked.

    Images may differ in size: each is decoded and prepared on its own (map_fn runs them in parallel).
    `prepare` must give float32 of one fixed shape; the backbone and the from-scratch CNN each pass theirs.
    """
    import tensorflow as tf

    def prepare_one(item: Any) -> Any:
        return prepare(decode_image(item)[None])[0]

    return tf.map_fn(prepare_one, encoded, fn_output_signature=tf.float32)
