"""Neural-network modules of hamgan: context blocks (Hamburger, self-attention), layers and networks."""

from hamgan.nn.attention import FullSelfAttention, SelfAttention
from hamgan.nn.hamburger import Hamburger
from hamgan.nn.networks import Discriminator, Generator

__all__ = ["Discriminator", "FullSelfAttention", "Generator", "Hamburger", "SelfAttention"]
