"""UniSRec (Hou et al., KDD 2022): text-based universal sequence representations on RecBole's SASRec."""

from recbole_llm.models.unisrec.model import UniSRec
from recbole_llm.models.unisrec.trainer import UniSRecTrainer

__all__ = ["UniSRec", "UniSRecTrainer"]
