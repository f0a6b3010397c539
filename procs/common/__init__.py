"""What every process shares: the record types that cross rings, their slot codec, the
enumerations and integer types they use, and the result codes."""
