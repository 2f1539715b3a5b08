"""Fusion passes (level O2): each one rewrites op chains into Fused kernels or simpler layouts to cut the bytes
that travel through memory between ops."""
from . import (fold_layout, fuse_attention, fuse_conv_epilogue, fuse_elementwise,  # noqa: F401  (register the passes)
               fuse_gemm_epilogue, fuse_normalization)
