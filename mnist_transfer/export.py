"""The deployable artifact: backbone + trained head in one SavedModel, with the project's preprocessing.

Signatures of data/model/saved_model:
- serving_default(images: string (batch,) encoded JPEG/PNG) → probabilities (batch, 10), digit (batch,)
- predict_images(images: uint8 (batch, h, w, 1) decoded grayscale) → probabilities, digit
- features(images: string (batch,)) → features (batch, 2048), the backbone output the head sees
Beside it: labels.txt (line i = class i) and head.keras (the head alone, for further training).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from mnist_transfer.backbone import Backbone, BackboneSpec, load_backbone, prepare_encoded, preprocess
from mnist_transfer.idx import N_CLASSES

SAVED_MODEL_DIR = "saved_model"
LABELS_FILE = "labels.txt"
HEAD_FILE = "head.keras"


def build_serving_module(backbone: Backbone, head: Any) -> Any:
    """A tf.Module whose functions run decode → preprocess → backbone → head."""
    import tensorflow as tf

    spec = backbone.spec

    class DigitClassifier(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="digit_classifier")
            self.backbone_model = backbone.model
            self.head = head

        def _classify(self, pixels: Any) -> dict[str, Any]:
            probabilities = self.head(backbone.features(pixels), training=False)
            return {"probabilities": probabilities, "digit": tf.argmax(probabilities, axis=-1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve_encoded(self, images: Any) -> dict[str, Any]:
            return self._classify(prepare_encoded(images, spec))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.uint8, name="images")])
        def serve_decoded(self, images: Any) -> dict[str, Any]:
            return self._classify(preprocess(images, spec))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def features(self, images: Any) -> dict[str, Any]:
            return {"features": backbone.features(prepare_encoded(images, spec))}

    return DigitClassifier()


def export_model(head: Any, spec: BackboneSpec, model_dir: Path) -> None:
    """Write SavedModel, labels.txt and head.keras into model_dir, replacing it whole (temp dir + rename)."""
    import tensorflow as tf

    module = build_serving_module(load_backbone(spec), head)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", dir=model_dir.parent))
    try:
        tf.saved_model.save(
            module, str(staging / SAVED_MODEL_DIR),
            signatures={
                "serving_default": module.serve_encoded,
                "predict_images": module.serve_decoded,
                "features": module.features,
            },
        )
        (staging / LABELS_FILE).write_text("".join(f"{digit}\n" for digit in range(N_CLASSES)), encoding="utf-8")
        head.save(staging / HEAD_FILE)
        shutil.rmtree(model_dir, ignore_errors=True)
        staging.rename(model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_exported(model_dir: Path) -> Any:
    """The exported SavedModel (call its .signatures[...] with tensors)."""
    import tensorflow as tf

    return tf.saved_model.load(str(model_dir / SAVED_MODEL_DIR))
