"""``sc.nn``: traceable model building blocks with Hugging Face parameter names."""
from ..frontend.tracer import Parameter  # noqa: F401
from .attention import Attention, merge_heads, split_heads  # noqa: F401
from .conv import Conv2d  # noqa: F401
from .bert import (BertAttention, BertEmbeddings, BertEncoder, BertIntermediate, BertLayer, BertModel,  # noqa: F401
                   BertOutput, BertPooler, BertSelfAttention, BertSelfOutput)
from .layers import ACTIVATIONS, MLP, Embedding, Linear, init_weight  # noqa: F401
from .module import Module, ModuleList  # noqa: F401
from .norm import LayerNorm, RMSNorm  # noqa: F401
from .transformer import CausalLM, DecoderLayer, DecoderModel  # noqa: F401
from .moe import MoE  # noqa: F401
from .mla import MLA, MLACausalLM  # noqa: F401
from .vision import CLIPVisionModel, ImageNormalize, SiglipVisionModel, ViTModel  # noqa: F401
from .llava import LlavaForConditionalGeneration  # noqa: F401
