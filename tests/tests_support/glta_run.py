"""Run GLTA on the tiny dataset in a fresh process and print its metrics as JSON (tests/test_glta.py).

    python glta_run.py ROOT OUT.json [--kill-at-call N]

ROOT holds ``data/tiny`` and ``llm/`` (written by the test); caches and checkpoints go under ROOT.
``--kill-at-call N`` SIGKILLs the process inside the N-th user-item training batch (after the
forward pass, before the optimiser step), as a crash or an out-of-memory kill would."""

import json
import os
import signal
import sys
from pathlib import Path

root, out = Path(sys.argv[1]), Path(sys.argv[2])
kill_at = int(sys.argv[sys.argv.index("--kill-at-call") + 1]) if "--kill-at-call" in sys.argv else 0
os.environ["RECBOLE_LLM_CACHE"] = str(root / "cache")
os.chdir(root)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import glta_tiny_config  # noqa: E402

from recbole_llm import compat  # noqa: E402

compat.apply()
from recbole_llm.models.glta import GLTA, GLTATrainer  # noqa: E402
from recbole_llm.quick_start import run_experiment  # noqa: E402
from recbole_llm.training.staged import StagedTrainer  # noqa: E402

calls, stages_run, epochs_run = [0], [], []
real_loss, real_begin, real_epoch = GLTA.user_item_loss, StagedTrainer._begin, GLTATrainer.user_item_epoch


def user_item_loss(self, *args, **kwargs):
    loss = real_loss(self, *args, **kwargs)
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return loss


GLTA.user_item_loss = user_item_loss
StagedTrainer._begin = lambda self, stage: (stages_run.append(stage.name), real_begin(self, stage))[1]
GLTATrainer.user_item_epoch = lambda self, t, epoch, opt: (epochs_run.append(epoch), real_epoch(self, t, epoch, opt))[1]

result = run_experiment("GLTA", "tiny", config_dict=glta_tiny_config(root, glta_ua_epochs=3, glta_graph_epochs=3))
out.write_text(json.dumps({"test": result["test_result"], "valid": result["best_valid_result"],
                           "stages_run": stages_run, "user_item_epochs_run": epochs_run}))
