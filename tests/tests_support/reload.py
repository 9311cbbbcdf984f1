"""RecBole's reload flow, checked end to end: train and save here, reload in a FRESH process.

``saved_and_reloaded(model, config_dict)`` is the one entry point::

    saved, reloaded = saved_and_reloaded("BPR", fast_config(tiny_data))
    assert reloaded == pytest.approx(saved, abs=1e-9)

A fresh process matters: the trainer process has already run ``Config.__init__`` (which sets
RecBole's numpy aliases), imported every model module and built the plugin registry; a user who
reloads a checkpoint later has none of that.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = TESTS_DIR.parent

# RecBole rounds metrics to 4 decimals by default; more digits make the comparison sensitive.
METRIC_DECIMALS = 12

_RELOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = json.loads(sys.argv[2])
    import recbole_llm
    from recbole_llm.utils import get_trainer

    config, model, dataset, train_data, valid_data, test_data = recbole_llm.load_data_and_model(sys.argv[1])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    print("RELOADED " + json.dumps({k: float(v) for k, v in result.items()}))
    """
)


def fresh_env():
    """``os.environ`` with this checkout (and ``tests/``) first on ``PYTHONPATH``."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), str(TESTS_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def reload_and_evaluate(model_file, extra_paths=(), timeout=300):
    """Test metrics of checkpoint ``model_file``, reloaded and evaluated in a fresh process
    (cwd and environment of this one, e.g. the ``tiny_data`` fixture's tmp dir and cache)."""
    extra = [str(p) for p in extra_paths]
    out = subprocess.run(
        [sys.executable, "-c", _RELOAD_SCRIPT, str(model_file), json.dumps(extra)],
        capture_output=True, text=True, timeout=timeout, env=fresh_env(),
    )
    assert out.returncode == 0, f"reload of {model_file} failed:\n{out.stderr[-4000:]}"
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("RELOADED ")]
    return json.loads(line[len("RELOADED "):])


def _forget_modules_under(folders):
    """Drop modules imported from ``folders`` so that later tests cannot pick them up."""
    roots = [Path(f).resolve() for f in folders]
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and any(Path(file).resolve().is_relative_to(root) for root in roots):
            del sys.modules[name]


def saved_and_reloaded(model, config_dict, dataset="tiny", extra_paths=()):
    """Train ``model`` on ``dataset`` in this process with ``recbole_llm.run_experiment(...,
    saved=True)``, then reload its checkpoint in a fresh process and evaluate the test split.

    ``model``: a model name (RecBole's or a registered plugin's). ``config_dict``: the run's
    settings (e.g. ``conftest.fast_config(tmp)``; ``metric_decimal_place`` defaults to 12 here).
    ``extra_paths``: folders put first on ``sys.path`` of both processes, e.g. a plugin package
    found through its entry point (the registry is rebuilt for the run and reset afterwards).
    The fresh process runs in this one's cwd and environment (use the ``tiny_data`` fixture:
    tmp dir as cwd, ``RECBOLE_LLM_CACHE`` in tmp) with this checkout first on ``PYTHONPATH``.

    Returns ``(saved, reloaded)``: the test metrics of the run (``result["test_result"]``, from
    its best checkpoint) and those of the reloaded checkpoint, as ``{metric: float}`` dicts.
    """
    from recbole_llm import plugins, run_experiment

    config_dict = dict(config_dict)
    config_dict.setdefault("metric_decimal_place", METRIC_DECIMALS)
    extra = [str(p) for p in extra_paths]
    saved_path = list(sys.path)
    sys.path[:0] = extra
    try:
        if extra:
            plugins.get_registry(reload=True)
        result = run_experiment(model, dataset, config_dict=config_dict, saved=True)
    finally:
        sys.path[:] = saved_path
        if extra:
            _forget_modules_under(extra)
            plugins.set_registry(None)
    model_file = result["stats"]["saved_model_file"]
    assert model_file and Path(model_file).is_file(), model_file
    saved = {k: float(v) for k, v in result["test_result"].items()}
    return saved, reload_and_evaluate(model_file, extra)
