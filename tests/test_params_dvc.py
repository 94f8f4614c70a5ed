"""End to end through the real `dvc exp run -S`: a bad value stops the first stage DVC runs, before any work.

One good `dvc repro` on a tiny subset is shared by the module; each case then changes params so that DVC
reruns only what depends on them, and must fail at the first stage it runs, in one line naming the key.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import commit_all, configure_stand_in_run, copy_pipeline, dvc_result, run_dvc

pytestmark = pytest.mark.e2e  # every test here runs the real `dvc repro` / `dvc exp run`

RAN = re.compile(r"^Running stage '([\w-]+)'", re.MULTILINE)


@pytest.fixture(scope="module")
def baseline_repo(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Iterator[Path]:
    """A pipeline copy after one good `dvc repro` (5 images per digit, stand-in backbone), committed."""
    root = tmp_path_factory.mktemp("params-e2e")
    repo = copy_pipeline(root / "repo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNIST_FEATURE_STORE", str(root / "store.sqlite"))
        configure_stand_in_run(
            repo, mnist_dir, limit_per_class=5,
            extra={
                "label.shards": 2, "label.workers": 1, "label.parity_sample": 5, "train.epochs": 2,
                "label.tflite_min_agreement": 0.01,  # near-ties of a 2-epoch head: tflite parity is not under test
            },
        )
        run_dvc(repo, "repro")
        commit_all(repo, "good baseline")
        yield repo


# (the -S overrides, the key the error must name, the stages DVC may run first)
ROWS = [
    (["train.learning_rate=-1"], "train.learning_rate = -1", {"train"}),
    (["train.epochs=abc"], "train.epochs = 'abc'", {"train"}),
    (["label.workers=0"], "label.workers = 0", {"label"}),
    (["label.shards=0"], "label.shards = 0", {"label"}),
    (["train.hidden_units=-5"], "train.hidden_units = -5", {"train"}),
    (["train.batch_size=0"], "train.batch_size = 0", {"train"}),
    (["data.jpeg_quality=500"], "data.jpeg_quality = 500", {"convert", "own"}),
    # the bad key belongs to a later stage than the one DVC runs first
    (["data.jpeg_quality=90", "label.workers=0"], "label.workers = 0", {"convert", "own"}),
    (["train.epochs=3", "label.shards=0"], "label.shards = 0", {"train"}),
]


@pytest.mark.parametrize(("overrides", "named", "first_stages"), ROWS, ids=[" ".join(row[0]) for row in ROWS])
def test_bad_value_stops_the_first_stage_before_any_work(baseline_repo: Path, overrides, named, first_stages):
    repo = baseline_repo
    lock_before = (repo / "dvc.lock").read_text()
    try:
        result = dvc_result(repo, "exp", "run", *[arg for override in overrides for arg in ("-S", override)])
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        ran = RAN.findall(output)
        assert len(ran) == 1 and ran[0] in first_stages, output  # nothing ran after the failure
        stage_lines = [line for line in output.splitlines() if line.startswith(f"{ran[0]}: ")]
        assert len(stage_lines) == 1, output  # the stage's only words: one line, no milestone before it
        assert named in stage_lines[0] and "is not allowed" in stage_lines[0]
        assert stage_lines[0].rstrip().endswith("checks a file without running anything.")
        assert "git checkout params.yaml" in stage_lines[0] and "Traceback" not in output
        assert (repo / "dvc.lock").read_text() == lock_before
        assert overrides[-1].split("=")[1] in (repo / "params.yaml").read_text()  # DVC leaves the bad value
    finally:
        restore_baseline(repo)
    assert "up to date" in run_dvc(repo, "status").stdout  # every output is the good baseline's again


def restore_baseline(repo: Path) -> None:
    """params.yaml back (the advice given), and the outputs DVC removed before running the failed stage."""
    subprocess.run(["git", "checkout", "--", "."], cwd=repo, check=True)  # params.yaml, uncached reports
    run_dvc(repo, "checkout", "--force")  # cached outputs


def test_a_typo_in_a_key_is_refused_with_a_suggestion(baseline_repo: Path):
    """A hand edit (`-S` refuses unknown keys itself, unless prefixed with +)."""
    repo = baseline_repo
    params_path = repo / "params.yaml"
    try:
        params_path.write_text(params_path.read_text().replace("  learning_rate:", "  learnig_rate:", 1))
        result = dvc_result(repo, "repro")
        output = result.stdout + result.stderr
        assert result.returncode != 0 and RAN.findall(output) == ["train"], output
        assert "unknown key train.learnig_rate (did you mean train.learning_rate?)" in output
        assert "Traceback" not in output
    finally:
        restore_baseline(repo)
    assert "up to date" in run_dvc(repo, "status").stdout
