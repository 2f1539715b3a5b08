"""The direct convolution kernel and its Winograd form (``codegen/lowering/conv_direct.py``): which convolutions
get pre-packed (or transformed) weights, and their numbers against ONNX Runtime — padded, dilated, 1x1, 1-D, output
channels that do not fill a block, fused epilogues, dynamic batch and image sizes, a cached build that re-packs its
weights, and the options ``direct_conv=false`` / ``winograd=false``.

The kernels are written for AVX-512; elsewhere lowering keeps im2col + BLAS. These tests force them on
(``has_avx512``), so a CPU without AVX-512 runs their portable C++ form and still checks the numbers."""
from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import helper

import sdflow
from sdflow.codegen.lowering import conv_direct
from sdflow.codegen.threads import has_avx512

F = np.float32


@pytest.fixture(autouse=True)
def direct_kernels(monkeypatch):
    monkeypatch.setattr(conv_direct, "has_avx512", lambda: True)
    monkeypatch.setenv("SDFLOW_GRAPH_CACHE", "0")


def _packed(compiled) -> list[str]:
    """The compiled model's packed weights as 'weight/kind' (kind: packed for the direct kernel's position vectors,
    channels for its channel vectors, winograd)."""
    found = (re.fullmatch(r"(.+)__(packed|winograd|channels)(8|16)", n) for n in compiled.weight_names)
    return sorted(f"{m[1]}/{m[2]}" for m in found if m)


def _w(rng, *shape):
    return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(F)


@pytest.fixture
def conv_zoo(helpers, rng):
    """Every way the direct kernel tiles, on a fixed 50x50 image with a dynamic batch:
    a: 3x3 pad 1, 44 output channels (the last block of 8 holds 4), fused with Relu;
    c: 1x1 (no padding: the image itself is the flat range, stored straight into the planes), 48 channels, fused
    with a residual Add and Clip (32 taps: the channel blocks loop outermost over runs of tiles, which cross
    samples at batch 2);
    d: 3x3 dilation 2, uneven pads; e: 1x1 over a 7x7 plane of 256 channels (one tile of 49 positions, run as
    8 channels x 48 positions plus one position's vector over the 8 channels); i: 3x3 over that plane (61
    positions of the padded rows: two halves of 4 channels x 4 vectors), 14 output channels (the last block's
    second half holds 2); j: 1x1 over it, 3 output channels (a partial block, and no second half);
    f: a 1-D convolution (kernel 5), 16 channels over a dynamic length. a's 2598 positions end in a tile of 54
    (the remainder of 6 joins the last full tile).
    b: a stride-2 3x3, g: a depthwise and h: a 1x1 stride-2 convolution keep their own kernels."""
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a0"], ["a"]),
        helper.make_node("Conv", ["x", "wb"], ["b"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["x", "wc", "bc"], ["c0"]),
        helper.make_node("Add", ["c0", "r"], ["c1"]),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["c"]),
        helper.make_node("Conv", ["x", "wd"], ["d"], pads=[1, 2, 2, 1], dilations=[2, 2]),
        helper.make_node("Conv", ["s", "we", "be"], ["e"]),
        helper.make_node("Conv", ["s", "wi", "bi"], ["i"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["s", "wj"], ["j"]),
        helper.make_node("Conv", ["t", "wf"], ["f"], pads=[2, 2]),
        helper.make_node("Conv", ["x", "wg"], ["g"], pads=[1, 1, 1, 1], group=32),
        helper.make_node("Conv", ["x", "wh"], ["h"], strides=[2, 2]),
    ]
    weights = {"wa": _w(rng, 44, 32, 3, 3), "ba": rng.standard_normal(44).astype(F),
               "wb": _w(rng, 64, 32, 3, 3), "wc": _w(rng, 48, 32, 1, 1), "bc": rng.standard_normal(48).astype(F),
               "lo": np.array(-1, F), "hi": np.array(1.5, F), "wd": _w(rng, 32, 32, 3, 3),
               "we": _w(rng, 48, 256, 1, 1), "be": rng.standard_normal(48).astype(F), "wf": _w(rng, 16, 64, 5),
               "wg": _w(rng, 32, 1, 3, 3), "wh": _w(rng, 32, 32, 1, 1),
               "wi": _w(rng, 14, 256, 3, 3), "bi": rng.standard_normal(14).astype(F), "wj": _w(rng, 3, 256, 1, 1)}
    return helpers.make_model(
        nodes, [("x", F, ["n", 32, 50, 50]), ("r", F, ["n", 48, 50, 50]), ("s", F, ["n", 256, 7, 7]),
                ("t", F, ["n", 64, "length"])],
        [("a", F, ["n", 44, 50, 50]), ("b", F, ["n", 64, 25, 25]), ("c", F, ["n", 48, 50, 50]),
         ("d", F, ["n", 32, 49, 49]), ("e", F, ["n", 48, 7, 7]), ("f", F, ["n", 16, "length"]),
         ("g", F, ["n", 32, 50, 50]), ("h", F, ["n", 32, 25, 25]), ("i", F, ["n", 14, 7, 7]),
         ("j", F, ["n", 3, 7, 7])], weights)


def _zoo_feeds(rng, n, length):
    shapes = {"x": (n, 32, 50, 50), "r": (n, 48, 50, 50), "s": (n, 256, 7, 7), "t": (n, 64, length)}
    return {name: rng.standard_normal(shape).astype(F) for name, shape in shapes.items()}


@pytest.mark.parametrize("winograd", ["0", "1"])
def test_direct_kernels_match_onnxruntime(conv_zoo, helpers, rng, monkeypatch, winograd):
    """Every tiling of the direct kernel's position vectors (channel_vectors=false: i, 3x3 over 7x7 with 2304
    taps, would take the channel vectors); with winograd=true a (3x3, stride 1, 50x50) runs as Winograd
    F(2x2, 3x3)."""
    options = {"winograd": winograd, "channel_vectors": False}
    feeds = [_zoo_feeds(rng, 1, 40), _zoo_feeds(rng, 2, 23)]
    for passes in ("O1", "O2"):  # plain Conv nodes, and convolutions fused with their epilogues
        compiled = helpers.check_against_ort(conv_zoo, feeds, passes=passes, options=options)
        assert _packed(compiled) == ["wa/" + ("winograd" if winograd == "1" else "packed"), "wb/packed",
                                     "wc/packed", "wd/packed", "we/packed", "wf/packed", "wi/packed", "wj/packed"]


def test_winograd_matches_onnxruntime(helpers, rng):
    """Winograd F(2x2, 3x3) takes the 3x3 stride-1 convolutions with outputs of at least 8x8: odd and non-square
    images (a half-used last tile row and column), uneven and no padding, several blocks of 48 tiles, output
    channels that do not fill a block, fused epilogues (Relu; a residual Add and Clip), batch 1 and 3 from one
    build. A 7x7 output keeps the direct kernel, a dilated 3x3 too."""
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a0"], ["a"]),
             helper.make_node("Conv", ["u", "wb"], ["b"], pads=[0, 2, 1, 0]),
             helper.make_node("Conv", ["u", "wc", "bc"], ["c0"]),
             helper.make_node("Add", ["c0", "r"], ["c1"]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["c"]),
             helper.make_node("Conv", ["s", "wd"], ["d"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["u", "we"], ["e"], pads=[2, 2, 2, 2], dilations=[2, 2])]
    weights = {"wa": _w(rng, 20, 24, 3, 3), "ba": rng.standard_normal(20).astype(F), "wb": _w(rng, 8, 16, 3, 3),
               "wc": _w(rng, 16, 16, 3, 3), "bc": rng.standard_normal(16).astype(F), "lo": np.array(-1, F),
               "hi": np.array(1.5, F), "wd": _w(rng, 8, 32, 3, 3), "we": _w(rng, 8, 16, 3, 3)}
    model = helpers.make_model(
        nodes, [("x", F, ["n", 24, 9, 13]), ("u", F, ["n", 16, 30, 26]), ("r", F, ["n", 16, 28, 24]),
                ("s", F, ["n", 32, 7, 7])],
        [("a", F, ["n", 20, 9, 13]), ("b", F, ["n", 8, 29, 26]), ("c", F, ["n", 16, 28, 24]),
         ("d", F, ["n", 8, 7, 7]), ("e", F, ["n", 8, 30, 26])], weights)
    shapes = {"x": (24, 9, 13), "u": (16, 30, 26), "r": (16, 28, 24), "s": (32, 7, 7)}
    feeds = [{k: rng.standard_normal((n, *v)).astype(F) for k, v in shapes.items()} for n in (1, 3)]
    for passes in ("O1", "O2"):
        compiled = helpers.check_against_ort(model, feeds, passes=passes)
        assert _packed(compiled) == ["wa/winograd", "wb/winograd", "wc/winograd", "wd/packed", "we/packed"]


def test_channel_vectors_match_onnxruntime(helpers, rng, monkeypatch):
    """Small images with many taps run with vectors over output channels (``kernel_kind`` 'channels'): a 7x7 image
    (one chunk of 7 positions per row), a 6 x 11 one (chunks of 6 and 5; too short for Winograd), a stride-2
    convolution over phase
    planes, a 1-D one, output channels that fill 1, 2 and 3 blocks of 16 (the last partly), fused epilogues, batch
    1 and 2 from one build. The tap threshold is lowered so that the layers stay small; a 14-wide output with
    fewer taps than it keeps the position vectors."""
    monkeypatch.setattr(conv_direct, "CHANNEL_TAPS", 64)
    nodes = [helper.make_node("Conv", ["s", "wa", "ba"], ["a0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a0"], ["a"]),
             helper.make_node("Conv", ["u", "wb"], ["b"], pads=[1, 0, 1, 2]),
             helper.make_node("Conv", ["v", "wc", "bc"], ["c0"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Add", ["c0", "r"], ["c1"]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["c"]),
             helper.make_node("Conv", ["t", "wd"], ["d"], pads=[2, 2]),
             helper.make_node("Conv", ["v", "we"], ["e"])]
    weights = {"wa": _w(rng, 40, 16, 3, 3), "ba": rng.standard_normal(40).astype(F), "wb": _w(rng, 16, 24, 3, 3),
               "wc": _w(rng, 20, 8, 3, 3), "bc": rng.standard_normal(20).astype(F), "lo": np.array(-1, F),
               "hi": np.array(1.5, F), "wd": _w(rng, 33, 16, 5), "we": _w(rng, 32, 8, 1, 1)}
    model = helpers.make_model(
        nodes, [("s", F, ["n", 16, 7, 7]), ("u", F, ["n", 24, 6, 11]), ("v", F, ["n", 8, 28, 14]),
                ("r", F, ["n", 20, 14, 7]), ("t", F, ["n", 16, 12])],
        [("a", F, ["n", 40, 7, 7]), ("b", F, ["n", 16, 6, 11]), ("c", F, ["n", 20, 14, 7]),
         ("d", F, ["n", 33, 12]), ("e", F, ["n", 32, 28, 14])], weights)
    shapes = {"s": (16, 7, 7), "u": (24, 6, 11), "v": (8, 28, 14), "r": (20, 14, 7), "t": (16, 12)}
    feeds = [{k: rng.standard_normal((n, *v)).astype(F) for k, v in shapes.items()} for n in (1, 2)]
    for passes in ("O1", "O2"):
        compiled = helpers.check_against_ort(model, feeds, passes=passes)
        assert _packed(compiled) == ["wa/channels", "wb/channels", "wc/channels", "wd/channels", "we/packed"]


def test_small_planes_run_with_vectors_over_channels(helpers, rng):
    """MNASNet's last blocks over 2x2 planes (64x64 images): the 1x1 convolutions run the channel-vector form with
    each plane one row (``kernel_kind`` 'channels'), the depthwise ones ``conv_depthwise_channels`` (stride 1 and
    2, 5x5 windows mostly in the padding, 3x3, fused epilogues, a channel count that is not a multiple of 16), and
    fuse-conv-depthwise leaves such pairs apart; batch 1 and 2 from one build. A 4x4 1x1 convolution keeps the
    position vectors, an 8x8 depthwise one its rows."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["e0"]), helper.make_node("Relu", ["e0"], ["e"]),
             helper.make_node("Conv", ["e", "dw5", "db"], ["d0"], group=40, pads=[2, 2, 2, 2]),
             helper.make_node("Relu", ["d0"], ["d"]),
             helper.make_node("Conv", ["d", "w2"], ["y"]),
             helper.make_node("Conv", ["e", "dw3"], ["z"], group=40, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["u", "w3"], ["f"]),
             helper.make_node("Conv", ["v", "dw8"], ["g"], group=24, pads=[1, 1, 1, 1])]
    weights = {"w1": _w(rng, 40, 24, 1, 1), "b1": rng.standard_normal(40).astype(F), "dw5": _w(rng, 40, 1, 5, 5),
               "db": rng.standard_normal(40).astype(F), "w2": _w(rng, 24, 40, 1, 1), "dw3": _w(rng, 40, 1, 3, 3),
               "w3": _w(rng, 32, 24, 1, 1), "dw8": _w(rng, 24, 1, 3, 3)}
    model = helpers.make_model(
        nodes, [("x", F, ["n", 24, 2, 2]), ("u", F, ["n", 24, 4, 4]), ("v", F, ["n", 24, 8, 8])],
        [("y", F, ["n", 24, 2, 2]), ("z", F, ["n", 40, 1, 1]), ("f", F, ["n", 32, 4, 4]),
         ("g", F, ["n", 24, 8, 8])], weights)
    shapes = {"x": (24, 2, 2), "u": (24, 4, 4), "v": (24, 8, 8)}
    feeds = [{k: rng.standard_normal((n, *v)).astype(F) for k, v in shapes.items()} for n in (1, 2)]
    for passes in ("O1", "O2"):
        compiled = helpers.check_against_ort(model, feeds, passes=passes)
        assert _packed(compiled) == ["w1/channels", "w2/channels", "w3/packed"]
        forms = sorted(n.implementation for n in compiled.graph.op_nodes() if n.op_type in ("Conv", "Fused"))
        # (the 8x8 depthwise one keeps its rows where the CPU has AVX-512, else the planes)
        rows = "depthwise-rows" if has_avx512() else "depthwise-planes"
        assert forms == sorted(["depthwise-channels", "depthwise-channels", rows, "direct", "direct-channels",
                                "direct-channels"]), forms


def test_channel_vector_weight_layout():
    weight = np.arange(20 * 3 * 2 * 2, dtype=F).reshape(20, 3, 2, 2)
    packed = conv_direct.channels_pack(weight)
    assert packed.shape == (2, 12, 16) and packed.ctypes.data % 64 == 0
    flat = weight.reshape(20, 12)
    np.testing.assert_array_equal(packed[0, 5, :], flat[:16, 5])
    np.testing.assert_array_equal(packed[1, :, :4], flat[16:20].T)
    assert not packed[1, :, 4:].any()  # channels past M are zeros


def test_winograd_weight_layout():
    """[M, C, 3, 3] -> G g G^T as [16][M / 8][C][8], element (u, v) of the 4x4 transform at index u * 4 + v."""
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((12, 5, 3, 3)).astype(F)
    packed = conv_direct.winograd_pack(weight)
    assert packed.shape == (16, 2, 5, 8) and packed.ctypes.data % 64 == 0
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    m, c = 9, 3
    transformed = g @ weight[m, c].astype(np.float64) @ g.T
    np.testing.assert_allclose(packed[:, 1, c, 1], transformed.reshape(16), rtol=1e-6)
    assert not packed[:, 1, :, 4:].any()  # channels past M are zeros


def test_a_cached_build_packs_its_weights_again(conv_zoo, rng, monkeypatch):
    """The packed (and Winograd-transformed) weights are not graph constants: a build loaded through the graph
    cache's build record (no lowering) recomputes them from the weights they came from."""
    monkeypatch.setenv("SDFLOW_GRAPH_CACHE", "1")
    feeds = _zoo_feeds(rng, 1, 12)
    first = sdflow.compile(conv_zoo, passes="O2")
    second = sdflow.compile(conv_zoo, passes="O2")
    assert second.graph_from_cache and not second.built
    assert second.weight_names == first.weight_names and "wa__winograd8" in first.weight_names
    for name, value in first(**feeds).as_dict().items():
        np.testing.assert_array_equal(second(**feeds).as_dict()[name], value, err_msg=name)


def test_direct_kernels_can_be_switched_off(conv_zoo, helpers, rng, monkeypatch):
    compiled = helpers.check_against_ort(conv_zoo, [_zoo_feeds(rng, 1, 9)], passes="O2",
                                         options={"direct_conv": False})
    assert not _packed(compiled)
    assert {n.implementation for n in compiled.graph.op_nodes() if n.op_type in ("Conv", "Fused")} <= {
        "im2col", "depthwise-rows", "depthwise-planes"}


def test_direct_kernels_over_dynamic_image_sizes(helpers, rng):
    """A stride-1 convolution over symbolic H, W runs the flat-range kernel whatever the size (one row, one
    column); a strided one keeps im2col + BLAS."""
    nodes = [helper.make_node("Conv", ["x", "k"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "k"], ["z"], pads=[1, 1, 1, 1], strides=[2, 2])]
    model = helpers.make_model(nodes, [("x", F, ["n", 48, "height", "width"])],
                               [("y", F, ["n", 32, "height", "width"]), ("z", F, ["n", 32, "oh", "ow"])],
                               {"k": _w(rng, 32, 48, 3, 3)})
    feeds = [{"x": rng.standard_normal(s).astype(F)} for s in ((1, 48, 9, 31), (2, 48, 3, 2), (1, 48, 1, 1))]
    compiled = helpers.check_against_ort(model, feeds, passes="O2")
    assert compiled.weight_names == ["k", "k__packed8"]


def test_pack_layout():
    weight = np.arange(20 * 3 * 2 * 2, dtype=F).reshape(20, 3, 2, 2)
    packed = conv_direct.pack(weight)
    assert packed.shape == (3, 12, 8) and packed.ctypes.data % 64 == 0
    flat = weight.reshape(20, 12)
    np.testing.assert_array_equal(packed[1, 5, :], flat[8:16, 5])
    np.testing.assert_array_equal(packed[2, :, :4], flat[16:20].T)
    assert not packed[2, :, 4:].any()  # channels past M are zeros


def test_strided_convolutions_read_phase_planes(helpers, rng):
    """Strided convolutions read the image as stride x stride phase planes (each tap a run of consecutive floats):
    a ResNet-style 7x7 stride-2 stem over an odd-sized image, stride (2, 1), stride 3 with dilation 2 and uneven
    pads; a strided 1x1 and a stride-2 stem over 3 channels (27 taps) keep im2col + BLAS."""
    nodes = [helper.make_node("Conv", ["x", "w7"], ["a"], pads=[3, 3, 3, 3], strides=[2, 2]),
             helper.make_node("Conv", ["x", "w3"], ["b"], pads=[1, 1, 1, 1], strides=[2, 1]),
             helper.make_node("Conv", ["x", "w3"], ["c"], pads=[2, 1, 0, 3], strides=[3, 3], dilations=[2, 2]),
             helper.make_node("Conv", ["x", "w1"], ["d"], strides=[2, 2]),
             helper.make_node("Slice", ["x", "zero", "three", "one"], ["rgb"]),
             helper.make_node("Conv", ["rgb", "w0"], ["e"], pads=[1, 1, 1, 1], strides=[2, 2])]
    model = helpers.make_model(
        nodes, [("x", F, ["n", 8, "height", "width"])],
        [("a", F, ["n", 16, "ah", "aw"]), ("b", F, ["n", 24, "bh", "bw"]), ("c", F, ["n", 24, "ch", "cw"]),
         ("d", F, ["n", 8, "dh", "dw"]), ("e", F, ["n", 8, "eh", "ew"])],
        {"w7": _w(rng, 16, 8, 7, 7), "w3": _w(rng, 24, 8, 3, 3), "w1": _w(rng, 8, 8, 1, 1), "w0": _w(rng, 8, 3, 3, 3),
         "zero": np.array([0]), "three": np.array([3]), "one": np.array([1])})
    feeds = [{"x": rng.standard_normal(s).astype(F)} for s in ((1, 8, 23, 19), (2, 8, 8, 31))]
    compiled = helpers.check_against_ort(model, feeds, passes="O1")
    assert [n for n in compiled.weight_names if "__packed" in n] == ["w3__packed8", "w7__packed8"]


@pytest.mark.parametrize("winograd", ["0", "1"])
def test_lowered_traffic_counts_the_packed_weights_once(helpers, rng, monkeypatch, winograd):
    """The direct kernel reads the packed (or Winograd-transformed) copy of its weight, not the original: the
    lowered data-movement report (``sdflow report --lowered``) claims those bytes only."""
    from sdflow.codegen.options import KernelOptions
    from sdflow.codegen.traffic import lowered_traffic
    from sdflow.frontends.onnx import import_model
    model = helpers.make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
                               [("x", F, [1, 16, 10, 10])], [("y", F, [1, 12, 10, 10])],
                               {"w": _w(rng, 12, 16, 3, 3), "b": rng.standard_normal(12).astype(F)})
    (record, ) = lowered_traffic(import_model(model), KernelOptions(winograd=winograd == "1"))
    # two blocks of 8 output channels (the second holds 4) x 144 taps, or x 16 transformed elements x 16 channels
    packed = 2 * 16 * 16 * 8 if winograd == "1" else 2 * 16 * 9 * 8
    assert int(record.bytes_read) == 4 * (16 * 10 * 10 + packed + 12)
    assert int(record.bytes_written) == 4 * 12 * 10 * 10
