"""Analyses over the IR: they read a graph and report, never rewrite it."""
from .data_movement import VIEW_OPS, OpTraffic, Totals, evaluate, op_flop, operator_traffic, totals

__all__ = ["OpTraffic", "Totals", "operator_traffic", "totals", "op_flop", "evaluate", "VIEW_OPS"]
