"""Fine-tuning on a project's labels: VSS segmentation heads and the VOS refinement decoder.

`features` caches multi-layer backbone features per frame once; `vss` trains and applies heads on
them (or fine-tunes the backbone with layer-wise LR decay); `vos` trains a decoder that refines
label-propagation masks; `project` connects both to the database (labeled frames, checkpoints,
metrics, stored predictions and per-frame uncertainty).
"""
