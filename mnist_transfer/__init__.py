"""The MNIST transfer-learning core, in layers whose imports only point down (tests/test_layers.py):

    app         what a person runs: the mnist-transfer command, the web app
    evaluation  label the test set, parity checks, the report, Kaggle submissions
    models      the transfer head, the CNN, export, inference
    features    backbone, decoding, feature store, Dask embedding
    data        download, IDX, JPG folders, Kaggle CSVs, your own digits, the normaliser (no TensorFlow)
    runner · params · outputs · errors

The DVC stages in `stages/` and the `mnist-transfer` command are thin entry points into it; nothing here does
any work at import time.
"""
