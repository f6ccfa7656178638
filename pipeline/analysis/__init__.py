"""Analyses and plots of trained models and evaluation results."""
