"""Data sources behind one narrow interface (`DataBundle`): Fashion-MNIST, ImageFolder, synthetic, FFCV."""

from tleg_dist.data.base import Batch, DataBundle, TrainStream
from tleg_dist.data.build import build_data
from tleg_dist.data.errors import BadImageError, DataError
from tleg_dist.data.sampler import shard_indices

__all__ = ["Batch", "DataBundle", "TrainStream", "build_data", "BadImageError", "DataError", "shard_indices"]
