"""The supervisor: rings, processes, restarts, clean shutdown (issue 8)."""
