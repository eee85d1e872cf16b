"""Workflows that chain the library's stages (training, search, evaluation) into studies and jobs."""
