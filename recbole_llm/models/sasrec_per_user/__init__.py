"""SASRecPerUser: RecBole's SASRec trained and scored as a general recommender, so that it runs on a
per-user random split with the general full-ranking evaluator (see ``model.py``)."""

from recbole_llm.models.sasrec_per_user.model import SASRecPerUser, SASRecPerUserTrainer

__all__ = ["SASRecPerUser", "SASRecPerUserTrainer"]
