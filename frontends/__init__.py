"""Frontends: model formats lowered into the IR (ONNX today)."""
