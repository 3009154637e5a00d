"""Pure model code: no I/O, no distribution."""

from tleg_dist.models.arch import ViTArch
from tleg_dist.models.learngene import BLOCK_PARAMS, Learngene, expand
from tleg_dist.models.aux_net import AuxNet
from tleg_dist.models.des_net import build_des_net

__all__ = ["ViTArch", "BLOCK_PARAMS", "Learngene", "expand", "AuxNet", "build_des_net"]
