"""RLMRec's stages on the shared :class:`~recbole_llm.training.staged.StagedTrainer`.

``profiles``
    The semantic view, once: the LLM writes item and user profiles from item texts and the users'
    training items (:func:`recbole_llm.llm.profiles.generate_profiles`, answers cached on disk), the
    sentence encoder embeds them (cached too). With ``rlmrec_profile_source: item_text`` the item
    texts stand in for the profiles and no LLM is loaded; with ``generated_users`` only the users'
    profiles are generated (items: their texts). Stage statistics include the generation
    counters (prompts, cached, generated, tokens, tokens/s) and its seconds.
``train``
    LightGCN + alignment (``calculate_loss``) over RecBole's pairwise training batches for
    ``epochs`` epochs at ``learning_rate``; RecBole's validation every ``eval_step`` epochs, early
    stopping and best-model checkpoint.
"""

from __future__ import annotations

from recbole_llm.llm.generation import GenerationStats
from recbole_llm.training.staged import Stage, StagedTrainer

class RLMRecTrainer(StagedTrainer):
    """Runs RLMRec's stages (see the module docstring)."""

    def stages(self):
        m = self.model
        return [
            Stage("profiles", run=self.profiles_stage),
            Stage("train", epochs=int(self.config["epochs"]), train_epoch=self.train_epoch,
                  parameters=lambda: [p for p in m.parameters() if p.requires_grad],
                  learning_rate=float(self.config["learning_rate"]),
                  weight_decay=float(self.config["weight_decay"] or 0.0), validate=True, unit="batches",
                  units_per_epoch=len(self.train_data)),
        ]

    def profiles_stage(self, trainer):
        m = self.model
        stats = GenerationStats()
        source = m.settings.profile_source
        total = sum(1 for h in m.histories[1:] if len(h))
        if source == "generated":
            total += sum(1 for t in m.item_texts[1:] if t)
        progress = self.progress("profiles", total, unit="prompts")
        out = m.build_semantic(progress=progress.step, stats=stats)
        if source != "item_text":
            out.update({"prompts": stats.prompts, "cached": stats.cached, "generated": stats.generated,
                        "prefill_tokens": stats.prefill_tokens, "new_tokens": stats.new_tokens,
                        "generation_seconds": stats.seconds, "tokens_per_s": stats.tokens_per_second})
            example = next((u for u in range(1, m.n_users) if m.user_profiles[u]), None)
            if example is not None:
                self.logger.info(f"{self.label('profiles')}: user {example} profile {m.user_profiles[example]!r}")
        return out

    def train_epoch(self, trainer, epoch, optimizer):
        return self.run_batches("train", epoch, self.train_data,
                                lambda batch: self.model.calculate_loss(batch.to(self.device)), optimizer)
