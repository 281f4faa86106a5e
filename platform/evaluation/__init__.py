"""Metrics: DAVIS J&F for VOS, mIoU for VSS (arrays in, numbers out)."""
