"""The MNIST transfer-learning core: IDX files, JPG conversion, backbone, feature store, head, export,
labelling and reports. The DVC stages in `stages/` and the `mnist-transfer` command are thin entry points
into it; nothing here does any work at import time."""
