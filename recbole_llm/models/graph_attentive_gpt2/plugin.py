"""GraphAttentiveGPT2's registration: the same hooks an outside plugin implements."""

from recbole_llm.models.builtin import builtin_hooks

register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
    models=["recbole_llm.models.graph_attentive_gpt2.model:GraphAttentiveGPT2"],
    trainers={
        "GraphAttentiveGPT2": "recbole_llm.models.graph_attentive_gpt2.trainer:GraphAttentiveGPT2Trainer"},
    property_files={"GraphAttentiveGPT2": ["llm.yaml", "GraphAttentiveGPT2.yaml"]},
    settings={"GraphAttentiveGPT2": ["recbole_llm.models.graph_attentive_gpt2.settings:GAT_SETTINGS", "recbole_llm.llm.loading:LLM_SETTINGS"]})
