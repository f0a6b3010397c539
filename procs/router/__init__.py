"""The router process: the exchange's single sequencer, its risk checks and its journal."""
