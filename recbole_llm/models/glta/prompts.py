"""GLTA's two prompt templates and how they are filled.

* *Item-text alignment* ("queries the LLM to reorder the item language information and match the
  token with the predicted logits"): the descriptions of ``m`` items (numbered) and the ``m`` item
  tokens in a shuffled order; slot ``j`` must be matched, through the GLLM logits, to the item of
  description ``j``. To solve it the LLM has to match each projected node token with its text.
* *User-item alignment*: "profile: ...\\nprediction: ...\\nUser <u> history: <i1> <i2> ...\\nNext:
  [slot_1] ... [slot_L]". Texts first, trainable tokens last, so the keys/values of the text
  (fixed per user once generated) are computed once and cached (``PrefixKVStore``).

The templates are settings (``glta_ia_template``, ``glta_ua_template``); ``{slots}`` must appear
in both, and fields a template leaves out are simply not computed into the prompt (the ablations
w/o PF, w/o PD use this).
"""

from __future__ import annotations

from recbole_llm.errors import ConfigError
from recbole_llm.llm.prompts import PromptTemplate, Vectors

_IA_FIELDS = {"descriptions", "n", "item_tokens", "slots"}
_UA_FIELDS = {"profile", "prediction", "user", "history", "slots"}


def _template(key, text, allowed):
    template = PromptTemplate(text)
    unknown = set(template.fields) - allowed
    if unknown or "slots" not in template.fields:
        raise ConfigError(
            f"GLTA setting {key}={text!r} is invalid: it must contain {{slots}} and may use only "
            f"{', '.join('{' + f + '}' for f in sorted(allowed))}"
            + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "") + ".")
    return template


class GLTAPrompts:
    """Fills GLTA's templates from texts and vectors (the model supplies the vectors)."""

    def __init__(self, s, backbone, item_texts, user_tokens_text):
        self.s = s
        self.backbone = backbone
        self.item_texts = item_texts
        self.user_tokens_text = user_tokens_text
        self.ia_template = _template("glta_ia_template", s.ia_template, _IA_FIELDS)
        self.ua_template = _template("glta_ua_template", s.ua_template, _UA_FIELDS)

    def item_text(self, items, item_vectors, slot_vectors):
        """Item-text alignment prompt: descriptions of ``items`` in order, ``item_vectors`` (already in
        the shuffled token order) and the slots."""
        descriptions = "".join(
            self.s.ia_description_format.format(n=j + 1, text=self.item_texts[i]) for j, i in enumerate(items))
        values = {
            "descriptions": descriptions,
            "n": str(len(items)),
            "item_tokens": Vectors("item_tokens", item_vectors),
            "slots": Vectors("slots", slot_vectors),
        }
        return self.ia_template.fill(**{k: v for k, v in values.items() if k in self.ia_template.fields})

    def user_text(self, text, fmt, max_tokens):
        text = self.backbone.truncate_text(text, max_tokens) if text else ""
        return fmt.format(text=text) if text else ""

    def user_item(self, u, profile, prediction, user_vector, history_vectors, slot_vectors):
        """User-item alignment prompt of user ``u``; ``user_vector`` None = the user's id as text
        (w/o UA), ``history_vectors`` None = empty history."""
        s = self.s
        values = {
            "profile": self.user_text(profile, s.ua_profile_format, s.text_max_tokens) if s.profile_tokens else "",
            "prediction": self.user_text(prediction, s.ua_prediction_format, s.text_max_tokens)
            if s.prediction_tokens else "",
            "user": Vectors("user", user_vector) if user_vector is not None
            else s.ua_user_text_format.format(id=self.user_tokens_text[u]),
            "history": Vectors("history", history_vectors) if history_vectors is not None else s.ua_empty_history,
            "slots": Vectors("slots", slot_vectors),
        }
        return self.ua_template.fill(**{k: v for k, v in values.items() if k in self.ua_template.fields})
