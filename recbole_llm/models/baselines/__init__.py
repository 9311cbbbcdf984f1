"""Baselines of the three papers that RecBole lacks (graph, hypergraph and multimodal CF),
registered through the same plugin hooks as any outside plugin."""
