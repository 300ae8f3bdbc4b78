"""Vocabulary: capabilities, keys, the world state, operations and events."""
