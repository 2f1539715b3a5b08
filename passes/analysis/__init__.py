"""Analyses over the IR: they read a graph and report, never rewrite it."""
from .data_movement import OpTraffic, operator_traffic

__all__ = ["OpTraffic", "operator_traffic"]
