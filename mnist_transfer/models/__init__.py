"""Classifiers: the transfer head, the from-scratch CNN, their export (SavedModel, TFLite) and inference."""
