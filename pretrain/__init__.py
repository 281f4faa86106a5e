"""Self-supervised pretraining on the user's own footage (segloop.pretrain)."""
