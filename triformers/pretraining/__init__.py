"""Pre-training from scratch: the corpus (read, tokenized once, packed), each dialect's recipe, and `pretrain`."""

from .corpus import PackedBlocks, TokenCorpus, data_files, default_corpus, iter_documents, tokenize_corpus
from .pretrain import AUTO_CLASSES, PretrainOptions, prepare, pretrain
from .recipes import FAMILY_DIALECTS, build_config, build_objective, resolve_dialect, train_family_tokenizer
from .sizes import ModelSize

__all__ = ["PackedBlocks", "TokenCorpus", "data_files", "default_corpus", "iter_documents", "tokenize_corpus",
           "AUTO_CLASSES", "PretrainOptions", "prepare", "pretrain", "FAMILY_DIALECTS", "build_config",
           "build_objective", "resolve_dialect", "train_family_tokenizer", "ModelSize"]
