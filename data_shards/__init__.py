"""Raw corpora and images → webdataset shards + manifest → the resumable, rank-aware reader."""

from data_shards.batches import ImageBatch, TextBatch
from data_shards.errors import UserError
from data_shards.plan import ReaderConfig
from data_shards.reader import ShardReader
from data_shards.shard_images import ShardImagesConfig, shard_images
from data_shards.shard_set import ShardSet
from data_shards.shard_text import ShardTextConfig, shard_text
from data_shards.vocab import Vocab

__all__ = [
    "UserError",
    "ImageBatch",
    "ReaderConfig",
    "ShardImagesConfig",
    "ShardReader",
    "ShardSet",
    "ShardTextConfig",
    "TextBatch",
    "Vocab",
    "shard_images",
    "shard_text",
]
