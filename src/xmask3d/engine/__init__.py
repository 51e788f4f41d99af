"""Training and evaluation engine: the loop, checkpoints, torchrun/DDP helpers, the evaluator."""
