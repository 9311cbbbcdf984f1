"""RLMRec (Ren et al., WWW 2024): RLMRec-Con and RLMRec-Gen on RecBole's LightGCN."""

from recbole_llm.models.rlmrec.model import RLMRecCon, RLMRecGen
from recbole_llm.models.rlmrec.trainer import RLMRecTrainer

__all__ = ["RLMRecCon", "RLMRecGen", "RLMRecTrainer"]
