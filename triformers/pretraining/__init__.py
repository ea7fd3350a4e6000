"""Pre-training from scratch: the corpus (read, tokenized once, packed), each dialect's recipe, and `pretrain`."""

from .corpus import PackedBlocks, TokenCorpus, data_files, default_corpus, iter_documents, tokenize_corpus
from .pretrain import AUTO_CLASSES, PretrainOptions, prepare, pretrain, pretraining_arguments
from .recipes import (DEFAULT_FAMILY, FAMILY_DIALECTS, build_config, build_objective, resolve_dialect, size_of,
                      train_family_tokenizer)
from .sizes import GENERIC_SIZE, ModelSize, resolve_size

__all__ = ["PackedBlocks", "TokenCorpus", "data_files", "default_corpus", "iter_documents", "tokenize_corpus",
           "AUTO_CLASSES", "PretrainOptions", "prepare", "pretrain", "pretraining_arguments", "DEFAULT_FAMILY",
           "FAMILY_DIALECTS", "build_config", "build_objective", "resolve_dialect", "size_of",
           "train_family_tokenizer", "GENERIC_SIZE", "ModelSize", "resolve_size"]
