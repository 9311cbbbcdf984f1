"""CoLLM (LightGCN embeddings mapped into LLM tokens, LoRA; Zhang et al.).

``model.py`` (the model), ``trainer.py`` (stages graph -> lora -> cie), ``settings.py`` (what
each ``collm_*`` key must be; defaults in ``properties/model/CoLLM.yaml``), ``plugin.py``
(registration through the plugin hooks).
"""
