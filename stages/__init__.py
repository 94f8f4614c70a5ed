"""Stages of the MNIST transfer-learning pipeline; each module is one DVC stage (see dvc.yaml)."""
