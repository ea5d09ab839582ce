"""aimo3-recipe: post-training and inference for competition mathematics (AIMO3)."""

__version__ = "0.1.0"
