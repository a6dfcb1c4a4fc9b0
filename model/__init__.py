"""ActFusion: one diffusion model for temporal action segmentation and long-term anticipation.

Tensors inside the model are (batch, channels, time), as in the authors' code.
"""
