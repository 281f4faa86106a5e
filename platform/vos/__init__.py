"""Video object segmentation: label propagation over feature affinities and the learned refinement model
(arrays in, arrays out)."""
