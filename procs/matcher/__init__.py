"""The matcher process: deterministic per-symbol order books behind ``execute(command)``.

``reference_book`` is the obviously correct, slow implementation that the fast book is
contract-tested against; both turn a command into the same list of event records.
"""
