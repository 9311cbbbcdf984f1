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
from recbole_llm.models.hellm.settings import HELLM_SETTINGS, HELLMPRE_SETTINGS
from recbole_llm.paths import properties_dir
from recbole_llm.plain import plain

SCHEMAS = {"GLTA": [GLTA_SETTINGS], "GraphAttentiveGPT2": [GAT_SETTINGS], "HeLLM": [HELLM_SETTINGS, HELLMPRE_SETTINGS]}


def table(model):
    return yaml.safe_load((properties_dir() / "model" / "paper_values" / f"{model}.yaml").read_text())


@pytest.mark.parametrize("model", sorted(SCHEMAS))
def test_paper_config_equals_the_paper_table_on_every_setting(model):
    config = Config(model=model, dataset="ml-100k",
                    config_file_list=[str(properties_dir() / "model" / f"{model}-paper.yaml")])
    values = table(model)
    keys = {k for s in SCHEMAS[model] + [LLM_SETTINGS] for k in s.keys}
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


def test_glta_paper_keeps_no_cpu_initial_state_choice():
    values = table("GLTA")
    assert values["glta_keep_initial"]["value"] is False and values["glta_head_init"]["value"] != "probe"
    text = (properties_dir() / "model" / "GLTA-paper.yaml").read_text()
    assert "glta_keep_initial: False" in text and "glta_head_init: carry" in text  # set there, not inherited
