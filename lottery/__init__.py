"""Draws lottery tickets: data, models, magnitude pruning, IMP, RTL, written as runs."""
