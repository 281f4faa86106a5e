"""Dense correspondence encoder trained beside the ViT: a small stride-8 conv net whose features,
compared through a local windowed affinity, reconstruct one frame's Lab colour from another
(MAST, Lai et al., 2020), for label propagation.

Modules: `colour` RGB -> CIE-Lab and Lab cells; `local_attention` windowed softmax affinity (cost
linear in pixels), the KL between two such affinities, and the dense reference; `encoder` the conv
net + Lab skip; `objective` the colour-reconstruction loss; `distil` one-pass distillation of the
three dropped-channel views; `io` save/load of the encoder; `features` frames -> dense features.
"""
from segloop.pretrain.dense.encoder import DenseEncoder, EncoderConfig, inference_copy
from segloop.pretrain.dense.features import dense_features
from segloop.pretrain.dense.io import DENSE_NAME, DenseLoadError, load_dense_encoder, save_dense_encoder
from segloop.pretrain.dense.local_attention import dense_masked_attention, local_affinity_kl, local_attention
from segloop.pretrain.dense.objective import reconstruction_loss

__all__ = ["DENSE_NAME", "DenseEncoder", "DenseLoadError", "EncoderConfig", "dense_features",
           "dense_masked_attention", "inference_copy", "load_dense_encoder", "local_affinity_kl", "local_attention",
           "reconstruction_loss", "save_dense_encoder"]
