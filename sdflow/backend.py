"""sdflow as an ONNX backend (``onnx.backend.base.Backend``), so ``onnx.backend.test.BackendTest`` and other
tools that speak the backend API drive it like any runtime::

    import onnx.backend.test, sdflow.backend
    suite = onnx.backend.test.BackendTest(sdflow.backend, __name__)
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from sdflow import DEFAULT_PASSES

__all__ = ["SdflowBackend", "SdflowRep", "prepare", "run_model", "run_node", "supports_device", "is_compatible"]


class SdflowRep(BackendRep):
    """A compiled model; ``run(inputs)`` takes the inputs in the graph's order (a list, or one array)."""

    def __init__(self, compiled):
        self.compiled = compiled

    def run(self, inputs, **kwargs):
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, dict):
            return tuple(self.compiled(**inputs))
        return tuple(self.compiled(*inputs))


class SdflowBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", passes: str = DEFAULT_PASSES,
                **kwargs) -> SdflowRep:
        """Compiles ``model`` (``kwargs`` go to ``sdflow.compile``: ``passes``, ``fallback``, ...)."""
        if not cls.supports_device(device):
            raise RuntimeError(f"sdflow runs on CPU, not {device!r}")
        import sdflow
        return SdflowRep(sdflow.compile(model, passes=passes, **kwargs))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        raise NotImplementedError("sdflow compiles whole models; wrap the node in a model and use run_model")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = SdflowBackend.prepare
run_model = SdflowBackend.run_model
run_node = SdflowBackend.run_node
supports_device = SdflowBackend.supports_device
is_compatible = SdflowBackend.is_compatible
