"""Interoperability with other implementations' files (the authors' released checkpoints)."""
