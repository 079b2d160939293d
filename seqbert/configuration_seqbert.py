"""SeqBERT model configuration.

Self-contained on purpose: this file is copied into every saved model folder so that
``AutoConfig.from_pretrained(folder, trust_remote_code=True)`` works without seqbert installed.
It may import only ``transformers`` (and ``torch`` indirectly).
"""

from __future__ import annotations

from transformers import PretrainedConfig

# How a bidirectional model forms its next-item query (``SeqBertConfig.next_item_query``): "mask" = the
# appended [MASK]'s state (BERT4Rec); "causal" = the last event's state in a left-to-right pass of the
# same weights; "mask+causal" = the mean of both. The last two are for models trained with
# ``next_item_loss_weight`` > 0. A causal model always queries left to right (its value stays "mask").
NEXT_ITEM_QUERIES = ("mask", "causal", "mask+causal")


def check_next_item_query(query: str, attention_type: str) -> None:
    """Raise ``ValueError`` unless ``query`` is one of :data:`NEXT_ITEM_QUERIES` and fits ``attention_type``."""
    if query not in NEXT_ITEM_QUERIES:
        raise ValueError(f"next_item_query must be one of {NEXT_ITEM_QUERIES}, got {query!r}.")
    if query != "mask" and attention_type != "bidirectional":
        raise ValueError(f"next_item_query {query!r} applies to the bidirectional model only.")


class SeqBertConfig(PretrainedConfig):
    r"""Configuration of a SeqBERT behavior-sequence encoder.

    Hyperparameter names follow BERT verbatim; only the behavior-specific fields are new.
    Token ids ``[0, num_special_tokens)`` are special (pad, mask, cls, sep, unk and optional hash
    buckets); ids ``[num_special_tokens, vocab_size)`` are catalog items.

    Example:

    ```python
    >>> from seqbert import SeqBertConfig, SeqBertForMaskedBehaviorModeling
    >>> config = SeqBertConfig(vocab_size=105, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    >>> model = SeqBertForMaskedBehaviorModeling(config)
    >>> model.config.num_items
    100
    ```
    """

    model_type = "seqbert"

    vocab_size: int = 1005  # specials + items
    num_special_tokens: int = 5  # ids below this are never predicted as items
    num_behaviors: int = 8  # pad, mask + the six canonical event types
    num_time_buckets: int = 26  # pad, mask, first-event + log2 gap buckets
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 256
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.2
    attention_probs_dropout_prob: float = 0.2
    max_position_embeddings: int = 256  # longest sequence (events + appended mask) the model sees
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    mask_token_id: int = 1
    behavior_loss_weight: float = 0.1  # weight of the event-type prediction loss in pretraining
    label_smoothing: float = 0.0
    attention_type: str = "bidirectional"  # "bidirectional" (BERT, Cloze) | "causal" (SASRec-style next item)
    loss_type: str = "full"  # item loss: "full" softmax over the catalog | "sampled" softmax with log-Q correction
    num_negatives: int = 1024  # shared negatives per batch when loss_type == "sampled"
    next_item_loss_weight: float = 0.0  # bidirectional only: + weight x a left-to-right next-item loss (same weights)
    next_item_query: str = "mask"  # inference, bidirectional only: "mask" | "causal" | "mask+causal" (NEXT_ITEM_QUERIES)
    num_item_categories: int = 0  # > 0: add a learned category (e.g. brand) embedding to every item, in and out
    categories_per_item: int = 1  # > 1: each item has up to this many categories (brand, category path ...), summed
    repeat_bias_buckets: int = 0  # > 0: learned score offset of items already in the input (event type x recency)
    classifier_dropout: float | None = None
    # Item-candidate classification (click / item conversion), SeqBertForSequenceClassification only:
    candidate_match: bool = False  # learned embedding of each event's match with the candidate (item / category)
    candidate_popularity: bool = False  # log1p(candidate's events before the prediction time) x a learned vector
    # > 0: the row's tabular features (scaled with ``tabular_scaler``: names, kept, mean, std, clip) enter the head
    # beside the pooled state, BST-style (Chen et al. 2019, https://arxiv.org/abs/1905.06874), with a linear term too.
    num_tabular_features: int = 0
    tabular_scaler: dict | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if not 0 < self.num_special_tokens < self.vocab_size:
            raise ValueError(
                f"num_special_tokens ({self.num_special_tokens}) must be in (0, vocab_size={self.vocab_size})."
            )
        if self.num_behaviors < 3 or self.num_time_buckets < 3:
            raise ValueError(
                f"num_behaviors ({self.num_behaviors}) and num_time_buckets ({self.num_time_buckets}) "
                "must each be >= 3 (pad, mask and at least one real value)."
            )
        if self.attention_type not in ("bidirectional", "causal"):
            raise ValueError(f"attention_type must be 'bidirectional' or 'causal', got {self.attention_type!r}.")
        if self.loss_type not in ("full", "sampled"):
            raise ValueError(f"loss_type must be 'full' or 'sampled', got {self.loss_type!r}.")
        if self.next_item_loss_weight < 0:
            raise ValueError(f"next_item_loss_weight must be >= 0, got {self.next_item_loss_weight}.")
        if self.next_item_loss_weight > 0 and self.attention_type != "bidirectional":
            raise ValueError("next_item_loss_weight > 0 is an auxiliary loss of the bidirectional model only.")
        check_next_item_query(self.next_item_query, self.attention_type)
        if self.num_item_categories < 0:
            raise ValueError(f"num_item_categories must be >= 0, got {self.num_item_categories}.")
        if self.categories_per_item < 1:
            raise ValueError(f"categories_per_item must be >= 1, got {self.categories_per_item}.")
        if self.repeat_bias_buckets < 0:
            raise ValueError(f"repeat_bias_buckets must be >= 0, got {self.repeat_bias_buckets}.")
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        super().__post_init__(**kwargs)

    @property
    def num_items(self) -> int:
        """Number of catalog items the model can predict."""
        return self.vocab_size - self.num_special_tokens


__all__ = ["NEXT_ITEM_QUERIES", "SeqBertConfig", "check_next_item_query"]
