"""seqbert: pretrained Transformers for e-commerce behavior sequences.

Importing seqbert registers its classes with the transformers Auto classes, so
``AutoModel.from_pretrained(folder)`` works without ``trust_remote_code`` for installed users,
and marks them for ``register_for_auto_class`` so saved folders carry their code for everyone else.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from .configuration_seqbert import SeqBertConfig
from .modeling_seqbert import (
    MaskedBehaviorModelingOutput,
    SeqBertForMaskedBehaviorModeling,
    SeqBertForSequenceClassification,
    SeqBertModel,
    SeqBertPreTrainedModel,
)
from .tokenization_seqbert import BehaviorTokenizer
from .inference import Classifier, Recommender
from .pipelines import register_pipelines

__version__ = "0.1.0"

AutoConfig.register(SeqBertConfig.model_type, SeqBertConfig, exist_ok=True)
AutoModel.register(SeqBertConfig, SeqBertModel, exist_ok=True)
AutoModelForMaskedLM.register(SeqBertConfig, SeqBertForMaskedBehaviorModeling, exist_ok=True)
AutoModelForSequenceClassification.register(SeqBertConfig, SeqBertForSequenceClassification, exist_ok=True)
AutoTokenizer.register(SeqBertConfig, tokenizer_class=BehaviorTokenizer, exist_ok=True)

SeqBertConfig.register_for_auto_class()
SeqBertModel.register_for_auto_class("AutoModel")
SeqBertForMaskedBehaviorModeling.register_for_auto_class("AutoModelForMaskedLM")
SeqBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
BehaviorTokenizer.register_for_auto_class("AutoTokenizer")
register_pipelines()  # transformers.pipeline("next-behavior-recommendation" | "behavior-classification", ...)

__all__ = [
    "BehaviorTokenizer",
    "Classifier",
    "Recommender",
    "MaskedBehaviorModelingOutput",
    "SeqBertConfig",
    "SeqBertForMaskedBehaviorModeling",
    "SeqBertForSequenceClassification",
    "SeqBertModel",
    "SeqBertPreTrainedModel",
    "__version__",
]
