"""The exchange's pure state machines and their replay: order books, the matching engine, the
sequencer, accounts and risk, recovery. Every process shell imports these; no process package
imports another (STYLE.md)."""
