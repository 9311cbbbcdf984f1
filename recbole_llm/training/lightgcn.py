"""LightGCN node embeddings of the training split (GLTA's stage 1; graph encoders of RLMRec/CoLLM).

RecBole's own LightGCN is trained by :func:`recbole_llm.training.pretrain.pretrain_recbole_model`
(cached by the training-split fingerprint, reused checkpoints checked against it); this module
turns the trained model into frozen, layer-averaged user and item embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from recbole_llm.training.pretrain import pretrain_recbole_model


@dataclass
class GraphEmbeddings:
    user: torch.Tensor  # [n_users, d]
    item: torch.Tensor  # [n_items, d]
    source: str
    stats: dict = field(default_factory=dict)


@torch.no_grad()
def lightgcn_embeddings(lightgcn) -> tuple[torch.Tensor, torch.Tensor]:
    """Final (layer-averaged) user and item embeddings of a RecBole LightGCN, on CPU, float32."""
    lightgcn.eval()
    user_emb, item_emb = lightgcn.forward()
    return user_emb.detach().cpu().float(), item_emb.detach().cpu().float()


def pretrain_lightgcn(config, train_data, valid_data, *, overrides: dict, work_dir, label: str,
                      checkpoint: str = "", use_cache: bool = True) -> GraphEmbeddings:
    """LightGCN embeddings of this run's training split: from ``checkpoint``, the cache, or trained."""
    done = pretrain_recbole_model(config, train_data, valid_data, model="LightGCN", overrides=overrides,
                                  work_dir=work_dir, label=label, checkpoint=checkpoint, use_cache=use_cache,
                                  architecture_keys=("embedding_size", "n_layers"))
    user, item = lightgcn_embeddings(done.model)
    return GraphEmbeddings(user, item, done.source, done.stats)
