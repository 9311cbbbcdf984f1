"""Run RecBole and recbole-llm models: ``python run_recbole_llm.py --model=GLTA --dataset=ml-100k``.

Same as the ``recbole-llm`` console script; see ``recbole_llm/cli.py`` for the flags.
"""

import sys

from recbole_llm.cli import main

if __name__ == "__main__":
    sys.exit(main())
