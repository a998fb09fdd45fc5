"""Branch attention: attend over branches or kernels — Selective Kernel (SKNet), Highway, CondConv,
Dynamic Convolution and ResNeSt split attention.

Li et al., "Selective Kernel Networks", CVPR 2019, arXiv:1903.06586. The blocks of module 07 are
registered here.
"""
