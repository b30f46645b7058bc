"""The plan-and-execute graph: state, schemas, one module per node, and the builder."""
