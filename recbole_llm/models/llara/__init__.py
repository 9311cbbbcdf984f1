"""LLaRA (SASRec embeddings as hybrid item tokens after the titles, curriculum, LoRA; Liao et al.).

``model.py`` (the model), ``trainer.py`` (stages sasrec -> finetune), ``settings.py`` (what
each ``llara_*`` key must be; defaults in ``properties/model/LLaRA.yaml``), ``plugin.py``
(registration through the plugin hooks).
"""
