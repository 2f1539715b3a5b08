"""sdflow's passes as DaCe transformations, so DaCe's VS Code extension lists and applies them.

Every registered pass becomes a ``SingleStateTransformation`` named ``Sdflow<PassClass>`` (``SdflowFoldConstants``)
whose DaCe properties are the pass's options. It matches once per graph, at the graph's first op node, and only
where a dry run on a copy says the pass would change something; applying it runs the pass on the whole graph and
verifies the IR. The extension loads ``sdflow/vscode_transformations.py``, which imports this module.
"""
from __future__ import annotations

from dace.properties import Property, make_properties
from dace.sdfg import utils as sdutil
from dace.transformation import transformation as xf

from sdflow.ir import Graph, OpNode, verify
from sdflow.passes import Pass, PassContext, available_passes

__all__ = ["PassTransformation", "TRANSFORMATIONS"]

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class PassTransformation:
    """What the generated classes share: one sdflow pass over the whole graph. A mixin, not a DaCe
    transformation itself, so DaCe does not list it."""

    pass_class: type[Pass]
    first_op = xf.PatternNode(OpNode)

    @classmethod
    def expressions(cls):
        return [sdutil.node_path_graph(cls.first_op)]

    def annotates_memlets(self) -> bool:
        return True  # passes write full-array memlets themselves; nothing for DaCe to propagate

    def make_pass(self) -> Pass:
        return self.pass_class(**{f.name: getattr(self, f.name) for f in self.pass_class.options()})

    def can_be_applied(self, graph, expr_index, sdfg, permissive=False) -> bool:
        if sdfg.parent is not None or graph is not sdfg.start_state:
            return False
        ir = Graph(sdfg)
        op_nodes = ir.op_nodes()
        if not op_nodes or op_nodes[0] is not self.first_op:
            return False
        trial = ir.copy()
        trial.attach_external_constants()
        return self.make_pass().apply(trial, PassContext()).modified

    def apply(self, graph, sdfg) -> None:
        ir = Graph(sdfg)
        ir.attach_external_constants()
        self.make_pass().apply(ir, PassContext())
        verify(ir)


def _transformation_for(pass_class: type[Pass]) -> type:
    namespace = {"pass_class": pass_class, "__doc__": f"sdflow pass {pass_class.name}: {pass_class.summary()}",
                 "__module__": __name__}
    for field in pass_class.options():
        dtype = _TYPES.get(field.type, field.type)
        namespace[field.name] = Property(dtype=dtype, default=field.default, desc=f"option of {pass_class.name}")
    name = "Sdflow" + pass_class.__name__
    cls = make_properties(type(name, (PassTransformation, xf.SingleStateTransformation), namespace))
    cls.__qualname__ = name
    globals()[name] = cls
    return cls


TRANSFORMATIONS = {name: _transformation_for(cls) for name, cls in available_passes().items()}
__all__ += [cls.__name__ for cls in TRANSFORMATIONS.values()]
