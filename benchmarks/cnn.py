"""Benchmark: the from-scratch CNN's decoding, training (images/s and seconds per epoch, augmentation and
validation included) and labelling throughput; labelling in this process vs on Dask worker processes (the
reason label_cnn runs in process).

Needs the JPG folders (the convert stage's data/jpg, or any folder with training/ and testing/):

    python -m benchmarks.cnn --jpg data/jpg [--n-train 12000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import add_record_flag, record
from mnist_transfer.data.records import ImageRecord, list_images
from mnist_transfer.data.split import validation_mask
from mnist_transfer.evaluation.label_cnn import label_cnn_shard, write_cnn_shards
from mnist_transfer.evaluation.predictions import assign_shards
from mnist_transfer.features.embedding import ExecutorSpec, dask_client
from mnist_transfer.models.cnn import CNN_FILE, export_cnn, load_digits, predict_probabilities, train_cnn
from mnist_transfer.params import CnnParams

_WORKER_CNN: dict[Path, Any] = {}  # per Dask worker process: the model is loaded once


def epoch_timer(stop_at_accuracy: float | None = None, verbose: bool = False) -> Any:
    """A Keras callback recording each epoch's wall time (training and validation) in .seconds and its validation
    accuracy in .val_accuracy (when validated); with stop_at_accuracy, training stops at the first epoch whose
    validation accuracy reaches it; verbose prints a line per epoch."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.val_accuracy: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self.started)
            if logs and "val_accuracy" in logs:
                self.val_accuracy.append(float(logs["val_accuracy"]))
                if verbose:
                    print(f"  epoch {epoch + 1}: validation {self.val_accuracy[-1]:.4f} after {sum(self.seconds):.0f} s",
                          flush=True)
                if stop_at_accuracy is not None and self.val_accuracy[-1] >= stop_at_accuracy:
                    self.model.stop_training = True

    return EpochTimer()


def label_on_worker(records: tuple[ImageRecord, ...], data_root: Path, model_dir: Path, out_path: Path) -> int:
    """A Dask task: label one shard as label_cnn does, with the model loaded once per worker."""
    import keras

    if model_dir not in _WORKER_CNN:
        _WORKER_CNN[model_dir] = keras.saving.load_model(model_dir / CNN_FILE)
    return label_cnn_shard(records, data_root, _WORKER_CNN[model_dir], out_path)


def label_with_dask(records: list[ImageRecord], data_root: Path, model_dir: Path, out_dir: Path, workers: int) -> tuple[float, float]:
    """(seconds to start the cluster, seconds in all) to label every shard on `workers` Dask worker processes."""
    started = time.perf_counter()
    with dask_client(ExecutorSpec("local", workers, 0)) as client:
        cluster_s = time.perf_counter() - started
        futures = [
            client.submit(label_on_worker, shard, data_root, model_dir, out_dir / f"shard-{index}.csv", pure=False)
            for index, shard in enumerate(assign_shards(records, 4))
        ]
        client.gather(futures)
    return cluster_s, time.perf_counter() - started


def measure_training(jpg: Path, n_train: int | None, params: CnnParams) -> tuple[Any, dict[str, Any]]:
    """Decode the training JPGs and train as the stage does; the CNN and the timings."""
    records = list_images(jpg / "training", jpg)[:n_train]
    started = time.perf_counter()
    digits = load_digits(records, jpg)
    decode_s = time.perf_counter() - started
    is_validation = validation_mask(digits.rel_paths, 10)
    timer = epoch_timer()
    cnn, summary = train_cnn(digits.subset(~is_validation), digits.subset(is_validation), params, [timer])
    return cnn, {"n_images": len(records), "decode_s": decode_s, "n_train": summary["n_train"], "epochs_s": timer.seconds}


def measure_labelling(jpg: Path, cnn: Any) -> dict[str, Any]:
    """Inference on decoded digits, then label_cnn's work in this process and on Dask workers."""
    records = list_images(jpg / "testing", jpg)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir, out_dir = Path(scratch) / "cnn", Path(scratch) / "out"
        export_cnn(cnn, model_dir)
        images = load_digits(records, jpg).images
        predict_probabilities(cnn, images[:1024])  # warm-up
        started = time.perf_counter()
        predict_probabilities(cnn, images)
        predict_s = time.perf_counter() - started
        (out_dir / "local").mkdir(parents=True)
        started = time.perf_counter()
        write_cnn_shards(records, jpg, cnn, 4, out_dir / "local")
        local_s = time.perf_counter() - started
        (out_dir / "dask").mkdir()
        cluster_s, dask_s = label_with_dask(records, jpg, model_dir, out_dir / "dask", os.cpu_count() or 1)
    return {"n_test": len(records), "predict_s": predict_s, "local_s": local_s, "cluster_s": cluster_s, "dask_s": dask_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jpg", type=Path, default=Path("data/jpg"), help="folder with training/ and testing/")
    parser.add_argument("--n-train", type=int, default=None, help="first N training JPGs (default: all)")
    parser.add_argument("--epochs", type=int, default=2)
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    params = CnnParams(epochs=args.epochs)  # the defaults, augmentation on
    cnn, train = measure_training(args.jpg, args.n_train, params)
    label = measure_labelling(args.jpg, cnn)
    cores, n_train, n_test = os.cpu_count(), train["n_train"], label["n_test"]
    epoch_s = min(train["epochs_s"][1:] or train["epochs_s"])  # the first epoch also traces the graphs
    print(f"CNN {params.filters} + dense {params.dense_units}, batch {params.batch_size}, {cores} cores")
    print(f"decode training JPGs       : {train['n_images'] / train['decode_s']:7.0f} images/s ({train['n_images']} in {train['decode_s']:.1f} s)")
    print(f"training, augmentation on  : {n_train / epoch_s:7.0f} images/s ({n_train} images: {epoch_s:.1f} s per epoch, "
          f"validation included; epochs {', '.join(f'{s:.1f}' for s in train['epochs_s'])} s)")
    print(f"full-data epoch (53,957)   : {53_957 / n_train * epoch_s:7.1f} s (projected)")
    print(f"inference, decoded digits  : {n_test / label['predict_s']:7.0f} images/s")
    print(f"label_cnn in process       : {n_test / label['local_s']:7.0f} images/s ({n_test} JPGs, 4 shards, {label['local_s']:.1f} s, decoding included)")
    print(f"label_cnn on Dask, {cores} workers: {n_test / label['dask_s']:7.0f} images/s ({label['dask_s']:.1f} s, of which "
          f"{label['cluster_s']:.1f} s starting the cluster; each worker then loads TensorFlow and the model)")
    record("cnn", {"decode images/s": train["n_images"] / train["decode_s"], "training images/s": n_train / epoch_s,
                   "s per epoch": epoch_s, "full-data epoch s (projected)": 53_957 / n_train * epoch_s,
                   "inference images/s": n_test / label["predict_s"],
                   "label_cnn in process images/s": n_test / label["local_s"],
                   "label_cnn on Dask images/s": n_test / label["dask_s"], "Dask cluster start s": label["cluster_s"]},
           setup={"training images": n_train, "decoded images": train["n_images"], "test images": n_test,
                  "epochs": args.epochs, "batch": params.batch_size},
           enabled=args.record)


if __name__ == "__main__":
    main()
