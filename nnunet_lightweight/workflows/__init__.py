"""Workflows that run the layers below end to end: the ablation study, the demo and its report, the end-to-end
prediction timing."""
