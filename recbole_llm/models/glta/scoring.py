"""How GLTA turns slot logits into scores for RecBole's full-ranking evaluator.

* ``first_k`` (paper default): slot ``t`` (``t = 1..k``, ``k = glta_infer_slots`` or ``L``) picks the
  highest-logit item that is not a training item of the user and not picked by an earlier slot.
  Picked items get ``PICK_BONUS + (k - t)`` (ranked in slot order); every other item gets the mean
  over the ``k`` slots of its log-softmax probability (ranks past ``k`` stay meaningful).
* ``first_logit`` (FL): the log-softmax of the first slot.
* ``autoregressive`` (AR): slot 1 as above, then each picked item's projected token is fed back as
  the next input (``k`` steps, key/value cache); picks first, the rest by slot 1's log-softmax.

RecBole sets the scores of history items to ``-inf`` afterwards, as for any model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PICK_BONUS = 1.0e4


def distinct_picks(logits, excluded, k) -> torch.Tensor:
    """``[B, k]`` items: slot t's best item that is neither ``excluded`` nor picked before."""
    excluded = excluded.to(logits.device).clone()
    rows = torch.arange(logits.shape[0], device=logits.device)
    picks = []
    for t in range(k):
        pick = logits[:, t].masked_fill(excluded, float("-inf")).argmax(-1)
        picks.append(pick)
        excluded[rows, pick] = True
    return torch.stack(picks, 1)


def scores_from_picks(base, picks) -> torch.Tensor:
    scores = base.clone()
    k = picks.shape[1]
    bonus = PICK_BONUS + torch.arange(k, 0, -1, device=scores.device, dtype=scores.dtype) - 1
    scores.scatter_(1, picks, bonus.unsqueeze(0).expand(picks.shape[0], -1))
    return scores


def first_k_scores(logits, excluded, k) -> torch.Tensor:
    base = F.log_softmax(logits[:, :k], -1).mean(1)
    return scores_from_picks(base, distinct_picks(logits, excluded, k))


def first_logit_scores(logits) -> torch.Tensor:
    return F.log_softmax(logits[:, 0], -1)


@torch.no_grad()
def autoregressive_scores(model, users) -> torch.Tensor:
    """AR decoding of ``model.infer_slots`` picks for ``users`` with a key/value cache."""
    users = [int(u) for u in users]
    k = model.infer_slots
    backbone = model.backbone
    prompts = model.inference_prompts(users, n_slots=1)
    builder = model.builder("ua")
    batch = builder.build(prompts)
    out = backbone.forward_embeds(batch.inputs_embeds, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids, past_key_values=batch.past_key_values,
                                  use_cache=True)
    model.token_stats["infer"] += batch.tokens
    hidden = batch.gather(out.last_hidden_state, "slots")[:, 0]
    cache, mask = out.past_key_values, batch.attention_mask
    next_pos = batch.position_ids.gather(1, batch.positions["slots"][:, :1]) + 1
    excluded = model.excluded_items(users).to(backbone.device)
    rows = torch.arange(len(users), device=backbone.device)
    first_logits, picks = None, []
    for step in range(k):
        logits = model.gllm_logits(hidden.unsqueeze(1))[:, 0]
        if first_logits is None:
            first_logits = logits
        pick = logits.to(excluded.device).masked_fill(excluded, float("-inf")).argmax(-1)
        picks.append(pick)
        excluded[rows, pick] = True
        if step == k - 1:
            break
        token = model.item_tokens(pick).to(backbone.dtype).unsqueeze(1)
        mask = torch.cat([mask, torch.ones(len(users), 1, dtype=mask.dtype, device=mask.device)], 1)
        out = backbone.forward_embeds(token, attention_mask=mask, position_ids=next_pos,
                                      past_key_values=cache, use_cache=True)
        model.token_stats["infer"] += len(users)
        cache, hidden, next_pos = out.past_key_values, out.last_hidden_state[:, 0], next_pos + 1
    base = F.log_softmax(first_logits.float(), -1)
    return scores_from_picks(base, torch.stack(picks, 1))
