"""Generative models of chest X-rays: registry, losses, DiffAugment, one trainer, sampling."""
