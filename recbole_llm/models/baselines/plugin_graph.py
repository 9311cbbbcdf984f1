"""Registration of the graph, hypergraph and VAE baselines (HCCF, LightGCN+, HCCF+, MD-CVAE): the
same hooks an outside plugin implements. The "+" models share the text-alignment defaults."""

from recbole_llm.models.builtin import builtin_hooks

BASELINES = "recbole_llm.models.baselines"

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=["recbole_llm.models.baselines.hccf:HCCF", "recbole_llm.models.baselines.text_alignment:LightGCNPlus",
            "recbole_llm.models.baselines.text_alignment:HCCFPlus", "recbole_llm.models.baselines.md_cvae:MDCVAE"],
    property_files={"HCCF": ["HCCF.yaml"], "LightGCNPlus": ["LightGCNPlus.yaml", "text_alignment.yaml"],
                    "HCCFPlus": ["HCCF.yaml", "text_alignment.yaml"], "MDCVAE": ["MDCVAE.yaml"]},
    settings={"HCCF": [f"{BASELINES}.hccf:HCCF_SETTINGS"],
              "LightGCNPlus": [f"{BASELINES}.text_alignment:LIGHTGCN_SETTINGS", f"{BASELINES}.text_alignment:TEXT_ALIGNMENT_SETTINGS"],
              "HCCFPlus": [f"{BASELINES}.hccf:HCCF_SETTINGS", f"{BASELINES}.text_alignment:TEXT_ALIGNMENT_SETTINGS"],
              "MDCVAE": [f"{BASELINES}.md_cvae:MDCVAE_SETTINGS"]})
