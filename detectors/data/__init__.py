"""Data sets: the COCO-format reader and the synthetic shapes data set of the shipped model."""
