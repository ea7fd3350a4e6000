"""The three family models and their outputs."""

from .base import TransformerModel
from .decoder import DecoderModel
from .encoder import EncoderModel
from .encoder_decoder import EncoderDecoderModel, shift_right
from .outputs import ModelOutput
from .surface import DynamicCache

FAMILIES = {cls.family: cls for cls in (EncoderModel, DecoderModel, EncoderDecoderModel)}

__all__ = ["TransformerModel", "EncoderModel", "DecoderModel", "EncoderDecoderModel", "ModelOutput",
           "shift_right", "FAMILIES", "DynamicCache"]
