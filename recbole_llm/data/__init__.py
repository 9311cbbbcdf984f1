"""Datasets for recbole-llm: providers that fetch and convert official data
(:mod:`recbole_llm.data.providers`), the item-text layer every LLM model uses
(:mod:`recbole_llm.data.text`) and item feature matrices: sentence-encoder text embeddings
with an on-disk cache, precomputed ``.npy`` image/text features
(:mod:`recbole_llm.data.features`); the training split's pairs, histories and fingerprint
(:mod:`recbole_llm.data.interactions`); other RecBole models' views of a run's split
(:mod:`recbole_llm.data.views`).

Submodules are imported on use: the text layer and the feature layer need a built RecBole
dataset, the providers only the standard library and ``atomic_data``.
"""
