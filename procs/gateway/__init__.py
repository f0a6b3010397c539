"""The FIX 4.4 gateway: codec, dictionary, session layer (sans-I/O), order entry, the shell."""
