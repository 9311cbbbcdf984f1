"""GLTA (graph-language token alignment with a GLLM item head).

``model.py`` (the RecBole model), ``gllm.py`` (GLLM layer, Eq. 3 loss), ``prompts.py`` (templates),
``scoring.py`` (first_k / first_logit / autoregressive), ``trainer.py`` (the four stages),
``settings.py`` (what each ``glta_*`` key must be; defaults in ``properties/model/GLTA.yaml``),
``plugin.py`` (registration through the plugin hooks).
"""

from recbole_llm.models.glta.model import GLTA
from recbole_llm.models.glta.trainer import GLTATrainer

__all__ = ["GLTA", "GLTATrainer"]
