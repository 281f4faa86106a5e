"""Self-supervised loss terms, one module per paper: DINO, iBOT, KoLeo, contrastive random walk."""
from segloop.pretrain.losses.dino import DINOLoss, centered_softmax, sinkhorn_knopp
from segloop.pretrain.losses.ibot import IBOTPatchLoss
from segloop.pretrain.losses.koleo import KoLeoLoss
from segloop.pretrain.losses.random_walk import random_walk_loss

__all__ = ["DINOLoss", "IBOTPatchLoss", "KoLeoLoss", "centered_softmax", "random_walk_loss", "sinkhorn_knopp"]
