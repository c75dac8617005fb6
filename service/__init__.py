"""LTX video generation service."""
