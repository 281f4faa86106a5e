"""Video semantic segmentation: heads on backbone features, their training and prediction (arrays in, arrays out)."""
