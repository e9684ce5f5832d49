"""Training: the recipe and resumable fitting, checkpoints, progress tracking, augmentation,
distillation.
"""
