"""Placeholder entry so `pip install -e .` works while the CLI is assembled; replaced below."""
