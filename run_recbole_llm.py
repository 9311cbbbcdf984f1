"""Run RecBole and recbole-llm models: ``python run_recbole_llm.py --model=GLTA --dataset=ml-100k``.

Same as the ``recbole-llm`` console script; see ``recbole_llm/cli.py`` for the flags.
"""

import os
import sys

# Before torch loads: spinning OpenMP waits make torch 2x-25x slower on a shared CPU. A user's
# explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from recbole_llm.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
