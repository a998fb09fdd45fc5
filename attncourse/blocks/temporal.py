"""Spatial-temporal attention for video re-identification (STA).

Fu et al., "STA: Spatial-Temporal Attention for Large-Scale Video-based Person Re-Identification",
AAAI 2019, arXiv:1811.04129. The blocks of module 08 are defined here.
"""
