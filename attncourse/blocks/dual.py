"""Dual attention (DANet): position attention (PAM) and channel attention (CAM) in parallel.

Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019, arXiv:1809.02983.
The blocks of module 06 are registered here.
"""
