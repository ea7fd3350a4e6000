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

# ---- the Trainer, as transformers has it (training/) ------------------------------------------------------
from .training import (DataCollatorForLanguageModeling, DataCollatorForSeq2Seq, DataCollatorForTokenClassification,
                       DataCollatorWithPadding, DefaultDataCollator, EarlyStoppingCallback, EvalPrediction,
                       PredictionOutput, Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainerCallback,
                       TrainerControl, TrainerState, TrainingArguments, TrainOutput, default_data_collator, set_seed)

__all__ += [
    "Trainer", "TrainingArguments", "Seq2SeqTrainer", "Seq2SeqTrainingArguments", "TrainerCallback", "TrainerState",
    "TrainerControl", "EarlyStoppingCallback", "TrainOutput", "PredictionOutput", "EvalPrediction",
    "DataCollatorWithPadding", "DataCollatorForLanguageModeling", "DataCollatorForSeq2Seq",
    "DataCollatorForTokenClassification", "DefaultDataCollator", "default_data_collator", "set_seed",
]
# ---- end of the Trainer block ------------------------------------------------------------------------------

# ---- generation, as transformers has it (generation/) ------------------------------------------------------
from .generation import (EosTokenCriteria, GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput,  # noqa: E402
                         GenerateDecoderOnlyOutput, GenerateEncoderDecoderOutput, GenerationConfig, LogitsProcessor,
                         LogitsProcessorList, MaxLengthCriteria, MaxTimeCriteria, StoppingCriteria,
                         StoppingCriteriaList, StopStringCriteria, TextIteratorStreamer, TextStreamer)

__all__ += [
    "GenerationConfig", "LogitsProcessor", "LogitsProcessorList", "StoppingCriteria", "StoppingCriteriaList",
    "MaxLengthCriteria", "MaxTimeCriteria", "EosTokenCriteria", "StopStringCriteria", "TextStreamer",
    "TextIteratorStreamer", "GenerateDecoderOnlyOutput", "GenerateEncoderDecoderOutput",
    "GenerateBeamDecoderOnlyOutput", "GenerateBeamEncoderDecoderOutput",
]
# ---- end of the generation block ---------------------------------------------------------------------------
