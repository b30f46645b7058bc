"""`planexec bench`: the same tasks through planexec and a ReAct baseline, side by side."""
