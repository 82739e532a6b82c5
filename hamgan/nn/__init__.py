"""Neural-network modules of hamgan: context blocks (Hamburger, self-attention, YLG), layers and networks.

Usable without the rest of hamgan: nothing imported here reads :mod:`hamgan.config`. The networks take plain
arguments (``Generator(resolution=128, num_classes=1000, channels=64, context=HamburgerSpec(dim=256))``); a run's
config builds them through :mod:`hamgan.nn.from_config` (``generator_from_config``, ``discriminator_from_config``),
which is not imported here for that reason.
"""

from hamgan.nn.attention import FullSelfAttention, SelfAttention
from hamgan.nn.context import AttentionSpec, HamburgerSpec, YLGSpec
from hamgan.nn.hamburger import Hamburger
from hamgan.nn.networks import Discriminator, Generator
from hamgan.nn.ylg import YLGAttention

__all__ = ["AttentionSpec", "Discriminator", "FullSelfAttention", "Generator", "Hamburger", "HamburgerSpec",
           "SelfAttention", "YLGAttention", "YLGSpec"]
