"""Video object segmentation: label propagation over feature affinities, the memory VOS model (space-time memory
read), self-validation of propagators, and the older refinement decoder (arrays in, arrays out)."""
