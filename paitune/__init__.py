"""paitune: a distributed search system for pruning at initialization (PaI)."""

__version__ = "0.1.0"
