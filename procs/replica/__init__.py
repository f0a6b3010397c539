"""Hot standby: the journal streamed to a secondary over TCP (issue 9)."""
