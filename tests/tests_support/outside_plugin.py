"""A throwaway third-party plugin package, found only through its entry point.

``make_outside_plugin(root)`` writes the package and its ``.dist-info`` under ``root``: a process
with ``root`` on ``sys.path`` sees the ``recbole_llm`` entry point ``outside`` that registers the
model ``PopPlusMF`` (with its own property file: ``embedding_size: 12``) and its settings schema.
"""

PLUGIN_MODEL = '''
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_normal_initialization
from recbole.utils import InputType


class PopPlusMF(GeneralRecommender):
    """A tiny matrix factorisation used as a third-party plugin model in tests."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.user_emb = torch.nn.Embedding(self.n_users, config["embedding_size"])
        self.item_emb = torch.nn.Embedding(self.n_items, config["embedding_size"])
        self.apply(xavier_normal_initialization)

    def calculate_loss(self, interaction):
        u = self.user_emb(interaction[self.USER_ID])
        pos = (u * self.item_emb(interaction[self.ITEM_ID])).sum(-1)
        neg = (u * self.item_emb(interaction[self.NEG_ITEM_ID])).sum(-1)
        return -torch.nn.functional.logsigmoid(pos - neg).mean()

    def predict(self, interaction):
        return (self.user_emb(interaction[self.USER_ID]) * self.item_emb(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        return (self.user_emb(interaction[self.USER_ID]) @ self.item_emb.weight.T).view(-1)
'''

PLUGIN_HOOKS = '''
from pathlib import Path

import recbole_llm
from outside_plugin.model import PopPlusMF
from recbole_llm.settings import Int, Settings

POP_PLUS_MF_SETTINGS = Settings("PopPlusMF", keys={
    "embedding_size": Int(min=1, doc="user and item embedding size"),
})


@recbole_llm.hookimpl
def register_models():
    return [PopPlusMF]


@recbole_llm.hookimpl
def register_property_files():
    return {"PopPlusMF": [str(Path(__file__).with_name("PopPlusMF.yaml"))]}


@recbole_llm.hookimpl
def register_settings():
    return {"PopPlusMF": [POP_PLUS_MF_SETTINGS]}
'''


def make_outside_plugin(root):
    """Write the package ``outside_plugin`` (model ``PopPlusMF``, entry point ``outside``) and its
    ``.dist-info`` under ``root``; return ``root``. Put ``root`` on ``sys.path`` to install it."""
    pkg = root / "outside_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(PLUGIN_MODEL)
    (pkg / "plugin.py").write_text(PLUGIN_HOOKS)
    (pkg / "PopPlusMF.yaml").write_text("embedding_size: 12\nlearning_rate: 0.01\n")
    dist = root / "outside_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[recbole_llm]\noutside = outside_plugin.plugin\n")
    return root
