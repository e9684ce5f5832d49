"""Evaluation: metrics and figures, the corruption suite and robustness."""
