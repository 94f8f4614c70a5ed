"""Files in, checked: MNIST download and IDX validation, JPG folders, Kaggle CSVs, your own digits and the
MNIST-style normaliser. No TensorFlow here (tests/test_layers.py checks)."""
