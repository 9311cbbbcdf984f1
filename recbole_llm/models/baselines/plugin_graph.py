"""Registration of the graph, hypergraph and VAE baselines (HCCF, LightGCN+, HCCF+, MD-CVAE):
the same hooks an outside plugin implements."""

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


@hookimpl
def register_models():
    from recbole_llm.models.baselines.hccf import HCCF
    from recbole_llm.models.baselines.md_cvae import MDCVAE
    from recbole_llm.models.baselines.text_alignment import HCCFPlus, LightGCNPlus

    return [HCCF, LightGCNPlus, HCCFPlus, MDCVAE]


@hookimpl
def register_property_files():
    model_dir = properties_dir() / "model"
    alignment = str(model_dir / "text_alignment.yaml")  # the "+" models' shared alignment defaults
    return {
        "HCCF": [str(model_dir / "HCCF.yaml")],
        "LightGCNPlus": [str(model_dir / "LightGCNPlus.yaml"), alignment],
        "HCCFPlus": [str(model_dir / "HCCF.yaml"), alignment],
        "MDCVAE": [str(model_dir / "MDCVAE.yaml")],
    }
