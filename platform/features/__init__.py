"""Backbone features for the downstream models: multi-layer ViT tokens per frame, cached per video."""
