"""The stable one-line-per-op text form of a graph (used by golden tests and ``sdflow inspect``)."""
from __future__ import annotations

from .graph import Graph
from .nodes import OpNode

__all__ = ["print_graph", "format_attributes"]


def format_attributes(node: OpNode) -> str:
    """Attributes that differ from the schema default, as ``{name=value, ...}`` ('' when none)."""
    properties = type(node).__properties__
    shown = []
    for onnx_name, prop_name in sorted(node.attribute_names.items()):
        value = getattr(node, prop_name)
        if value is None or value == properties[prop_name].default:
            continue
        shown.append(f"{onnx_name}={_format_value(value)}")
    return "{" + ", ".join(shown) + "}" if shown else ""


def _format_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and len(value) > 40:
        return repr(value[:37] + "...")
    return repr(value) if isinstance(value, str) else str(value)


def print_graph(graph: Graph) -> str:
    """Header with the signature, one line per constant, one line per op in topological order."""
    def typed(name):
        return f"{name}: {graph.tensor_type(name)}"

    lines = [f"graph {graph.name}({', '.join(typed(n) for n in graph.inputs)})"
             f" -> ({', '.join(typed(n) for n in graph.outputs)})"]
    for name in sorted(graph.constants):
        lines.append(f"  const {typed(name)}")
    for node in graph.op_nodes():
        outputs = [t or "_" for t in graph.node_outputs(node)]
        while outputs and outputs[-1] == "_":
            outputs.pop()
        inputs = [t or "_" for t in graph.node_inputs(node)]
        while inputs and inputs[-1] == "_":
            inputs.pop()
        attributes = format_attributes(node)
        types = ", ".join(str(graph.tensor_type(t)) for t in graph.node_outputs(node) if t)
        lines.append(f"  {', '.join(outputs)} = {node.op_type}({', '.join(inputs)})"
                     f"{' ' + attributes if attributes else ''} : {types}")
    return "\n".join(lines) + "\n"
