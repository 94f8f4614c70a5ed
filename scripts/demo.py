"""`make demo`: the whole product in about five minutes, offline, without touching this workspace's params.yaml.

    python scripts/demo.py [--mnist ../shared/mnist] [--dir demo] [--per-class 300]

Copies the pipeline into its own folder (a git + DVC project of its own, ignored here), sets the offline profile
(the local MNIST copy, the seeded stand-in backbone at 75 px) on a few hundred digits per class, runs the real
`dvc repro` there and prints where to look and what to try next.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mnist_transfer.params import offline_overrides

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone needs to run the pipeline; data/ and reports/ are produced by it.
PIPELINE_FILES = (
    "dvc.yaml", "params.yaml", "stages", "mnist_transfer", "data/own", "data/kaggle/README.md", ".dvc/config",
    ".dvc/.gitignore",
)
# A demo is a subset: smaller CNN batches and more epochs give the one-cycle schedule enough steps on 300 digits
# per class (the full run's are params.yaml's); a CNN trained for a minute has near-ties that int8 weights flip,
# hence the looser TFLite floor; the number reader composes numbers in proportion to the digits (1,500 on full data).
DEMO_SETTINGS: dict[str, Any] = {
    "cnn.epochs": 10, "cnn.batch_size": 128, "label.tflite_min_agreement": 0.9, "reader.numbers": 300,
}


def copy_pipeline(dest: Path) -> Path:
    """Copy the pipeline's tracked files into dest and commit them to a new git repo (DVC + dvclive need one)."""
    for name in PIPELINE_FILES:
        source, target = REPO_ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    git = ["git", "-c", "user.name=mnist-transfer", "-c", "user.email=demo@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline copy"], cwd=dest, check=True)
    return dest


def update_params(repo: Path, updates: dict[str, Any]) -> None:
    """Set dotted params keys (e.g. 'data.limit_per_class') in repo/params.yaml."""
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    for dotted_key, value in updates.items():
        *parents, leaf = dotted_key.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[leaf] = value
    params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def guide(demo_dir: Path, elapsed_s: float) -> str:
    """What the demo made and what to try next."""
    digit = next(iter(sorted((demo_dir / "data/jpg/testing/7").glob("*.jpg"))), demo_dir / "data/jpg/testing/7/…")
    return f"""
The demo ran the whole pipeline in {elapsed_s / 60:.1f} min. Next:
  report     open {demo_dir / 'reports/report.html'} (per-digit accuracy of both models, mistakes, your own digits)
  predict    mnist-transfer predict --model {demo_dir / 'data/cnn'} {digit}
             (any photo of a digit works: PNG, JPEG, HEIC…; add --csv out.csv for every probability)
  serve      mnist-transfer serve --model {demo_dir / 'data/model'} --cnn-model {demo_dir / 'data/cnn'}
             then open http://127.0.0.1:8000 and draw a digit
  experiment cd {demo_dir} && dvc exp run -S train.learning_rate=0.003 && dvc exp show
             (a head-only change: no backbone pass, the features come from the store)
The full pipeline: `make repro` (pretrained Inception v3; network) or `make repro-offline` (this demo's settings
on all 70,000 digits)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=REPO_ROOT.parent / "shared/mnist", help="folder of the four .gz files")
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / "demo", help="where the demo's copy goes (replaced)")
    parser.add_argument("--per-class", type=int, default=300, help="digits per class in each split")
    args = parser.parse_args()
    if not (args.mnist / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"demo: no MNIST files in {args.mnist}; pass --mnist DIR (a folder with the four .gz files)")
    started = time.perf_counter()
    shutil.rmtree(args.dir, ignore_errors=True)
    update_params(copy_pipeline(args.dir), {
        **offline_overrides(args.mnist), "data.limit_per_class": args.per_class, **DEMO_SETTINGS,
    })
    print(f"demo: the pipeline on {args.per_class} digits per class, offline, in {args.dir}", flush=True)
    # the stages' `python` must be this environment's, also when the script is run without `make`
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log: warnings and errors only
    result = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=args.dir, env=env)
    if result.returncode != 0:
        sys.exit(f"demo: dvc repro failed in {args.dir} (its output is above)")
    print(guide(args.dir.relative_to(Path.cwd()) if args.dir.is_relative_to(Path.cwd()) else args.dir,
                time.perf_counter() - started))


if __name__ == "__main__":
    main()
