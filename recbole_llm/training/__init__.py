"""Training machinery shared by recbole-llm's multi-stage models (GLTA, GraphAttentiveGPT2, HeLLM)."""
