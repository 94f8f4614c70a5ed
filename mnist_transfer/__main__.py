"""`python -m mnist_transfer …` is the `mnist-transfer` command."""

from mnist_transfer.app.cli import main

if __name__ == "__main__":
    main()
