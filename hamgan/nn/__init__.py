"""Neural-network modules of hamgan: context blocks (Hamburger, self-attention, YLG), layers and networks."""

from hamgan.nn.attention import FullSelfAttention, SelfAttention
from hamgan.nn.hamburger import Hamburger
from hamgan.nn.networks import Discriminator, Generator
from hamgan.nn.ylg import YLGAttention

__all__ = ["Discriminator", "FullSelfAttention", "Generator", "Hamburger", "SelfAttention", "YLGAttention"]
