"""Registration of the graph, hypergraph and VAE baselines (HCCF, LightGCN+, HCCF+, MD-CVAE): the
same hooks an outside plugin implements. The "+" models share the text-alignment defaults."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files = builtin_hooks(
    models=["recbole_llm.models.baselines.hccf:HCCF", "recbole_llm.models.baselines.text_alignment:LightGCNPlus",
            "recbole_llm.models.baselines.text_alignment:HCCFPlus", "recbole_llm.models.baselines.md_cvae:MDCVAE"],
    property_files={"HCCF": ["HCCF.yaml"], "LightGCNPlus": ["LightGCNPlus.yaml", "text_alignment.yaml"],
                    "HCCFPlus": ["HCCF.yaml", "text_alignment.yaml"], "MDCVAE": ["MDCVAE.yaml"]})
