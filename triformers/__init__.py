"""triformers: the three transformer families (encoder-only, decoder-only, encoder-decoder) from
scratch in PyTorch, behind the Auto loading API, with Hugging Face checkpoint parity."""

from .auto import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                   AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                   AutoModelForTokenClassification, AutoTokenizer)
from .config import ModelConfig
from .dialects import register
from .errors import (CheckpointError, ConfigError, InputError, ModelNotFoundError, TokenizerError,
                     TriformersError)
from .models import DecoderModel, EncoderDecoderModel, EncoderModel, ModelOutput
from .pipelines import pipeline

__version__ = "0.1.0"

__all__ = [
    "AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModelForQuestionAnswering",
    "AutoModelForSeq2SeqLM", "AutoModelForSequenceClassification", "AutoModelForTokenClassification",
    "AutoTokenizer", "ModelConfig", "register", "EncoderModel", "DecoderModel", "EncoderDecoderModel",
    "ModelOutput", "TriformersError", "ConfigError", "CheckpointError", "InputError", "ModelNotFoundError",
    "TokenizerError", "pipeline",
]
