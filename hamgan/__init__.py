"""hamgan: class-conditional GANs with a Hamburger (matrix decomposition) or self-attention context block."""

__version__ = "0.1.0"
