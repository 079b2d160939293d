"""SeqBERT: a BERT-style bidirectional encoder over behavior sequences.

Self-contained on purpose (imports only torch, transformers and the sibling config file), because
``register_for_auto_class`` copies it into every saved folder for ``trust_remote_code`` loading.

Differences from BERT, each deliberate:
- Unlike BERT's token-type embeddings, every position adds an *event-type* (behavior) and a
  *time-gap bucket* embedding to the item embedding.
- Unlike BERT, positions count back from the most recent event (0 = last), so the same position id
  means "k events ago" whatever the sequence length or padding side.
- Unlike BERT, layers are pre-LayerNorm with a final LayerNorm (more stable at the high learning
  rates sequential recommenders train with; Xiong et al. 2020, https://arxiv.org/abs/2002.04745).
- Attention is ``torch.nn.functional.scaled_dot_product_attention`` (no library internals); with
  ``attention_type="causal"`` the same encoder becomes a SASRec-style left-to-right model (Kang &
  McAuley 2018, https://arxiv.org/abs/1808.09781) trained to predict the next item at every position.
- Padding is skipped: when a batch is mostly padding (short behavior sequences padded to the longest
  row), every per-token operation runs on the real tokens only (the "unpadding" of ModernBERT, Warner
  et al. 2024) and attention runs within groups of rows of similar length, without a variable-length kernel.
- ``loss_type="sampled"`` replaces the full softmax by a sampled softmax over ``num_negatives`` shared
  negatives with log-Q correction (Jean et al. 2015; Yi et al. 2019), for catalogs too large to score.
- ``repeat_bias_buckets`` > 0 adds a learned offset (event type x recency) to the score of every item
  already in the sequence, in every loss and at inference (repeat-aware scoring; RepeatNet, Ren et al.
  2019, https://arxiv.org/abs/1812.02646, in its smallest form).
- Pretraining (BERT4Rec Cloze, Sun et al. 2019, https://arxiv.org/abs/1904.06690) predicts the
  masked item with a decoder tied to the item embeddings (plus bias) and, as an auxiliary task,
  the masked event type. Only real items are scored; special tokens never are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging

from .configuration_seqbert import SeqBertConfig, check_next_item_query

_AUTO_MAP = {
    "AutoConfig": "configuration_seqbert.SeqBertConfig",
    "AutoModel": "modeling_seqbert.SeqBertModel",
    "AutoModelForMaskedLM": "modeling_seqbert.SeqBertForMaskedBehaviorModeling",
    "AutoModelForSequenceClassification": "modeling_seqbert.SeqBertForSequenceClassification",
}


@dataclass
class MaskedBehaviorModelingOutput(ModelOutput):
    """Output of :class:`SeqBertForMaskedBehaviorModeling`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): item loss + ``behavior_loss_weight`` x event-type loss.
        logits (`torch.FloatTensor`): item scores over the full vocabulary (special tokens at ``-inf``).
            Shape `(num_labelled_positions, vocab_size)` when ``labels`` are given (only labelled
            positions are scored, to avoid materialising batch x length x catalog), otherwise
            `(batch_size, sequence_length, vocab_size)`.
        behavior_logits (`torch.FloatTensor`): event-type scores, same leading shape as ``logits``.
        item_loss / behavior_loss (`torch.FloatTensor`, *optional*): the two loss terms, for logging.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): per-layer hidden states.
        next_item_loss (`torch.FloatTensor`, *optional*): the auxiliary left-to-right next-item loss
            (``config.next_item_loss_weight`` > 0 and ``next_item_labels`` given), already included in ``loss``.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    behavior_logits: torch.FloatTensor | None = None
    item_loss: torch.FloatTensor | None = None
    behavior_loss: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    next_item_loss: torch.FloatTensor | None = None


# Candidate match types (``candidate_match_ids`` of SeqBertForSequenceClassification with config.candidate_match).
CANDIDATE_MATCH_NONE = 0  # padding (and rows without a candidate): a zero embedding
CANDIDATE_MATCH_OTHER = 1  # history event: another item, another (or no) category
CANDIDATE_MATCH_CATEGORY = 2  # history event: another item of the candidate's category
CANDIDATE_MATCH_ITEM = 3  # history event: the candidate item itself
# The query token (the candidate) gets CANDIDATE_MATCH_ITEM + the strongest match among all of its row's
# history events (4 = none, 5 = category, 6 = item), so the pooled position sees it without attention.
NUM_CANDIDATE_MATCH_TYPES = 2 * CANDIDATE_MATCH_ITEM + 1
_CANDIDATE_HINT = " (seqbert.training.finetune.predict_candidates builds every input from raw events)."


def recency_position_ids(attention_mask: torch.Tensor, max_positions: int) -> torch.Tensor:
    """Position ids counting back from the last real token (0 = most recent), 0 on padding."""
    # (batch, length): number of real tokens at or after each position, minus one.
    positions = attention_mask.flip(-1).cumsum(-1).flip(-1) - 1
    return positions.clamp(min=0, max=max_positions - 1) * attention_mask


def attention_allowed(attention_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean `(batch, 1, length, length)` (or broadcastable) mask: True where a query may attend a key.

    Bidirectional: every real key. Causal: real keys at or before the query. Every position may always
    attend to itself, so a (left-)padding query never has an empty row (SDPA would return NaN there,
    and NaN times a zero attention weight would leak into real positions in the next layer).
    """
    keys = attention_mask.bool()[:, None, None, :]
    if not causal:
        return keys
    length = attention_mask.shape[-1]
    lower = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    return (keys & lower) | torch.eye(length, dtype=torch.bool, device=attention_mask.device)


def drop_trailing_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """Attention mask with each row's trailing ``[MASK]`` (the appended query token) turned into padding.

    A causal model predicts the next item from the hidden state of the last *event*, exactly as it
    was trained (inputs = events, label = the following event). Hiding the appended mask also keeps
    the recency positions of the events identical to training.
    """
    index = last_token_index(attention_mask)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    is_mask = (input_ids[rows, index] == mask_token_id) & (attention_mask[rows, index] > 0)
    attention_mask = attention_mask.clone()
    attention_mask[rows[is_mask], index[is_mask]] = 0
    return attention_mask


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row, for left or right padding."""
    length = attention_mask.shape[-1]
    positions = torch.arange(length, device=attention_mask.device).expand_as(attention_mask)
    return (positions * attention_mask).argmax(-1)


def history_event_distances(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_special_tokens: int,
    query_index: torch.Tensor,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which item events each row's query position ``query_index`` `(rows,)` is predicted from, and how recent each is.

    Returns ``visible`` (bool `(rows, length)`: every other item event of the row (bidirectional), or the events up to
    and including the query position (causal, whose query is the last event itself)) and ``distance`` (long: 1 = the
    nearest event on its side of the query, 2 = the one before, ...; special tokens and masked positions not counted).
    """
    columns = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
    query = query_index[:, None]
    visible = (input_ids >= num_special_tokens) & attention_mask.bool()
    visible = visible & ((columns <= query) if causal else (columns != query))
    seen = visible.long().cumsum(1)
    at_query = seen.gather(1, query)
    distance = torch.where(columns <= query, at_query - seen + 1, seen - at_query)
    return visible, distance


def add_history_scores(
    scores: torch.Tensor, history: tuple[torch.Tensor, torch.Tensor], start: int = 0
) -> torch.Tensor:
    """``scores`` `(rows, items)` (item columns ``start ..``, e.g. one chunk of a large catalog) plus the
    repeat-aware term ``history`` = (item columns, offsets), each `(rows, length)`, from
    :class:`SeqBertRepeatBias`. Out of place, so gradients reach the offsets; columns outside the chunk are
    ignored."""
    columns, offsets = history
    local = columns - start
    inside = (local >= 0) & (local < scores.shape[-1])
    offsets = (offsets * inside).to(scores.dtype)
    return scores.scatter_add(-1, local.clamp(0, scores.shape[-1] - 1), offsets)


def history_scores_at(history: tuple[torch.Tensor, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
    """The repeat-aware term of item columns ``items`` `(k,)` (any catalog size, repeats allowed) for every row of
    ``history``: `(rows, k)`, without a `(rows, catalog)` matrix (the sampled softmax's negatives)."""
    columns, offsets = history
    unique, inverse = items.unique(return_inverse=True)
    slot = torch.searchsorted(unique, columns).clamp(max=unique.numel() - 1)
    match = unique[slot] == columns
    per_unique = offsets.new_zeros(columns.shape[0], unique.numel())
    per_unique = per_unique.scatter_add(1, slot, offsets * match)
    return per_unique[:, inverse]


# Pack only when padding is at least this share of the batch. A heuristic, not tuned: packing adds index copies and
# a loop over attention groups, which pay off when much of the batch is padding (Beauty: 87 %, 2.3x faster steps).
PACK_MIN_PADDING_SHARE = 0.25
# Rows per attention group of a packed batch (rows sorted by length, so each group pads to a similar length).
PACK_ROWS_PER_GROUP = 64


class PackedBatch:
    """The real tokens of a padded `(batch, length)` batch, for layers that skip padding.

    Per-token layers run on `(real tokens, ...)` tensors (:meth:`pack` / :meth:`unpack` convert, with zeros
    at padding). Attention (:meth:`attend`) sorts the rows by length and attends within groups of
    ``PACK_ROWS_PER_GROUP`` rows, each padded only to its own longest row, so short sequences do not pay for
    the longest one. Results equal the padded computation's at real tokens (up to float rounding); any
    padding side or pattern works, since a group keeps every column where one of its rows is real, in order.
    """

    def __init__(self, attention_mask: torch.Tensor, causal: bool, rows_per_group: int | None = None):
        batch, length = attention_mask.shape
        rows_per_group = rows_per_group or PACK_ROWS_PER_GROUP
        self.shape = attention_mask.shape
        real = attention_mask.reshape(-1) > 0
        self.indices = real.nonzero().squeeze(-1)
        num_real = self.indices.numel()
        # Packed index of every padded position; padding points at row `num_real` (a zero row in `attend`).
        packed_index = torch.full((batch * length,), num_real, dtype=torch.long, device=attention_mask.device)
        packed_index[self.indices] = torch.arange(num_real, device=attention_mask.device)
        rows_by_length = attention_mask.sum(-1).argsort(stable=True)
        self.groups: list[tuple[torch.Tensor, torch.Tensor]] = []  # (packed index (rows, columns), attention mask)
        for rows in rows_by_length.split(rows_per_group):
            group_mask = attention_mask[rows]
            columns = group_mask.any(0).nonzero().squeeze(-1)
            group_index = packed_index[rows[:, None] * length + columns[None, :]]
            self.groups.append((group_index, attention_allowed(group_mask[:, columns], causal=causal)))
        # Real tokens in group order -> packed order.
        group_order = torch.cat([index.reshape(-1) for index, _ in self.groups])
        self.group_order = group_order[group_order < num_real].argsort()

    @staticmethod
    def worthwhile(attention_mask: torch.Tensor) -> bool:
        """Pack eager runs whose padding share reaches ``PACK_MIN_PADDING_SHARE``; never while tracing,
        exporting or compiling, which need static shapes (they keep the padded layout: same results)."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return False
        return bool((attention_mask == 0).float().mean() >= PACK_MIN_PADDING_SHARE)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """`(batch, length, ...)` -> `(real tokens, ...)`."""
        return padded.reshape(-1, *padded.shape[2:]).index_select(0, self.indices)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """`(real tokens, ...)` -> `(batch, length, ...)`, zeros at padding."""
        flat = packed.new_zeros(self.shape.numel(), *packed.shape[1:]).index_copy(0, self.indices, packed)
        return flat.view(*self.shape, *packed.shape[1:])

    def attend(
        self, projections: torch.Tensor, attention: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Run ``attention(group projections (rows, columns, width), group attention mask)`` -> `(rows, columns,
        out)` group by group on packed `(real tokens, width)` projections; returns `(real tokens, out)`."""
        padded_projections = torch.cat([projections, projections.new_zeros(1, projections.shape[-1])])
        outputs = []
        for index, allowed in self.groups:
            output = attention(padded_projections[index], allowed)
            outputs.append(output.reshape(-1, output.shape[-1])[index.reshape(-1) < projections.shape[0]])
        return torch.cat(outputs)[self.group_order]


class SeqBertEmbeddings(nn.Module):
    """Sum of item, event-type, time-gap and recency-position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: SeqBertConfig):
        super().__init__()
        self.item_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.behavior_embeddings = nn.Embedding(config.num_behaviors, config.hidden_size, padding_idx=0)
        self.time_embeddings = nn.Embedding(config.num_time_buckets, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings
        if config.num_item_categories:
            # Category 0 = none (special tokens, items without one, unused slots). The item -> category
            # table is part of the checkpoint (a persistent buffer), so a saved model needs no side file.
            self.category_embeddings = nn.Embedding(config.num_item_categories + 1, config.hidden_size, padding_idx=0)
            per_item = getattr(config, "categories_per_item", 1)
            shape = (config.vocab_size,) if per_item == 1 else (config.vocab_size, per_item)
            self.register_buffer("item_category_ids", torch.zeros(shape, dtype=torch.long))

    def set_item_categories(self, category_ids: torch.Tensor) -> None:
        """Item token id -> category id in ``[0, num_item_categories]`` (0 = none), shape `(vocab_size,)`, or
        `(vocab_size, categories_per_item)` when items have several categories (unused slots 0)."""
        if not hasattr(self, "item_category_ids"):
            raise ValueError("this model has no category embeddings (config.num_item_categories == 0).")
        category_ids = torch.as_tensor(category_ids, dtype=torch.long)
        if category_ids.shape != self.item_category_ids.shape:
            raise ValueError(f"expected {tuple(self.item_category_ids.shape)} category ids, got {tuple(category_ids.shape)}.")
        if category_ids.min() < 0 or category_ids.max() > self.category_embeddings.num_embeddings - 1:
            raise ValueError(f"category ids must lie in [0, {self.category_embeddings.num_embeddings - 1}].")
        self.item_category_ids.copy_(category_ids)

    def category_vectors(self, token_ids: torch.Tensor | slice) -> torch.Tensor:
        """Sum of the category embeddings of each token id's item (one or several categories)."""
        vectors = self.category_embeddings(self.item_category_ids[token_ids])
        return vectors.sum(-2) if self.item_category_ids.dim() == 2 else vectors

    def item_vectors(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Item embedding (+ its categories' embeddings when enabled) of each token id."""
        vectors = self.item_embeddings(input_ids)
        if hasattr(self, "item_category_ids"):
            vectors = vectors + self.category_vectors(input_ids)
        return vectors

    def forward(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor,
        time_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        extra_embeddings: torch.Tensor | None = None,
        packed: PackedBatch | None = None,
    ) -> torch.Tensor:
        """``extra_embeddings`` (`(batch, length, hidden)`, *optional*): added to the sum before the LayerNorm
        (task-specific inputs such as the classifier's candidate match embeddings). With ``packed`` the
        result is `(real tokens, hidden)`."""
        position_ids = recency_position_ids(attention_mask, self.max_positions)
        if packed is not None:
            input_ids, behavior_ids, time_ids, position_ids = (
                packed.pack(ids) for ids in (input_ids, behavior_ids, time_ids, position_ids)
            )
            extra_embeddings = None if extra_embeddings is None else packed.pack(extra_embeddings)
        embeddings = (
            self.item_vectors(input_ids)
            + self.behavior_embeddings(behavior_ids)
            + self.time_embeddings(time_ids)
            + self.position_embeddings(position_ids)
        )
        if extra_embeddings is not None:
            embeddings = embeddings + extra_embeddings
        return self.dropout(self.LayerNorm(embeddings))


class SeqBertSelfAttention(nn.Module):
    """Multi-head bidirectional self-attention on ``scaled_dot_product_attention`` with a padding mask."""

    def __init__(self, config: SeqBertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_probs_dropout_prob

    def forward(
        self, hidden_states: torch.Tensor, attention_bias: torch.Tensor | None, packed: PackedBatch | None = None
    ) -> torch.Tensor:
        """``hidden_states``: `(batch, length, hidden)` with ``attention_bias``, or `(real tokens, hidden)` with
        ``packed`` (which carries the attention masks of its groups)."""
        projections = self.qkv(hidden_states)
        context = packed.attend(projections, self.attend) if packed is not None else self.attend(projections, attention_bias)
        return self.output(context)

    def attend(self, projections: torch.Tensor, attention_bias: torch.Tensor) -> torch.Tensor:
        """`(batch, length, 3 * hidden)` query/key/value projections -> `(batch, length, hidden)` context."""
        batch, length, hidden = projections.shape[0], projections.shape[1], projections.shape[2] // 3
        # (batch, length, 3 * hidden) -> 3 x (batch, heads, length, head_dim)
        heads = projections.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = heads.unbind(0)
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_bias,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        # (batch, heads, length, head_dim) -> (batch, length, hidden)
        return context.transpose(1, 2).reshape(batch, length, hidden)


class SeqBertLayer(nn.Module):
    """Pre-LayerNorm Transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, config: SeqBertConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SeqBertSelfAttention(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, attention_bias: torch.Tensor | None, packed: PackedBatch | None = None
    ) -> torch.Tensor:
        attention = self.attention(self.attention_norm(hidden_states), attention_bias, packed)
        hidden_states = hidden_states + self.dropout(attention)
        feed_forward = self.output(self.activation(self.intermediate(self.ffn_norm(hidden_states))))
        return hidden_states + self.dropout(feed_forward)


class SeqBertPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the checkpoint contract shared by every SeqBERT model."""

    config_class = SeqBertConfig
    config: SeqBertConfig
    base_model_prefix = "seqbert"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SeqBertMaskedBehaviorHead):
            init.zeros_(module.bias)
        if isinstance(module, SeqBertRepeatBias):
            init.zeros_(module.weight)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Load as usual, without transformers' per-tensor "Loading weights" progress bar: a SeqBERT folder holds a few
        dozen tensors that load in milliseconds, so the bar was noise on every API call."""
        enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            return super().from_pretrained(*args, **kwargs)
        finally:
            if enabled:
                hf_logging.enable_progress_bar()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual; when saving with code (``register_for_auto_class``), map every head.

        transformers records only the saved class in ``auto_map``; listing all three lets
        ``AutoModel`` and ``AutoModelForSequenceClassification`` load any SeqBERT folder with
        ``trust_remote_code=True`` (e.g. a classifier initialised from a pretrained folder).
        """
        if getattr(self, "_auto_class", None) is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **_AUTO_MAP}
        return super().save_pretrained(save_directory, *args, **kwargs)


class SeqBertModel(SeqBertPreTrainedModel):
    """The bare encoder: returns one hidden vector per position.

    Inputs (all `torch.LongTensor` of shape `(batch_size, sequence_length)`, as produced by
    ``BehaviorTokenizer``): ``input_ids`` (items and special tokens), ``behavior_ids`` (event
    types), ``time_ids`` (time-gap buckets) and ``attention_mask`` (1 = real token).
    """

    # A pretrained (masked-behavior) folder also holds its pretraining head; the bare encoder does not use it.
    _keys_to_ignore_on_load_unexpected = (r"^head\.",)

    def __init__(self, config: SeqBertConfig):
        super().__init__(config)
        self.embeddings = SeqBertEmbeddings(config)
        self.layers = nn.ModuleList([SeqBertLayer(config) for _ in range(config.num_hidden_layers)])
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.item_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        extra_embeddings: torch.Tensor | None = None,
        causal: bool | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, ...] | BaseModelOutput:
        """``causal`` overrides ``config.attention_type`` for this call (the bidirectional model's auxiliary
        next-item pass runs the same weights left to right)."""
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        if behavior_ids is None:
            behavior_ids = torch.zeros_like(input_ids)
        if time_ids is None:
            time_ids = torch.zeros_like(input_ids)
        output_hidden_states = bool(output_hidden_states)
        return_dict = return_dict if return_dict is not None else True

        if causal is None:
            causal = self.config.attention_type == "causal"
        # Mostly padding (short sequences): per-token layers run on the real tokens only, attention within
        # groups of similar length; outputs are then zero at padding positions, which no head reads.
        packed = PackedBatch(attention_mask, causal=causal) if PackedBatch.worthwhile(attention_mask) else None
        attention_bias = None if packed is not None else attention_allowed(attention_mask, causal=causal)
        padded = packed.unpack if packed is not None else (lambda states: states)
        hidden_states = self.embeddings(input_ids, behavior_ids, time_ids, attention_mask, extra_embeddings, packed)
        all_hidden_states: tuple[torch.Tensor, ...] = (padded(hidden_states),) if output_hidden_states else ()
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_bias, packed)
            if output_hidden_states:
                all_hidden_states += (padded(hidden_states),)
        hidden_states = padded(self.final_norm(hidden_states))

        if not return_dict:
            return (hidden_states, all_hidden_states) if output_hidden_states else (hidden_states,)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states if output_hidden_states else None
        )


class SeqBertRepeatBias(nn.Module):
    """Repeat-aware scoring: a learned offset on the score of every item already in the input sequence.

    An item gets ``weight[event type, recency bucket]`` for each of its events the query is predicted from, with
    recency buckets ``1, 2, 3-4, 5-8, ...`` events back (the last bucket holds everything older). Zero at
    initialisation, so the model learns from its training targets how likely a repeat is: negative where users never
    come back to an item (a deduplicated purchase log), positive where they do (re-views, re-orders). Training and
    inference use the same term, so the offline metrics describe what users get (RepeatNet, Ren et al. 2019, models
    repeat consumption with a whole decoder; this is its smallest form).
    """

    def __init__(self, config: SeqBertConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(config.num_behaviors, config.repeat_bias_buckets))
        self.num_special_tokens = config.num_special_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        query_index: torch.Tensor,
        causal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(item columns, score offsets), each `(rows, length)`, for one query per row (rows may repeat a sequence,
        one per labelled position); see :func:`history_event_distances` for what a query sees."""
        visible, distance = history_event_distances(
            input_ids, attention_mask, self.num_special_tokens, query_index, causal
        )
        buckets = torch.log2(distance.clamp(min=1).float()).ceil().long().clamp(max=self.weight.shape[1] - 1)
        behaviors = (
            torch.zeros_like(input_ids) if behavior_ids is None else behavior_ids.clamp(0, self.weight.shape[0] - 1)
        )
        offsets = self.weight[behaviors, buckets] * visible
        return (input_ids - self.num_special_tokens).clamp(min=0), offsets


class SeqBertMaskedBehaviorHead(nn.Module):
    """Transform + item decoder (weight tied to the item embeddings, own bias) + event-type decoder."""

    def __init__(self, config: SeqBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.behavior_decoder = nn.Linear(config.hidden_size, config.num_behaviors)
        self.num_special_tokens = config.num_special_tokens

    def transform(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.activation(self.dense(hidden_states)))

    def item_logits(self, transformed: torch.Tensor, item_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of real items only: `(..., vocab_size - num_special_tokens)`. ``item_weight`` (the items'
        output vectors) defaults to the decoder rows of the real items."""
        items = slice(self.num_special_tokens, None)
        weight = self.decoder.weight[items] if item_weight is None else item_weight
        if transformed.dim() == 2:  # one fused multiply-add (the training case: labelled positions only)
            return torch.addmm(self.bias[items], transformed, weight.T)
        return transformed @ weight.T + self.bias[items]

    def sampled_item_loss(
        self,
        transformed: torch.Tensor,
        targets: torch.Tensor,
        num_negatives: int,
        log_proposal: torch.Tensor | None,
        label_smoothing: float = 0.0,
        item_rows: Callable[[torch.Tensor], torch.Tensor] | None = None,
        history: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Sampled softmax with log-Q correction over ``num_negatives`` negatives shared by the batch.

        ``targets`` are item columns (token id - num_special_tokens). Negatives are drawn with
        replacement from ``exp(log_proposal)`` (uniform when None) and their logits corrected by
        ``- log(num_negatives * Q(item))``: ``sum_j exp(s_j) / (K Q(j))`` is then an importance-sampling
        estimate of the partition function over the other items, so the loss converges to the full
        softmax cross-entropy as ``num_negatives`` grows (the target's own logit is not corrected; it is
        always in the candidate set). A negative equal to a row's target ("accidental hit") is removed
        from that row. Never materialises `(rows, catalog)`. ``item_rows(columns)`` gives the output vectors
        of the given item columns (default: their decoder rows); only those rows get a gradient. ``history`` adds the
        repeat-aware term (:class:`SeqBertRepeatBias`) to the target's and the negatives' logits.
        """

        def decoder_rows(columns: torch.Tensor) -> torch.Tensor:
            return self.decoder.weight[columns + self.num_special_tokens]

        item_rows = item_rows or decoder_rows
        bias = self.bias[self.num_special_tokens :]
        num_items = bias.shape[0]
        if log_proposal is None:
            negatives = torch.randint(0, num_items, (num_negatives,), device=transformed.device)
            log_q_negatives = transformed.new_full((num_negatives,), -math.log(num_items))
        else:
            negatives = torch.multinomial(log_proposal.exp(), num_negatives, replacement=True)
            log_q_negatives = log_proposal[negatives]
        correction = math.log(num_negatives)
        positive = (transformed * item_rows(targets)).sum(-1) + bias[targets]
        negative = transformed @ item_rows(negatives).T + bias[negatives] - (log_q_negatives + correction)
        if history is not None:
            columns, offsets = history
            positive = positive + (offsets * (columns == targets[:, None])).sum(1)
            negative = negative + history_scores_at(history, negatives)
        hits = negatives[None, :] == targets[:, None]
        logits = torch.cat([positive[:, None], negative.masked_fill(hits, float("-inf"))], dim=-1).float()
        log_probs = torch.log_softmax(logits, dim=-1)
        loss = -log_probs[:, 0]
        if label_smoothing > 0:
            # Smoothing mass over the candidates a row really has: a removed accidental hit (-inf) takes none
            # (F.cross_entropy would multiply its -inf log-probability by the smoothing weight: an infinite loss).
            valid = torch.cat([hits.new_ones(hits.shape[0], 1), ~hits], dim=-1)
            uniform = -log_probs.masked_fill(~valid, 0.0).sum(-1) / valid.sum(-1)
            loss = (1 - label_smoothing) * loss + label_smoothing * uniform
        return loss.mean()

    def full_vocab_logits(self, item_logits: torch.Tensor) -> torch.Tensor:
        """Pad item scores to the full vocabulary with ``-inf`` for special tokens."""
        specials = item_logits.new_full((*item_logits.shape[:-1], self.num_special_tokens), float("-inf"))
        return torch.cat([specials, item_logits], dim=-1)


class SeqBertForMaskedBehaviorModeling(SeqBertPreTrainedModel):
    """SeqBERT with the masked-behavior (Cloze) pretraining head; also the next-item recommender.

    ``labels`` hold the original item id at masked positions and -100 elsewhere;
    ``behavior_labels`` likewise hold the original event-type id.
    """

    _tied_weights_keys = {"head.decoder.weight": "seqbert.embeddings.item_embeddings.weight"}

    def __init__(self, config: SeqBertConfig):
        super().__init__(config)
        self.seqbert = SeqBertModel(config)
        self.head = SeqBertMaskedBehaviorHead(config)
        self.repeat_bias = SeqBertRepeatBias(config) if config.repeat_bias_buckets > 0 else None
        # Proposal of the sampled softmax (log-probabilities over items); not saved: training-time only.
        self.register_buffer("negative_log_proposal", None, persistent=False)
        self.post_init()

    def set_negative_proposal(self, item_counts: torch.Tensor | None, power: float = 1.0) -> None:
        """Draw sampled-softmax negatives ∝ ``item_counts ** power`` (e.g. training popularity; +1 smoothing)
        instead of uniformly. ``None`` restores uniform sampling."""
        if item_counts is None:
            self.negative_log_proposal = None
            return
        weights = (item_counts.double().clamp(min=0) + 1.0) ** power
        self.negative_log_proposal = (weights / weights.sum()).log().float().to(self.head.bias.device)

    def get_output_embeddings(self) -> nn.Linear:
        return self.head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.head.decoder = new_embeddings

    def _history_at(
        self, inputs: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor], selected: torch.Tensor, causal: bool
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The repeat-aware term (:class:`SeqBertRepeatBias`) of the ``selected`` positions `(batch, length)` of
        ``inputs`` = (input_ids, behavior_ids, attention_mask), one row per position in row-major order; None
        when the model has no repeat bias."""
        if self.repeat_bias is None:
            return None
        input_ids, behavior_ids, attention_mask = inputs
        rows, positions = selected.nonzero(as_tuple=True)
        behaviors = None if behavior_ids is None else behavior_ids[rows]
        return self.repeat_bias(input_ids[rows], behaviors, attention_mask[rows], positions, causal)

    def _labelled_item_loss(
        self,
        hidden_states: torch.Tensor,
        labels: torch.Tensor,
        inputs: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor],
        causal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Item loss over the positions whose label is not -100, scoring only those positions.

        ``inputs`` = (input_ids, behavior_ids, attention_mask) the states came from, ``causal`` how (both for the
        repeat-aware term). Returns (loss, selected positions, their transformed states, their item scores; scores
        are None for sampled training, which never scores nor touches the whole catalog). A batch without any
        label gets a zero loss that keeps the graph (not NaN).
        """
        selected = labels != -100
        transformed = self.head.transform(hidden_states[selected])
        sampled = self.config.loss_type == "sampled" and self.training
        history = self._history_at(inputs, selected, causal)
        item_scores = None if sampled else self.head.item_logits(transformed, self.item_output_weights())
        if item_scores is not None and history is not None:
            item_scores = add_history_scores(item_scores, history)
        if not selected.any():
            return hidden_states.sum() * 0.0, selected, transformed, item_scores
        targets = labels[selected] - self.config.num_special_tokens
        if sampled:
            loss = self.head.sampled_item_loss(
                transformed, targets, self.config.num_negatives, self.negative_log_proposal,
                self.config.label_smoothing, self.item_output_rows, history,
            )  # fmt: skip
        else:
            loss = F.cross_entropy(item_scores.float(), targets, label_smoothing=self.config.label_smoothing)
        return loss, selected, transformed, item_scores

    def forward(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        behavior_labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        next_item_input_ids: torch.Tensor | None = None,
        next_item_behavior_ids: torch.Tensor | None = None,
        next_item_time_ids: torch.Tensor | None = None,
        next_item_attention_mask: torch.Tensor | None = None,
        next_item_labels: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, ...] | MaskedBehaviorModelingOutput:
        r"""``next_item_*`` (with ``config.next_item_loss_weight`` > 0): the same rows unmasked, as inputs
        ``e_1 .. e_{n-1}`` with labels ``e_2 .. e_n`` (:class:`~seqbert.collators.DataCollatorForNextItemPrediction`).
        The encoder then also runs them left to right (causal attention, same weights) and
        ``loss += next_item_loss_weight * next-item loss``: every event after the first is a target, as
        in SASRec, on top of the Cloze positions. Inference is unchanged (bidirectional, appended mask)."""
        return_dict = return_dict if return_dict is not None else True
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        outputs = self.seqbert(
            input_ids, behavior_ids, time_ids, attention_mask, output_hidden_states=output_hidden_states
        )
        hidden_states = outputs.last_hidden_state
        causal = self.config.attention_type == "causal"
        inputs = (input_ids, behavior_ids, attention_mask)
        loss = item_loss = behavior_loss = next_item_loss = None
        if labels is not None:
            item_loss, selected, transformed, item_scores = self._labelled_item_loss(
                hidden_states, labels, inputs, causal
            )
            behavior_logits = self.head.behavior_decoder(transformed)
            loss = item_loss
            if selected.any() and behavior_labels is not None and self.config.behavior_loss_weight > 0:
                behavior_loss = F.cross_entropy(behavior_logits.float(), behavior_labels[selected], ignore_index=-100)
                loss = item_loss + self.config.behavior_loss_weight * behavior_loss
            if next_item_labels is not None and self.config.next_item_loss_weight > 0:
                causal_states = self.seqbert(
                    next_item_input_ids, next_item_behavior_ids, next_item_time_ids, next_item_attention_mask,
                    causal=True,
                ).last_hidden_state
                next_inputs = (next_item_input_ids, next_item_behavior_ids, next_item_attention_mask)
                next_item_loss = self._labelled_item_loss(causal_states, next_item_labels, next_inputs, causal=True)[0]
                loss = loss + self.config.next_item_loss_weight * next_item_loss
        else:
            transformed = self.head.transform(hidden_states)
            item_scores = self.head.item_logits(transformed, self.item_output_weights())
            every_position = torch.ones_like(input_ids, dtype=torch.bool)
            history = self._history_at(inputs, every_position, causal)
            if history is not None:  # each position scored as a query of its own (its Cloze / next-item view)
                item_scores = add_history_scores(item_scores.flatten(0, 1), history).view_as(item_scores)
            behavior_logits = self.head.behavior_decoder(transformed)
        logits = None if item_scores is None else self.head.full_vocab_logits(item_scores)

        if not return_dict:
            output = (logits, behavior_logits) + ((outputs.hidden_states,) if output_hidden_states else ())
            return ((loss,) + output) if loss is not None else output
        return MaskedBehaviorModelingOutput(
            loss=loss,
            logits=logits,
            behavior_logits=behavior_logits,
            item_loss=item_loss,
            behavior_loss=behavior_loss,
            hidden_states=outputs.hidden_states,
            next_item_loss=next_item_loss,
        )

    def next_item_queries(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Query vectors `(batch_size, hidden_size)` whose dot product with :meth:`item_output_weights`
        (plus :meth:`item_output_bias` and :meth:`next_item_history`) gives the next-item scores; lets huge catalogs
        be scored in chunks.

        Bidirectional, by ``config.next_item_query``: ``"mask"``, the appended ``[MASK]``'s state;
        ``"causal"``, the last event's state in a left-to-right pass of the same weights; ``"mask+causal"``,
        the mean of both (so the scores are the mean of both passes' logits). Causal model: the last
        event's state, the appended mask hidden. Differentiable, like :meth:`next_item_logits`: run it under
        ``torch.no_grad()`` for inference (:meth:`next_item_scores` does).
        """
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        query = self.config.next_item_query
        check_next_item_query(query, self.config.attention_type)
        inputs = (input_ids, behavior_ids, time_ids, attention_mask)
        if self.config.attention_type == "causal" or query == "causal":
            return self._last_token_query(*inputs, causal=True)
        mask_query = self._last_token_query(*inputs, causal=False)
        if query == "mask+causal":
            return (mask_query + self._last_token_query(*inputs, causal=True)) / 2
        return mask_query

    def set_next_item_query(self, query: str) -> None:
        """Switch how next-item queries are formed (``"mask"`` | ``"causal"`` | ``"mask+causal"``, see
        :meth:`next_item_queries`); saved with the config. Raises ``ValueError`` for an unknown query, or for
        anything but ``"mask"`` on a causal model."""
        check_next_item_query(query, self.config.attention_type)
        self.config.next_item_query = query

    def _last_token_query(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None,
        time_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        causal: bool,
    ) -> torch.Tensor:
        """Transformed state of each row's last real token: the appended mask (bidirectional pass) or, with
        ``causal``, the last event (left to right, the trailing mask hidden as in causal training)."""
        if causal:
            attention_mask = drop_trailing_mask(input_ids, attention_mask, self.config.mask_token_id)
        hidden_states = self.seqbert(input_ids, behavior_ids, time_ids, attention_mask, causal=causal).last_hidden_state
        last = hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last_token_index(attention_mask)]
        return self.head.transform(last)

    def item_output_weights(self) -> torch.Tensor:
        """Output vectors of the real items `(num_items, hidden_size)`: the decoder rows (tied to the item
        embeddings), plus each item's category embedding when categories are enabled."""
        items = slice(self.config.num_special_tokens, None)
        weight = self.head.decoder.weight[items]
        embeddings = self.seqbert.embeddings
        if hasattr(embeddings, "item_category_ids"):
            weight = weight + embeddings.category_vectors(items)
        return weight

    def item_output_rows(self, columns: torch.Tensor) -> torch.Tensor:
        """Rows ``columns`` (item columns) of :meth:`item_output_weights`, gathered without touching the other
        rows: their gradient is sparse when the item embedding is (``item_embeddings.sparse``, set by
        ``--sparse_item_updates``), as the input lookup's then is."""
        embeddings = self.seqbert.embeddings
        tokens = columns + self.config.num_special_tokens
        rows = F.embedding(tokens, self.head.decoder.weight, sparse=embeddings.item_embeddings.sparse)
        if hasattr(embeddings, "item_category_ids"):
            rows = rows + embeddings.category_vectors(tokens)
        return rows

    def item_output_bias(self) -> torch.Tensor:
        """Decoder bias of the real items `(num_items,)`."""
        return self.head.bias[self.config.num_special_tokens :]

    @torch.no_grad()
    def next_item_scores(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Item scores `(batch_size, num_items)` at each row's last real token (the appended mask).

        Column ``j`` is token id ``j + num_special_tokens``. Only the last position is decoded. With
        ``config.repeat_bias_buckets`` the repeat-aware term (:meth:`next_item_history`) is added.
        """
        return self.next_item_logits(input_ids, behavior_ids, time_ids, attention_mask)

    def next_item_logits(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`next_item_scores` with autograd: the same computation, differentiable with respect to the
        embeddings (attribution methods such as ``seqbert.explain`` take its gradients)."""
        queries = self.next_item_queries(input_ids, behavior_ids, time_ids, attention_mask)
        scores = self.head.item_logits(queries, self.item_output_weights())
        history = self.next_item_history(input_ids, behavior_ids, attention_mask)
        return scores if history is None else add_history_scores(scores, history)

    def next_item_history(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The repeat-aware term of each row's next-item scores, (item columns, score offsets) each
        `(batch_size, length)` for :func:`add_history_scores`; None when ``config.repeat_bias_buckets`` is 0.

        Every query type predicts the event after the row's last event, so all share this term: the events up to
        the last one (an appended ``[MASK]`` is not an event), the last one 1 event back.
        """
        if self.repeat_bias is None:
            return None
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        # Causal view from the last real token: an appended [MASK] there is not an event, so it is not counted.
        return self.repeat_bias(input_ids, behavior_ids, attention_mask, last_token_index(attention_mask), causal=True)


class SeqBertForSequenceClassification(SeqBertPreTrainedModel):
    """SeqBERT with a classification head on the last real token (e.g. purchase within a horizon).

    Pools the hidden state of the appended ``[MASK]`` ("what happens next") token, the same position
    pretraining learns to predict the next behavior from. Loads from a masked-behavior checkpoint:
    the encoder weights transfer, the head is freshly initialised.

    Item-candidate tasks (click, item conversion) put the candidate item in place of the ``[MASK]`` and
    may add candidate-aware inputs (each ``None`` unless its config flag is set, then required):

    - ``config.candidate_match``: ``candidate_match_ids`` `(batch, length)`, one of
      :data:`NUM_CANDIDATE_MATCH_TYPES` per token (see :data:`CANDIDATE_MATCH_ITEM`), embedded and added
      to the token embeddings. A small encoder cannot learn "the candidate equals this history item" from
      per-item embeddings on a few thousand rows (issue 5: chance-level click AUC); the match type is
      computed exactly from the raw ids (so also for items outside the vocabulary) and handed over.
    - ``config.candidate_popularity``: ``candidate_log_popularity`` `(batch,)`, ``log1p`` of the candidate's
      event count before the prediction time, times a learned vector, added to the query token.

    With ``config.num_tabular_features`` > 0, ``tabular_features`` `(batch, num_tabular_features)` (hand-made
    features of the row, already scaled) enter the head as in Alibaba's Behavior Sequence Transformer: an MLP of
    them is added to the pooled state, and a linear term of them to the logits.
    """

    # Initialised from a pretrained folder, the pretraining head is left out and the classification head (with its
    # optional candidate and tabular parts) starts from scratch: expected, not worth a load report.
    _keys_to_ignore_on_load_unexpected = (r"^head\.",)
    _keys_to_ignore_on_load_missing = (r"^classifier\.", r"^candidate_", r"^tabular_")

    def __init__(self, config: SeqBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.seqbert = SeqBertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        if config.candidate_match:
            self.candidate_match_embeddings = nn.Embedding(
                NUM_CANDIDATE_MATCH_TYPES, config.hidden_size, padding_idx=CANDIDATE_MATCH_NONE
            )
        if config.candidate_popularity:
            self.candidate_popularity = nn.Linear(1, config.hidden_size, bias=False)
        if config.num_tabular_features:
            self.tabular_deep = nn.Sequential(
                nn.Linear(config.num_tabular_features, config.hidden_size), ACT2FN[config.hidden_act],
                nn.Linear(config.hidden_size, config.hidden_size),
            )  # fmt: skip
            self.tabular_wide = nn.Linear(config.num_tabular_features, config.num_labels)
        self.post_init()

    def candidate_embeddings(
        self,
        attention_mask: torch.Tensor,
        candidate_match_ids: torch.Tensor | None,
        candidate_log_popularity: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """`(batch, length, hidden)` candidate-aware input embeddings, or ``None`` without candidate inputs."""
        extra = None
        if hasattr(self, "candidate_match_embeddings"):
            if candidate_match_ids is None:
                raise ValueError(f"This model was fine-tuned with candidate_match: pass candidate_match_ids{_CANDIDATE_HINT}")
            extra = self.candidate_match_embeddings(candidate_match_ids)
        if hasattr(self, "candidate_popularity"):
            if candidate_log_popularity is None:
                raise ValueError(f"This model was fine-tuned with candidate_popularity: pass candidate_log_popularity{_CANDIDATE_HINT}")
            # (batch, hidden) on the query token only: (batch, length, 1) one-hot of the last real position.
            vector = self.candidate_popularity(candidate_log_popularity.to(self.candidate_popularity.weight.dtype)[:, None])
            positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
            is_query = (positions[None, :] == last_token_index(attention_mask)[:, None]).unsqueeze(-1)
            query = is_query.to(vector.dtype) * vector[:, None, :]
            extra = query if extra is None else extra + query
        return extra

    def forward(
        self,
        input_ids: torch.Tensor,
        behavior_ids: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        candidate_match_ids: torch.Tensor | None = None,
        candidate_log_popularity: torch.Tensor | None = None,
        tabular_features: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, ...] | SequenceClassifierOutput:
        return_dict = return_dict if return_dict is not None else True
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        outputs = self.seqbert(
            input_ids, behavior_ids, time_ids, attention_mask, output_hidden_states=output_hidden_states,
            extra_embeddings=self.candidate_embeddings(attention_mask, candidate_match_ids, candidate_log_popularity),
        )  # fmt: skip
        hidden_states = outputs.last_hidden_state
        pooled = hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last_token_index(attention_mask)]
        tabular = None
        if hasattr(self, "tabular_deep"):
            if tabular_features is None:
                raise ValueError("This model was fine-tuned with tabular features: pass tabular_features "
                                 "(seqbert.training.finetune.predict_task_rows computes them from labelled rows and the log).")
            tabular = tabular_features.to(pooled.dtype)
            pooled = pooled + self.tabular_deep(tabular)
        logits = self.classifier(self.dropout(pooled))
        if tabular is not None:
            logits = logits + self.tabular_wide(tabular)

        loss = None
        if labels is not None:
            loss = self._classification_loss(logits, labels)
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if output_hidden_states else ())
            return ((loss,) + output) if loss is not None else output
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def _classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss following ``config.problem_type``, inferred from labels as in transformers when unset."""
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            return F.mse_loss(logits.squeeze(-1).float(), labels.float())
        if self.config.problem_type == "single_label_classification":
            return F.cross_entropy(logits.float().view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


__all__ = [
    "CANDIDATE_MATCH_CATEGORY",
    "CANDIDATE_MATCH_ITEM",
    "CANDIDATE_MATCH_NONE",
    "CANDIDATE_MATCH_OTHER",
    "NUM_CANDIDATE_MATCH_TYPES",
    "MaskedBehaviorModelingOutput",
    "SeqBertForMaskedBehaviorModeling",
    "SeqBertForSequenceClassification",
    "SeqBertModel",
    "SeqBertPreTrainedModel",
]
