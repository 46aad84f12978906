"""Lung segmentation: a MONAI U-Net trained on the dataset's lung masks, and its masks."""
