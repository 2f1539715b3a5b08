"""A small ResNet-style CNN (Conv, BatchNormalization, Relu, MaxPool, residual blocks with a strided 1x1
projection, GlobalAveragePool, Flatten, Gemm) with a symbolic batch, compiled and compared with ONNX Runtime."""
from __future__ import annotations

import pathlib
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _compare import main_for  # noqa: E402  (examples/ is a folder of scripts, not a package)

INPUTS = {"image": (np.float32, ("batch", 3, 32, 32))}


class _Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.weights = [], []

    def weight(self, name, shape, scale):
        self.weights.append(numpy_helper.from_array(self.rng.normal(0, scale, shape).astype(np.float32), name))
        return name

    def conv_bn(self, x, name, cin, cout, kernel, stride=1, relu=True):
        pad = kernel // 2
        w = self.weight(f"{name}.w", (cout, cin, kernel, kernel), np.sqrt(2 / (cin * kernel * kernel)))
        self.nodes.append(helper.make_node("Conv", [x, w], [f"{name}.conv"], name=f"{name}.conv",
                                           kernel_shape=[kernel, kernel], strides=[stride, stride],
                                           pads=[pad] * 4))
        bn = [f"{name}.bn.{p}" for p in ("scale", "bias", "mean", "var")]
        for p, values in zip(bn, (self.rng.uniform(0.5, 1.5, cout), self.rng.normal(0, 0.1, cout),
                                  self.rng.normal(0, 0.1, cout), self.rng.uniform(0.5, 1.5, cout))):
            self.weights.append(numpy_helper.from_array(values.astype(np.float32), p))
        self.nodes.append(helper.make_node("BatchNormalization", [f"{name}.conv", *bn], [f"{name}.bn"],
                                           name=f"{name}.bn", epsilon=1e-5))
        if not relu:
            return f"{name}.bn"
        self.nodes.append(helper.make_node("Relu", [f"{name}.bn"], [f"{name}.relu"], name=f"{name}.relu"))
        return f"{name}.relu"

    def block(self, x, name, cin, cout, stride):
        h = self.conv_bn(x, f"{name}.a", cin, cout, 3, stride)
        h = self.conv_bn(h, f"{name}.b", cout, cout, 3, 1, relu=False)
        shortcut = x if stride == 1 and cin == cout else self.conv_bn(x, f"{name}.proj", cin, cout, 1, stride,
                                                                      relu=False)
        self.nodes.append(helper.make_node("Add", [h, shortcut], [f"{name}.sum"], name=f"{name}.add"))
        self.nodes.append(helper.make_node("Relu", [f"{name}.sum"], [f"{name}.out"], name=f"{name}.relu"))
        return f"{name}.out"


def build_model(seed: int = 0):
    b = _Builder(seed)
    x = b.conv_bn("image", "stem", 3, 16, 3)
    b.nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                                    pads=[1, 1, 1, 1]))
    x = b.block("pool", "layer1", 16, 16, 1)
    x = b.block(x, "layer2", 16, 32, 2)
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    b.nodes.append(helper.make_node("Flatten", ["gap"], ["features"], name="flatten", axis=1))
    b.weight("fc.w", (10, 32), 0.3)
    b.weight("fc.b", (10, ), 0.1)
    b.nodes.append(helper.make_node("Gemm", ["features", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        b.nodes, "resnet_mini", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], b.weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sdflow-examples")


if __name__ == "__main__":
    main_for(build_model(), INPUTS, name="cnn")
