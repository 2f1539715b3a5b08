"""Fusion passes (level O2): each one rewrites op chains into Fused kernels or simpler layouts to cut the bytes
that travel through memory between ops."""
from . import (fold_layout, fuse_attention, fuse_conv_depthwise, fuse_conv_epilogue,  # noqa: F401  (register them)
               fuse_elementwise, fuse_gemm_epilogue, fuse_normalization, gemm_to_matmul)
