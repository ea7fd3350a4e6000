"""Text generation for decoder-only and encoder-decoder models: greedy, sampling, beam search, streaming.

`model.generate(...)` (on every triformers model) calls `generate` here. Modules: `config`
(`GenerationConfig`, transformers' settings object and its generation_config.json), `prepare` (merging the
settings, sorting the keywords, planning the stopping), `options` (every setting checked and resolved),
`processors` and `warpers` (logits processors and sampling filters, in transformers' order), `stopping`
(stopping criteria), `runner` (feeding the model through a preallocated KV cache), `search` and `beam`
(the decoding loops), `outputs` (what `return_dict_in_generate=True` returns), `streamer` (text as it is
produced).
"""

from .beam import beam_search
from .config import GenerationConfig
from .options import GenerationOptions, resolve_options
from .outputs import (GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput, GenerateDecoderOnlyOutput,
                      GenerateEncoderDecoderOutput)
from .processors import LogitsProcessor, LogitsProcessorList, build_processors
from .search import generate, sample
from .stopping import (EosTokenCriteria, MaxLengthCriteria, MaxTimeCriteria, StoppingCriteria, StoppingCriteriaList,
                       StopStringCriteria)
from .streamer import TextIteratorStreamer, TextStreamer

__all__ = ["generate", "sample", "beam_search", "GenerationConfig", "GenerationOptions", "resolve_options",
           "build_processors", "LogitsProcessor", "LogitsProcessorList", "StoppingCriteria", "StoppingCriteriaList",
           "MaxLengthCriteria", "MaxTimeCriteria", "EosTokenCriteria", "StopStringCriteria", "TextStreamer",
           "TextIteratorStreamer", "GenerateDecoderOnlyOutput", "GenerateEncoderDecoderOutput",
           "GenerateBeamDecoderOnlyOutput", "GenerateBeamEncoderDecoderOutput"]
