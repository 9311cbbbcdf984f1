r"""HeLLM: an LLM fine-tuned with per-user hypergraph prefixes, graph+sequence item tokens, LoRA and
an item head (Xu et al., "HeLLM: Hypergraph Enhanced LLM Learning for Multimodal Recommendation").

A RecBole sequential model (leave-one-out by time, full ranking). Stage 1
(:class:`~recbole_llm.models.hellm.trainer.HeLLMTrainer`) fills the frozen buffers
``item_graph_emb`` (HeLLMPre's fused item embeddings, 64-d) and ``item_seq_emb`` (RecBole's SASRec
item embeddings), both trained on this run's training split only. Equations (``docs/hellm.md``, stage 2):

* Eq. 8-9: :math:`G_u` = the graph embeddings of the user's history items (padding rows masked,
  unlike the authors' code), :math:`S_u = W^\top G_u^\top G_u W` with a trainable
  :math:`W \in R^{d\times d}` initialised to the identity (``hellm_bilinear: False`` = the authors'
  :math:`W = I`), flattened and normalised (layer norm without gain).
* Eq. 10: :math:`k_u = \mathrm{MLP}_K(s_u)`, :math:`v_u = \mathrm{MLP}_V(s_u)` (Linear, GELU,
  Dropout, Linear, GELU, Dropout), repeated over the backbone's ``L`` layers and ``P`` slots
  (``hellm_prefix_len``): :math:`K^{(l)}_p = \mathrm{RMSNorm_{post}}(\mathrm{RMSNorm_{pre}}(k_u) +
  P_K[l,p])` with learnable biases :math:`P_K, P_V \sim N(0,1)`.
* Eq. 11: in layer ``l`` the prefix vectors pass through that layer's frozen ``k_proj``/``v_proj``
  and are prepended to the keys and values, without rotary positions; text and item tokens get
  positions from ``P`` (:func:`recbole_llm.models.hellm.prefix.forward_with_prefix`).
* Item tokens: each history item is one input embedding :math:`\mathrm{MLP_{in}}([g_i; s_i])`
  (Linear, GELU, Linear) between the tokenised prompt head ("... ### Input:\n") and tail
  ("\n### Response:\n"), each with the tokenizer's BOS as in the authors' prompt.
* LoRA (``peft``) on the feed-forward projections (``hellm_lora_targets``), r 16, alpha 16,
  dropout 0.05 by default; the rest of the LLM is frozen.
* Eq. 14: :math:`z = W_o h_{last}` over all items with a **trainable** :math:`W_o` (the authors'
  head stays at its random initialisation), cross-entropy against the next item; item 0
  (padding) never scores. ``hellm_head: linear`` trains a free ``[n_items, hidden]`` W_o;
  ``stage1`` factorises it as :math:`W_o = [G; S]\,P` over the frozen stage-1 item tables the
  item tokens use, so only ``P`` trains: with a CPU budget of a few thousand samples a free W_o
  learns little more than popularity, while the factorised one starts from item geometry that
  HeLLMPre and SASRec learned from every training interaction (the paper leaves W_o's form open).

The LLM is not a submodule (it stays out of ``state_dict``), but its LoRA weights are registered
in ``self.lora`` (a ParameterDict sharing the very tensors peft injected), so checkpoints hold
exactly the trainable state plus the two frozen embedding tables.

Ablations: ``hellm_graph_prefix: False`` (w/o GNN_PEFT: no prefix), ``hellm_graph_id: False``
(w/o GNN_ID: item tokens from SASRec embeddings only), ``hellm_seq_id: False`` (w/o Seq_ID:
from graph embeddings only).
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_llm.errors import ConfigError
from recbole_llm.models.hellm.prefix import forward_with_prefix, prefix_key_values
from recbole_llm.models.hellm.settings import HELLM_SETTINGS, HELLMPRE_SETTINGS
from recbole_llm.models.prompt_recommender import LoRARecommender
from recbole_llm.training.pretrain import load_frozen_tables

logger = logging.getLogger(__name__)


def _mlp(d_in, d_hidden, d_out, dropout):
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(d_hidden, d_out), nn.GELU(), nn.Dropout(dropout))


class HeLLM(LoRARecommender):
    """HeLLM (see the module docstring)."""

    input_type = InputType.POINTWISE
    other_parameter_name = ["graph_source", "seq_source"]

    def __init__(self, config, dataset, backbone=None):
        super().__init__(config, dataset)
        s = self.settings = HELLM_SETTINGS.read(config)
        d = self.graph_dim = HELLMPRE_SETTINGS.read(config).embedding_size
        if not (s.graph_id or s.seq_id):
            raise ConfigError("HeLLM settings hellm_graph_id and hellm_seq_id are both False: item tokens would have "
                              "no input. Keep at least one of them True.")
        self.use_prefix, self.use_graph_id, self.use_seq_id = s.graph_prefix, s.graph_id, s.seq_id
        # -- the LLM: a private copy with LoRA on the feed-forward projections ----------------------
        self.attach_llm(config, backbone, "hellm_lora_targets")
        hidden, n_layers = self.backbone.hidden_size, self.backbone.num_layers
        # -- frozen stage-1 tables (filled by HeLLMTrainer) -----------------------------------------
        self.register_buffer("item_graph_emb", torch.zeros(self.n_items, d))
        self.register_buffer("item_seq_emb", torch.zeros(self.n_items, d))
        # -- Eqs. 9-10: bilinear pooling and prefix encoders ----------------------------------------
        self.bilinear = nn.Parameter(torch.eye(d)) if s.bilinear else None
        if self.use_prefix:
            self.prefix_len = s.prefix_len
            self.prefix_k = _mlp(d * d, s.prefix_hidden, hidden, s.prefix_dropout)
            self.prefix_v = _mlp(d * d, s.prefix_hidden, hidden, s.prefix_dropout)
            self.prefix_bias_k = nn.Parameter(torch.randn(n_layers, s.prefix_len, hidden))
            self.prefix_bias_v = nn.Parameter(torch.randn(n_layers, s.prefix_len, hidden))
            # torch's RMSNorm: same outputs and gradients, to the bit, as the formula written by hand (checked on CPU)
            self.norm_pre_k, self.norm_post_k = nn.RMSNorm(hidden, eps=1e-5), nn.RMSNorm(hidden, eps=1e-5)
            self.norm_pre_v, self.norm_post_v = nn.RMSNorm(hidden, eps=1e-5), nn.RMSNorm(hidden, eps=1e-5)
        # -- item tokens and the item head ------------------------------------------------------------
        d_in = d * (int(self.use_graph_id) + int(self.use_seq_id))
        mid = s.item_mlp_hidden or hidden
        self.item_mlp = nn.Sequential(nn.Linear(d_in, mid), nn.GELU(), nn.Linear(mid, hidden))
        # Eq. 14's W_o: a free [n_items, hidden] matrix (``linear``), or W_o = [G ; S] P over the frozen
        # stage-1 item tables the item tokens use (``stage1``: only P [2d, hidden] trains)
        self.head_kind = s.head
        self.head = nn.Linear(hidden, self.n_items if s.head == "linear" else d_in, bias=False)
        # zero init: every item starts at the same logit (loss log|I|); a random init on the large-norm
        # hidden states of a pretrained LLM starts far above that and costs the first steps
        nn.init.zeros_(self.head.weight)
        # -- the prompt around the item tokens (frozen token embeddings) ------------------------------
        bos = self.backbone.bos_ids
        head_ids = bos + list(self.backbone.encode(s.prompt_head.format(instruction=s.instruction)))
        tail_ids = bos + list(self.backbone.encode(s.prompt_tail))
        with torch.no_grad():
            self.register_buffer("head_emb", self.backbone.embed(torch.tensor(head_ids)).detach().float().cpu(),
                                 persistent=False)
            self.register_buffer("tail_emb", self.backbone.embed(torch.tensor(tail_ids)).detach().float().cpu(),
                                 persistent=False)
        self.graph_source = self.seq_source = ""

    # ------------------------------------------------------------------------------------------
    def set_item_embeddings(self, graph=None, seq=None, graph_source="", seq_source=""):
        """Copy stage-1 item tables (``[n_items, d]``) into the frozen buffers."""
        load_frozen_tables(self, {"item_graph_emb": graph, "item_seq_emb": seq}, "stage 1",
                           "embedding_size must equal the pretrained models' size.")
        self.graph_source = graph_source or self.graph_source
        self.seq_source = seq_source or self.seq_source

    # -- Eqs. 8-10 ---------------------------------------------------------------------------------
    def graph_features(self, item_seq, mask):
        """``s_u``: normalised second-order pooling of the history's graph embeddings (pads masked)."""
        g = self.item_graph_emb[item_seq] * mask[..., None]
        if self.bilinear is not None:
            g = g @ self.bilinear
        pooled = g.transpose(1, 2) @ g  # [B, d, d] = W^T G^T G W
        flat = pooled.flatten(1)
        return F.layer_norm(flat, flat.shape[-1:])

    def prefix_vectors(self, item_seq, mask):
        """``(K, V)`` prefix hidden vectors ``[B, L, P, H]`` (Eq. 10)."""
        s = self.graph_features(item_seq, mask)
        k = self.norm_pre_k(self.prefix_k(s))[:, None, None, :]
        v = self.norm_pre_v(self.prefix_v(s))[:, None, None, :]
        keys = self.norm_post_k(k + self.prefix_bias_k[None])
        values = self.norm_post_v(v + self.prefix_bias_v[None])
        return keys, values

    def item_features(self, items=None):
        """``[g_i ; s_i]`` of ``items`` (all items when None): the stage-1 tables the switches keep."""
        parts = []
        if self.use_graph_id:
            parts.append(self.item_graph_emb if items is None else self.item_graph_emb[items])
        if self.use_seq_id:
            parts.append(self.item_seq_emb if items is None else self.item_seq_emb[items])
        return torch.cat(parts, dim=-1)

    def item_tokens(self, item_seq):
        return self.item_mlp(self.item_features(item_seq))

    def item_logits(self, last):
        """Eq. 14: ``W_o h_last`` over all items (``hellm_head``)."""
        if self.head_kind == "linear":
            return self.head(last)
        return self.head(last) @ self.item_features().to(last.dtype).T

    # -- the LLM -----------------------------------------------------------------------------------
    def forward(self, item_seq, item_seq_len):
        """Item logits ``[B, n_items]`` for RecBole's right-padded ``item_seq`` ``[B, T]`` (the last
        ``hellm_max_history`` items of each history are used)."""
        dev = self.head.weight.device
        item_seq, item_seq_len = item_seq.to(dev), item_seq_len.to(dev)
        bsz, t_len = item_seq.shape
        # right-align each history so that the prompt tail follows it directly: [head, pads, items, tail]
        cols = torch.arange(t_len, device=dev)[None]
        shift = (t_len - item_seq_len)[:, None]
        aligned_mask = (cols >= shift).long()
        aligned = torch.gather(item_seq, 1, (cols - shift).clamp(min=0)) * aligned_mask
        keep = min(t_len, self.settings.max_history)
        aligned, aligned_mask = aligned[:, -keep:], aligned_mask[:, -keep:]
        tokens = self.item_tokens(aligned) * aligned_mask[..., None]
        head = self.head_emb.to(dev)[None].expand(bsz, -1, -1)
        tail = self.tail_emb.to(dev)[None].expand(bsz, -1, -1)
        embeds = torch.cat([head, tokens, tail], dim=1).to(self.backbone.dtype)
        attn = torch.cat([torch.ones(bsz, head.shape[1], dtype=torch.long, device=dev), aligned_mask,
                          torch.ones(bsz, tail.shape[1], dtype=torch.long, device=dev)], dim=1)
        if self.use_prefix:
            keys, values = self.prefix_vectors(aligned, aligned_mask.float())
            kv = prefix_key_values(self.backbone, keys, values)
            out = forward_with_prefix(self.backbone, embeds, attn, kv)
        else:
            positions = (attn.cumsum(1) - 1).clamp(min=0)
            out = self.backbone.forward_embeds(embeds, attention_mask=attn, position_ids=positions)
        last = out.last_hidden_state[:, -1].float()
        logits = self.item_logits(last)
        logits[:, 0] = float("-inf")
        return logits

    def calculate_loss(self, interaction):
        logits = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return F.cross_entropy(logits, interaction[self.POS_ITEM_ID].to(logits.device))

    @torch.no_grad()
    def full_sort_predict(self, interaction):
        seq, lens = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        return self.in_batches(len(seq), lambda a, b: self.forward(seq[a:b], lens[a:b])).to(seq.device)

    @torch.no_grad()
    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        items = interaction[self.ITEM_ID].to(scores.device)
        return scores.gather(1, items[:, None]).squeeze(1)
