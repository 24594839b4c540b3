"""The agent graph model, its loader for the AutoGPT export format, and validation. No Dagster."""

from agent_defs.graph.loader import GraphLoadError, load_graph_file, parse_graph
from agent_defs.graph.model import Graph, GraphProblem, Link, Node

__all__ = ["Graph", "GraphLoadError", "GraphProblem", "Link", "Node", "load_graph_file", "parse_graph"]
