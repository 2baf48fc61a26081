"""Helpers shared by the tests (not test modules): the shipped model and its exports, small variants of
every family, HuggingFace models, MSDA problems, plugin graphs, media files."""
