"""The transfer model as one artifact: decode → preprocess → backbone → trained head, exported like every
digit classifier (mnist_transfer.models.export) plus a `features` signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_transfer.features.backbone import Backbone, BackboneSpec, load_backbone, prepare_encoded, preprocess
from mnist_transfer.models.export import HEAD_FILE, classifier_module, classifier_signatures, save_classifier
from mnist_transfer.models.metadata import ModelMetadata, write_metadata


def build_serving_module(backbone: Backbone, head: Any) -> Any:
    """The transfer model's module: decode → preprocess → backbone → head, plus a `features` function."""
    import tensorflow as tf

    spec = backbone.spec
    module = classifier_module(
        prepare=lambda pixels: preprocess(pixels, spec),
        classify=lambda pixels: head(backbone.features(pixels), training=False),
        parts={"backbone_model": backbone.model, "head": head},
    )
    module.features = tf.function(
        lambda images: {"features": backbone.features(prepare_encoded(images, spec))},
        input_signature=[tf.TensorSpec([None], tf.string, name="images")],
    )
    return module


def tflite_quantisable(spec: BackboneSpec) -> bool:
    """False for the random-weight stand-in: its features barely differ between digits, so rounding any weight
    flips digits (agreement with the SavedModel on 300 MNIST test digits: int8 94 %, float16 93 %, float32 100 %)."""
    return not (spec.source == "keras" and spec.weights == "random")


def export_model(
    head: Any, spec: BackboneSpec, model_dir: Path, metadata: ModelMetadata | None = None, tflite: bool = False
) -> None:
    """Write SavedModel, labels.txt, head.keras, model.json (with metadata) and, if tflite (train.tflite),
    model.tflite into model_dir, replacing it whole (temp dir + rename)."""
    module = build_serving_module(load_backbone(spec), head)
    signatures = {**classifier_signatures(module), "features": module.features}

    def write_extras(folder: Path) -> None:
        head.save(folder / HEAD_FILE)
        if metadata is not None:
            write_metadata(metadata, folder)

    kind = ("quantised" if tflite_quantisable(spec) else "float") if tflite else None
    save_classifier(module, signatures, model_dir, write_extras, kind)
