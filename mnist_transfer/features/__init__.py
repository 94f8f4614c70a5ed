"""Images → Inception v3 features: the backbone, TensorFlow decoding, the content-addressed feature store and
the Dask embedding path that fills it."""
