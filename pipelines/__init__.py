"""Loopline pipelines: they only wire components together."""
