"""A digit classifier as a deployable artifact: one SavedModel with the project's preprocessing, and TFLite.

Signatures of data/model/saved_model (the transfer model, mnist_transfer.models.transfer; data/cnn the same
but `features`):
- serving_default(images: string (batch,) encoded JPEG/PNG) → probabilities (batch, 10), digit (batch,)
- predict_images(images: uint8 (batch, h, w, 1) decoded grayscale) → probabilities, digit
- features(images: string (batch,)) → features (batch, 2048), the backbone output the head sees
Beside it: labels.txt (line i = class i), head.keras (the head alone, for further training), model.tflite
(predict_images' probabilities for uint8 (batch, 28, 28, 1), dynamic-range quantised — float32 for the random
stand-in backbone, see tflite_quantisable; run it with load_tflite; the transfer model's only with
train.tflite: true), and model.json (validation accuracy and the calibration temperature, applied on top of
these raw probabilities: mnist_transfer.models.metadata).
The from-scratch CNN (mnist_transfer.models.cnn) is exported through the same classifier_module/save_classifier,
so both models serve the same signatures.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mnist_transfer.data.idx import IMAGE_SIDE_PX, N_CLASSES
from mnist_transfer.features.decode import map_decoded

SAVED_MODEL_DIR = "saved_model"
LABELS_FILE = "labels.txt"
DIGIT_LABELS = tuple(str(digit) for digit in range(N_CLASSES))  # labels.txt of a digit classifier
HEAD_FILE = "head.keras"
TFLITE_FILE = "model.tflite"
PAIRS_FILE = "pairs.keras"  # a number reader's pair classifier (mnist_transfer.models.reader), in its folder
TfliteKind = Literal["quantised", "float"]  # dynamic-range int8 weights, or float32 as trained


def classifier_module(prepare: Callable[[Any], Any], classify: Callable[[Any], Any], parts: dict[str, Any]) -> Any:
    """A tf.Module serving classify(prepare(pixels)): serve_encoded (string (batch,) encoded images) and
    serve_decoded (uint8 (batch, h, w, 1)), each → probabilities (batch, 10), digit (batch,).

    Args:
        prepare: uint8 (batch, h, w, 1) → the float32 input `classify` expects (traceable).
        classify: that input → probabilities (batch, 10) (traceable).
        parts: the models `classify` calls, attached to the module so that their variables are saved.
    """
    import tensorflow as tf

    class DigitClassifier(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="digit_classifier")
            for name, part in parts.items():
                setattr(self, name, part)

        def decoded_probabilities(self, images: Any) -> Any:
            """Traceable: uint8 (batch, h, w, 1) → probabilities (batch, 10); serve_decoded and the TFLite model."""
            return classify(prepare(images))

        def _classify(self, pixels: Any) -> dict[str, Any]:
            probabilities = classify(pixels)
            return {"probabilities": probabilities, "digit": tf.argmax(probabilities, axis=-1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve_encoded(self, images: Any) -> dict[str, Any]:
            return self._classify(map_decoded(images, prepare))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.uint8, name="images")])
        def serve_decoded(self, images: Any) -> dict[str, Any]:
            probabilities = self.decoded_probabilities(images)
            return {"probabilities": probabilities, "digit": tf.argmax(probabilities, axis=-1)}

    return DigitClassifier()


def classifier_signatures(module: Any) -> dict[str, Any]:
    """The signatures every exported digit classifier has."""
    return {"serving_default": module.serve_encoded, "predict_images": module.serve_decoded}


def save_classifier(
    module: Any,
    signatures: dict[str, Any],
    model_dir: Path,
    write_extras: Callable[[Path], None],
    tflite: TfliteKind | None = "quantised",
    labels: Sequence[str] = DIGIT_LABELS,
) -> None:
    """Write the SavedModel, labels.txt (one label per class), model.tflite (unless tflite is None) and what
    write_extras(folder) adds into model_dir, replacing it whole (temp dir + rename)."""
    import tensorflow as tf

    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", dir=model_dir.parent))
    try:
        tf.saved_model.save(module, str(staging / SAVED_MODEL_DIR), signatures=signatures)
        (staging / LABELS_FILE).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        write_extras(staging)
        if tflite is not None:
            (staging / TFLITE_FILE).write_bytes(tflite_model(module, quantise=tflite == "quantised"))
        shutil.rmtree(model_dir, ignore_errors=True)
        staging.rename(model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def tflite_model(module: Any, quantise: bool = True) -> bytes:
    """module.decoded_probabilities on uint8 (batch, 28, 28, 1) as a TFLite model, dynamic-range quantised
    (tf.lite.Optimize.DEFAULT: int8 weights) if quantise.

    The function is frozen first: converted as is, Keras 3 variables stay uninitialised resource variables
    in the flatbuffer (a 0.3 MB model answering NaN).
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    pixels_spec = tf.TensorSpec([None, IMAGE_SIDE_PX, IMAGE_SIDE_PX, 1], tf.uint8, name="images")
    function = tf.function(module.decoded_probabilities, input_signature=[pixels_spec]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(function)], tf.Module())
    converter.optimizations = [tf.lite.Optimize.DEFAULT] if quantise else []
    return converter.convert()


def serve_files(served: Any, paths: Sequence[Path], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """An exported model's serving_default signature on the encoded bytes of image files, batch by batch
    → digits (n,), probabilities (n, 10). The model decodes the bytes with TensorFlow's decoder, as the stages do."""
    import tensorflow as tf

    digits, probabilities = [np.empty(0, np.int64)], [np.empty((0, N_CLASSES), np.float32)]
    for start in range(0, len(paths), batch_size):
        outputs = served(images=tf.constant([path.read_bytes() for path in paths[start : start + batch_size]]))
        digits.append(outputs["digit"].numpy())
        probabilities.append(outputs["probabilities"].numpy())
    return np.concatenate(digits), np.concatenate(probabilities)


def load_exported(model_dir: Path) -> Any:
    """The exported SavedModel (call its .signatures[...] with tensors)."""
    import tensorflow as tf

    return tf.saved_model.load(str(model_dir / SAVED_MODEL_DIR))


class TfliteClassifier:
    """model.tflite loaded in a TFLite interpreter: uint8 (n, 28, 28, 1) → float32 (n, 10) probabilities."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self.path = path
        self.runner = tf.lite.Interpreter(model_path=str(path)).get_signature_runner()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.empty((0, N_CLASSES), np.float32)
        (probabilities,) = self.runner(images=np.ascontiguousarray(images, np.uint8)).values()
        return np.asarray(probabilities, np.float32)


def load_tflite(model_dir: Path) -> TfliteClassifier:
    """model_dir/model.tflite in a TFLite interpreter."""
    return TfliteClassifier(model_dir / TFLITE_FILE)
