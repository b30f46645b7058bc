"""The shell around the graph: configuration, models, persistence, usage, the CLI."""
