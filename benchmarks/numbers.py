"""Benchmark: reading handwritten numbers (mnist_transfer.data.segment) on photos composed from MNIST test digits.

For each length (2, 4, 6, 8 digits by default), N numbers are composed (mnist_transfer.data.compose: random gaps,
0 px gaps, overlapping boxes, touching pairs, slope, size variation, photographed) and read with the model. Prints
by length: exact-match accuracy of the whole string; per-digit accuracy (1 - edit distance / length, so a missed
or extra digit costs one) next to the single-digit accuracy on the same digits, each photographed and normalised
alone (what segmentation costs); why the wrong ones are wrong (compose.failure_cause: no candidate near a true
digit, the closest candidate misread, or the path chose others); the same for the numbers with a touching pair;
and the time per number. The five hardest failures (wrong, yet the most confident) are saved as PNGs with the
truth, the answer and the boxes read.
Never asserts.

    python -m benchmarks.numbers --model data/reader --failures reports/numbers-failures
    python -m benchmarks.numbers --fake -n 20        # plumbing: an ideal classifier that knows the digits' boxes
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.record import add_record_flag, record_all
from mnist_transfer.data.compose import ComposedNumber, box_oracle, compose_number, failure_cause, random_number
from mnist_transfer.data.idx import read_images, read_labels
from mnist_transfer.data.normalise import normalise_digit
from mnist_transfer.data.segment import choose_digits, classify_pair_candidates, digit_probabilities, segment_number

LENGTHS = (2, 4, 6, 8)
CAUSES = ("no candidate", "misread", "path", "error")  # why a number is read wrong (compose.failure_cause, or raised)
Box = tuple[int, int, int, int]
N_PER_LENGTH = 250
N_LENGTH_4 = 1000  # the figure: 1,000 four-digit photos
N_FAILURES = 5


@dataclass
class Tally:
    """Results of one length (or of its touching subset)."""

    n: int = 0
    exact: int = 0
    digits: int = 0
    digits_right: int = 0  # len - edit distance, summed
    single_right: int = 0  # the same digits, each photographed and normalised alone
    seconds: float = 0.0
    causes: Counter[str] = field(default_factory=Counter)  # of the wrong answers: see CAUSES

    def add(self, truth: str, answer: str, n_single_right: int, seconds: float, cause: str | None) -> None:
        self.n += 1
        self.exact += truth == answer
        self.digits += len(truth)
        self.digits_right += max(0, len(truth) - edit_distance(truth, answer))
        self.single_right += n_single_right
        self.seconds += seconds
        if cause is not None:
            self.causes[cause] += 1

    def merge(self, other: Tally) -> None:
        for counted in fields(self):  # every field adds up, the Counter of causes included
            setattr(self, counted.name, getattr(self, counted.name) + getattr(other, counted.name))


@dataclass
class Failure:
    confidence: float
    composed: ComposedNumber
    answer: str
    boxes: list[Box] = field(default_factory=list)


def edit_distance(first: str, second: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, start=1):
        current = [i]
        for j, b in enumerate(second, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def load_test_digits(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's test digits from a folder with t10k-*-ubyte files, gzipped (a mirror) or not (data/idx)."""
    arrays = []
    for name, reader in (("t10k-images-idx3-ubyte", read_images), ("t10k-labels-idx1-ubyte", read_labels)):
        plain, packed = mnist_dir / name, mnist_dir / f"{name}.gz"
        if not plain.is_file():
            import tempfile

            if not packed.is_file():
                raise SystemExit(f"{mnist_dir}: neither {name} nor {name}.gz; pass --mnist with MNIST's test files")
            plain = Path(tempfile.mkdtemp(prefix="mnist-")) / name
            plain.write_bytes(gzip.decompress(packed.read_bytes()))
        arrays.append(reader(plain))
    return arrays[0], arrays[1]


def read_with(classify, composed: ComposedNumber, classify_pairs=None) -> tuple[str, float, list[Box], str | None]:
    """(the number read, its confidence, the digits' boxes, why it is wrong: None when right); an error reads as ''
    with confidence 0. Wide candidates are also read as pairs when classify_pairs is given."""
    from mnist_transfer.errors import DataError

    try:
        segmentation = segment_number(composed.image())
        candidate_boxes = [c.box for c in segmentation.candidates]
        probabilities = box_oracle(composed, candidate_boxes) if classify is None \
            else np.asarray(classify(segmentation.pixels), np.float64)
        reading = choose_digits(segmentation, probabilities,
                                pair_probabilities=classify_pair_candidates(segmentation, classify_pairs))
    except DataError:
        return "", 0.0, [], "error"
    cause = None if reading.number == composed.digits \
        else failure_cause(composed, candidate_boxes, digit_probabilities(probabilities)[0].argmax(axis=1))
    return reading.number, reading.confidence, [d.box for d in reading.digits], cause


def single_digits_right(classify, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> int:
    """How many of these digits the model reads right when each is photographed (as in a number) and normalised alone."""
    if classify is None:
        return len(labels)
    alone = [compose_number([image], [int(label)], [], rng).image() for image, label in zip(images, labels)]
    probabilities = digit_probabilities(np.asarray(classify(np.stack([normalise_digit(photo) for photo in alone]))))[0]
    return int((probabilities.argmax(axis=1) == labels).sum())


def run_length(classify, images, labels, length: int, n_numbers: int, seed: int, failures: list[Failure],
               classify_pairs=None) -> tuple[Tally, Tally]:
    """(all, touching) tallies for n_numbers numbers of `length` digits; wrong answers are added to failures."""
    rng = np.random.default_rng([seed, length])
    everything, touching = Tally(), Tally()
    for _ in range(n_numbers):
        composed, chosen = random_number(images, labels, length, rng)
        started = time.perf_counter()
        answer, confidence, boxes, cause = read_with(classify, composed, classify_pairs)
        seconds = time.perf_counter() - started
        n_single = single_digits_right(classify, images[chosen], labels[chosen], rng)
        for tally in (everything, touching) if composed.touching else (everything,):
            tally.add(composed.digits, answer, n_single, seconds, cause)
        if answer != composed.digits:
            failures.append(Failure(confidence, composed, answer, boxes))
    return everything, touching


def share(part: int, whole: int) -> float | None:
    """part / whole in %; None when there is no whole."""
    return 100 * part / whole if whole else None


def percent(part: int, whole: int) -> str:
    value = share(part, whole)
    return "     –  " if value is None else f"{value:6.2f} %"


def print_row(name: str, tally: Tally) -> None:
    print(f"{name:<14} {tally.n:>6}  {percent(tally.exact, tally.n)}  {percent(tally.digits_right, tally.digits)}  "
          f"{percent(tally.single_right, tally.digits)}  {tally.seconds / max(1, tally.n):7.3f}  "
          + "  ".join(f"{tally.causes[cause]:>{len(cause)}}" for cause in CAUSES))


def tally_figures(everything: Tally, touching: Tally) -> dict[str, float | int | None]:
    """One length's figures for its record: accuracies in % (None: no numbers), the touching subset's, time, and
    why numbers failed."""
    figures: dict[str, float | int | None] = {
        "exact %": share(everything.exact, everything.n),
        "per digit %": share(everything.digits_right, everything.digits),
        "single digits %": share(everything.single_right, everything.digits),
        "touching numbers": touching.n,
        "touching exact %": share(touching.exact, touching.n),
        "seconds per number": everything.seconds / max(1, everything.n),
    }
    figures.update({f"failures: {cause}": everything.causes[cause] for cause in CAUSES})
    return figures


def save_failures(failures: list[Failure], folder: Path) -> None:
    """The N_FAILURES most confident wrong answers: the photo, the boxes read, the truth and the answer."""
    folder.mkdir(parents=True, exist_ok=True)
    for rank, failure in enumerate(sorted(failures, key=lambda f: -f.confidence)[:N_FAILURES], start=1):
        photo = failure.composed.image().convert("RGB")
        sheet = Image.new("RGB", (max(photo.width, 320), photo.height + 24), "white")
        sheet.paste(photo, (0, 24))
        draw = ImageDraw.Draw(sheet)
        for x0, y0, x1, y1 in failure.boxes:
            draw.rectangle([x0, y0 + 24, x1 - 1, y1 - 1 + 24], outline=(220, 30, 30))
        answer = failure.answer or "error"
        draw.text((4, 6), f"truth {failure.composed.digits} · read {answer} ({failure.confidence:.2f})", fill=(0, 0, 0))
        sheet.save(folder / f"{rank}_truth-{failure.composed.digits}_read-{answer}.png")
    print(f"saved the {min(N_FAILURES, len(failures))} most confident of {len(failures)} failures to {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="an exported model folder (data/reader, data/cnn, data/model)")
    source.add_argument("--fake", action="store_true", help="an ideal classifier that knows where the digits are")
    parser.add_argument("--mnist", type=Path, default=Path(os.environ.get("MNIST_MIRROR", "../shared/mnist")),
                        help="folder with MNIST's t10k files, .gz or not (default $MNIST_MIRROR or ../shared/mnist)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("-n", type=int, default=N_PER_LENGTH, help=f"numbers per length (default {N_PER_LENGTH})")
    parser.add_argument("--n4", type=int, default=None, help=f"numbers of 4 digits (default {N_LENGTH_4}, or -n if given)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pairs", action="store_true",
                        help="read no candidate as a pair of digits, even with a reader's pair classifier")
    parser.add_argument("--failures", type=Path, metavar="DIR", help="save the five hardest failures here")
    add_record_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    images, labels = load_test_digits(args.mnist)
    classify, classify_pairs, identity = None, None, "box oracle"
    if args.model is not None:
        from mnist_transfer.models.inference import DigitModel

        model = DigitModel.load(args.model)
        classify, identity = model.predict, model.identity
        classify_pairs = None if args.no_pairs else model.pair_classifier
        if args.no_pairs and model.pair_classifier is not None:
            identity += " without pairs"
        print(f"model {identity}; pairs of digits read by {'its pair classifier' if classify_pairs else 'nothing'}")
    else:
        print("fake classifier: box_oracle (knows each digit's box; measures segmentation alone)")
    n4 = args.n4 if args.n4 is not None else (N_LENGTH_4 if args.n == N_PER_LENGTH else args.n)
    failures: list[Failure] = []
    print(f"{'digits':<14} {'n':>6}  {'exact':>8}  {'per digit':>8}  {'single':>8}  {'s/number':>7}  "
          + "  ".join(CAUSES) + "   (why wrong: see compose.failure_cause)")
    total, total_touching = Tally(), Tally()
    entries = []
    for length in args.lengths:
        everything, touching = run_length(classify, images, labels, length, n4 if length == 4 else args.n, args.seed,
                                          failures, classify_pairs)
        print_row(f"{length}", everything)
        print_row(f"{length} touching", touching)
        total.merge(everything)
        total_touching.merge(touching)
        entries.append((tally_figures(everything, touching), {"digits": length, "numbers": everything.n,
                                                             "seed": args.seed, "model": identity}))
    print_row("all", total)
    print_row("all touching", total_touching)
    if args.failures is not None:
        save_failures(failures, args.failures)
    record_all("numbers", entries, enabled=args.record)


if __name__ == "__main__":
    main()
