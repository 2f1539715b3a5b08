"""Memory planning (``codegen/memory.py``): intermediate tensors share a buffer only when every reader of the
earlier one runs before every writer of the later one, in any order DaCe may emit the ops; compiled models that
reuse buffers still match ONNX Runtime."""
from __future__ import annotations

import dace
import numpy as np
import pytest
from onnx import helper

import sdflow
from sdflow.codegen.lowering import expand, lower
from sdflow.codegen.memory import reuse_transients
from sdflow.ir import VerificationError, verify_buffer_sharing

F = np.float32


def _chain(helpers, rng):
    """t1..t4: a chain of MatMuls, t1 also read by the last Add (live to the end); u, v: two independent
    branches of the same shape, joined by an Add."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["t1"]), helper.make_node("MatMul", ["t1", "w2"], ["t2"]),
             helper.make_node("MatMul", ["t2", "w3"], ["t3"]), helper.make_node("MatMul", ["t3", "w4"], ["t4"]),
             helper.make_node("Add", ["t4", "t1"], ["s"]),
             helper.make_node("MatMul", ["s", "w5"], ["u"]), helper.make_node("MatMul", ["s", "w6"], ["v"]),
             helper.make_node("Add", ["u", "v"], ["y"])]
    weights = {f"w{i}": (rng.standard_normal((16, 16)) / 4).astype(F) for i in range(1, 7)}
    return helpers.make_model(nodes, [("x", F, ["n", 16])], [("y", F, ["n", 16])], weights)


def test_buffers_are_shared_only_after_the_last_reader(helpers, rng):
    """t4 takes t2's buffer (t2's reader, the third MatMul, runs before t4's writer); t3 cannot (its writer reads
    t2), nor can anything before the Add take t1's (the Add reads it last). Then s takes t3's; u takes t1's (both of
    its readers ran before u's writer) and v the buffer t4 left (t2's), never u's: u and v are written by
    independent ops."""
    sdfg, _ = lower(sdflow.optimize(sdflow.load(_chain(helpers, rng)), "O1"))
    plan = reuse_transients(sdfg)
    renamed = plan.renamed
    verify_buffer_sharing(sdfg, plan.tenants)
    assert renamed == {"t4": "t2", "s": "t3", "u": "t1", "v": "t2"}
    sdfg.validate()
    assert {"t1", "t2", "t3"} <= set(sdfg.arrays) and not set(renamed) & set(sdfg.arrays)


def test_models_with_shared_buffers_match_onnxruntime(helpers, rng, monkeypatch):
    monkeypatch.setenv("SDFLOW_GRAPH_CACHE", "0")
    model = _chain(helpers, rng)
    feeds = [{"x": rng.standard_normal((n, 16)).astype(F)} for n in (1, 5)]
    helpers.check_against_ort(model, feeds, passes="O1")
    # The option: every tensor its own buffer, same numbers (its own build: the option is in the build key).
    helpers.check_against_ort(model, feeds, passes="O1", options={"memory_reuse": False})


def _random_state(rng, ops: int) -> dace.SDFG:
    """A random dataflow DAG: each op reads 1-3 earlier tensors (often long-lived ones), writes one new tensor of
    one of two shapes; some tensors are viewed (their views read later), some are graph outputs, some are dead."""
    sdfg = dace.SDFG(f"random_{rng.integers(1 << 30)}")
    state = sdfg.add_state()
    sdfg.add_array("x", [8], dace.float32)
    where = dace.dtypes.DebugInfo(0)  # DaCe otherwise inspects the call stack for every node (~50 ms each)
    nodes = {"x": state.add_read("x", debuginfo=where)}
    for k in range(ops):
        if len(nodes) > 1 and rng.random() < 0.15:
            viewed = str(rng.choice([n for n in nodes if not n.startswith("v")]))
            sdfg.add_view(f"v{k}", sdfg.arrays[viewed].shape, dace.float32)
            nodes[f"v{k}"] = state.add_access(f"v{k}", debuginfo=where)
            state.add_edge(nodes[viewed], None, nodes[f"v{k}"], None, dace.Memlet.from_array(viewed, sdfg.arrays[viewed]))
            continue
        names = list(nodes)
        recent = names[-4:]
        inputs = {str(rng.choice(recent if rng.random() < 0.7 else names)) for _ in range(rng.integers(1, 4))}
        name = f"t{k}"
        sdfg.add_array(name, [int(rng.choice([8, 16]))], dace.float32, transient=rng.random() > 0.1)
        connectors = [f"i{j}" for j in range(len(inputs))]
        nodes[name] = state.add_write(name, debuginfo=where)
        if rng.random() < 0.5:  # an op lowered to a map scope: it reads at its entry, writes at its exit
            tasklet, entry, exit_ = state.add_mapped_tasklet(
                f"op{k}", {"i": "0:1"}, {c: dace.Memlet(f"{s}[0]") for c, s in zip(connectors, sorted(inputs))},
                "o = i0", {"o": dace.Memlet(f"{name}[0]")}, external_edges=True,
                input_nodes={s: nodes[s] for s in inputs}, output_nodes={name: nodes[name]}, debuginfo=where)
            continue
        tasklet = state.add_tasklet(f"op{k}", connectors, ["o"], "o = i0", debuginfo=where)
        for connector, source in zip(connectors, sorted(inputs)):
            state.add_edge(nodes[source], None, tasklet, connector, dace.Memlet(f"{source}[0]"))
        state.add_edge(tasklet, "o", nodes[name], None, dace.Memlet(f"{name}[0]"))
    return sdfg


def _simulate(state, tenants: dict, rng) -> None:
    """Runs the ops in a random topological order, tracking which tensor each buffer holds: every read must find
    the tensor it expects, and no op may read a buffer it writes. A map scope reads from its entry until its exit
    (other ops may run in between), so what it read must still be there when its exit runs."""
    def tensor(node):
        return tenants.get(node, node.data)

    def source(node):  # a view reads the buffer it views
        while isinstance(state.sdfg.arrays[node.data], dace.data.View):
            node = state.in_edges(node)[0].src
        return node

    def check_reads(op, read) -> None:
        for data_node in read:
            if data_node.data in held or state.in_degree(data_node):
                assert held.get(data_node.data) == tensor(data_node), f"{op} reads a reused buffer"

    held, reading = {}, {}  # reading: map entry -> the access nodes it reads
    waiting = {node: state.in_degree(node) for node in state.nodes()}
    ready = [node for node, count in waiting.items() if count == 0]
    while ready:
        node = ready.pop(int(rng.integers(len(ready))))
        read = None
        if isinstance(node, dace.nodes.MapEntry):
            reading[node] = [source(e.src) for e in state.in_edges(node)]
            check_reads(node, reading[node])
        elif isinstance(node, dace.nodes.MapExit):
            read = reading.pop(state.entry_node(node))
        elif isinstance(node, dace.nodes.Tasklet) and state.entry_node(node) is None:
            read = [source(e.src) for e in state.in_edges(node)]
        if read is not None:
            written = [e.dst for e in state.out_edges(node)]
            check_reads(node, read)
            assert not {n.data for n in read} & {n.data for n in written}, f"{node} reads the buffer it writes"
            for data_node in written:
                held[data_node.data] = tensor(data_node)
        for edge in state.out_edges(node):
            waiting[edge.dst] -= 1
            if waiting[edge.dst] == 0:
                ready.append(edge.dst)


def test_random_graphs_plans_are_verified_and_safe_in_every_order():
    """2,000 random DAGs with views, fans and long-lived tensors: the verifier accepts every plan, and executing
    the ops in random topological orders never reads a buffer that holds another tensor by then."""
    rng = np.random.default_rng(7)
    shared = 0
    for _ in range(2000):
        sdfg = _random_state(rng, int(rng.integers(4, 30)))
        plan = reuse_transients(sdfg)
        shared += len(plan.renamed)
        verify_buffer_sharing(sdfg, plan.tenants)
        for _ in range(3):
            _simulate(sdfg.start_state, plan.tenants, rng)
    assert shared > 2000  # the plans do share: the test is not vacuous


def test_the_verifier_refuses_a_buffer_shared_by_live_tensors(helpers):
    """Two independent branches (u, v of _chain) are live together: a plan putting v into u's buffer is refused,
    and so is a plan made before DaCe's simplification rewrote the access nodes it was made for."""
    sdfg, _ = lower(sdflow.optimize(sdflow.load(_chain(helpers, np.random.default_rng(0))), "O1"))
    by_name = {n.data: n for n in sdfg.start_state.data_nodes()}
    tenants = {by_name["u"]: "u", by_name["v"]: "v"}
    by_name["v"].data = "u"
    with pytest.raises(VerificationError, match="may be live at the same time"):
        verify_buffer_sharing(sdfg, tenants)

    sdfg, _ = lower(sdflow.optimize(sdflow.load(_chain(helpers, np.random.default_rng(0))), "O1"))
    plan = reuse_transients(sdfg)
    expand(sdfg)
    with pytest.raises(VerificationError, match="not in the SDFG|no tenant"):
        verify_buffer_sharing(sdfg, plan.tenants)


def test_a_map_never_writes_into_the_buffer_it_reads(helpers, rng, monkeypatch):
    """ConvNeXt's stem: Conv -> Transpose(0,2,3,1) -> LayerNormalization. After expansion the Transpose is one map
    reading the Conv's output at its entry and writing its own at its exit; the entry is an ancestor of the exit,
    yet the two tensors must not share a buffer (an in-place transpose gave ConvNeXt and Swin wrong numbers). The
    verifier refuses such a plan, and the model matches ONNX Runtime."""
    monkeypatch.setenv("SDFLOW_GRAPH_CACHE", "0")
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[4, 4], strides=[4, 4]),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["t", "w", "b"], ["y"], axis=-1, epsilon=1e-6)]
    weights = {"cw": rng.standard_normal((16, 3, 4, 4)).astype(F), "cb": rng.standard_normal(16).astype(F),
               "w": rng.standard_normal(16).astype(F), "b": rng.standard_normal(16).astype(F)}
    model = helpers.make_model(nodes, [("x", F, ["n", 3, 32, 32])], [("y", F, ["n", 8, 8, 16])], weights)
    helpers.check_against_ort(model, [{"x": rng.standard_normal((2, 3, 32, 32)).astype(F)}], passes="O0")

    sdfg, _ = lower(sdflow.load(model))
    expand(sdfg)
    state = sdfg.start_state
    by_name = {n.data: n for n in state.data_nodes()}
    assert "t" in by_name and "c" in by_name  # the plan above kept them apart
    tenants = {by_name["c"]: "c", by_name["t"]: "t"}
    by_name["t"].data = "c"
    for edge in state.in_edges(by_name["t"]):
        for tree_edge in state.memlet_tree(edge):
            tree_edge.data.data = "c"
    with pytest.raises(VerificationError, match="may be live at the same time"):
        verify_buffer_sharing(sdfg, tenants)
