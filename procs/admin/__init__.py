"""Operator commands into a running exchange (`ringex admin`)."""
