"""Evaluation: open-vocabulary segmentation metrics and the multi-view evaluator."""
