"""Quantization passes: weights (and activations) stored and moved in fewer bits. ``gptq`` holds the numerics
(round-to-nearest and GPTQ); each rewrite is one file."""
from . import (fuse_dequantize_matmul, fuse_matmul_integer, gptq, quantize_dynamic_int8,  # noqa: F401  (registers)
               quantize_static_int8, quantize_weights)
