"""Print the `dvc exp run -S` flags of the offline profile (mnist_transfer.params.OFFLINE_PROFILE) for a local
MNIST mirror, so that the Makefile holds no params of its own (values are JSON without spaces: the shell's word
splitting keeps each flag whole, as long as the mirror's path has no space).

    dvc exp run $(python scripts/offline_args.py ../shared/mnist)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mnist_transfer.params import offline_overrides


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    flags = [f"-S {key}={json.dumps(value, separators=(',', ':'))}" for key, value in offline_overrides(Path(sys.argv[1])).items()]
    print(" ".join(flags))


if __name__ == "__main__":
    main()
