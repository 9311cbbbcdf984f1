"""Paper configs say what the papers did (issue 21): each covered ``properties/model/<M>-paper.yaml``,
resolved as a run resolves it (the model's CPU YAML first, then the paper file; no weights loaded),
equals the table ``properties/model/paper_values/<M>.yaml`` on every setting of the model's schema and
the LLM's, each with its source (paper section, the authors' code file, or 'ours' / 'efficiency').
A CPU default that changes cannot reach a paper config unnoticed: the resolved value would differ
from the table."""


import pytest
import yaml

from recbole_llm.config import Config
from recbole_llm.llm.loading import LLM_SETTINGS
from recbole_llm.models.glta.settings import GLTA_SETTINGS
from recbole_llm.models.graph_attentive_gpt2.settings import GAT_SETTINGS
from recbole_llm.models.collm.settings import COLLM_SETTINGS
from recbole_llm.models.hellm.settings import HELLM_SETTINGS, HELLMPRE_SETTINGS
from recbole_llm.models.llara.settings import LLARA_SETTINGS
from recbole_llm.models.rlmrec.settings import RLMREC_CON_SETTINGS, RLMREC_GEN_SETTINGS
from recbole_llm.models.unisrec.settings import UNISREC_SETTINGS
from recbole_llm.paths import properties_dir
from recbole_llm.plain import plain

# model -> the settings schemas its table covers (every key of each), and the RecBole keys it reads besides
SCHEMAS = {"GLTA": [GLTA_SETTINGS, LLM_SETTINGS], "GraphAttentiveGPT2": [GAT_SETTINGS, LLM_SETTINGS],
           "HeLLM": [HELLM_SETTINGS, HELLMPRE_SETTINGS, LLM_SETTINGS],
           "CoLLM": [COLLM_SETTINGS, LLM_SETTINGS], "LLaRA": [LLARA_SETTINGS, LLM_SETTINGS],
           "RLMRecCon": [RLMREC_CON_SETTINGS, LLM_SETTINGS], "RLMRecGen": [RLMREC_GEN_SETTINGS, LLM_SETTINGS],
           "UniSRec": [UNISREC_SETTINGS]}
_TRAINING = ["epochs", "learning_rate", "train_batch_size", "eval_step", "stopping_step", "learner", "weight_decay"]
RECBOLE_KEYS = {"CoLLM": ["learner", "stopping_step"], "LLaRA": ["learner", "stopping_step"],
                "RLMRecCon": _TRAINING + ["text_encoder"], "RLMRecGen": _TRAINING + ["text_encoder"],
                "UniSRec": ["n_layers", "n_heads", "hidden_size", "inner_size", "hidden_dropout_prob",
                            "attn_dropout_prob", "hidden_act", "layer_norm_eps", "initializer_range",
                            "MAX_ITEM_LIST_LENGTH", "epochs", "learning_rate", "train_batch_size", "stopping_step",
                            "learner", "weight_decay", "text_encoder"]}


def table(model):
    return yaml.safe_load((properties_dir() / "model" / "paper_values" / f"{model}.yaml").read_text())


@pytest.mark.parametrize("model", sorted(SCHEMAS))
def test_paper_config_equals_the_paper_table_on_every_setting(model):
    config = Config(model=model, dataset="ml-100k",
                    config_file_list=[str(properties_dir() / "model" / f"{model}-paper.yaml")])
    values = table(model)
    keys = {k for s in SCHEMAS[model] for k in s.keys} | set(RECBOLE_KEYS.get(model, ()))
    assert set(values) == keys, {"missing from the table": sorted(keys - set(values)),
                                 "not settings": sorted(set(values) - keys)}
    wrong = {k: (plain(config[k]), v["value"]) for k, v in values.items() if plain(config[k]) != plain(v["value"])}
    assert not wrong, f"resolved {model}-paper config != paper table (resolved, table): {wrong}"
    for key, entry in values.items():
        assert str(entry.get("source", "")).strip(), key
        if "paper" in entry and plain(entry["paper"]) != plain(entry["value"]):
            assert str(entry.get("deviation", "")).strip(), f"{key}: differs from the paper without a reason"


def test_a_cpu_default_change_would_be_caught(monkeypatch):
    """The check above fails when a CPU-only choice reaches the paper config through inheritance."""
    from recbole_llm import config as config_module

    real = config_module.Config.__init__

    def leaky(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.final_config_dict["glta_keep_initial"] = True  # as if GLTA.yaml's value leaked through

    monkeypatch.setattr(config_module.Config, "__init__", leaky)
    with pytest.raises(AssertionError, match="glta_keep_initial"):
        test_paper_config_equals_the_paper_table_on_every_setting("GLTA")


def test_every_paper_config_has_a_table():
    shipped = {p.name[:-len("-paper.yaml")] for p in (properties_dir() / "model").glob("*-paper.yaml")}
    assert shipped == set(SCHEMAS)


def test_paper_configs_fixed_against_their_sources():
    """Values the authors' code gives and an earlier paper config had wrong (issue 21.2)."""
    collm = table("CoLLM")
    assert collm["collm_warmup_epochs"]["value"] == 4.0  # warmup_steps 200 / iters_per_epoch 50, not 0.25
    assert (collm["collm_graph_epochs"]["value"], collm["collm_graph_eval_step"]["value"],
            collm["collm_graph_stopping_step"]["value"]) == (5000, 1, 100)
    assert collm["stopping_step"]["value"] == 20  # the authors' runner stops after 20 epochs without improvement
    for model in ("RLMRecCon", "RLMRecGen"):
        assert table(model)["epochs"]["value"] == 3000  # the authors' train.epoch, not 300


def test_glta_paper_keeps_no_cpu_initial_state_choice():
    values = table("GLTA")
    assert values["glta_keep_initial"]["value"] is False and values["glta_head_init"]["value"] != "probe"
    text = (properties_dir() / "model" / "GLTA-paper.yaml").read_text()
    assert "glta_keep_initial: False" in text and "glta_head_init: carry" in text  # set there, not inherited
