"""The compat gate on today's Pythons: RecBole without ray, no process-wide side effects from
RecBole's imports, and no deprecated torch.cuda.amp calls (``recbole_llm/compat.py`` 7.-9.).

Each import check runs in a fresh interpreter, since this test process has RecBole loaded already.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Makes ``ray`` look uninstalled in a child interpreter (find_spec -> None, import -> ModuleNotFoundError),
# as on CPython >= 3.12 where RecBole's pin ray<=2.6.3 has no wheels.
HIDE_RAY = """
import importlib.machinery, sys
class _NoRay(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            return None
        return super().find_spec(name, path, target)
sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = _NoRay
"""


def _child(code, tmp_path, prelude=""):
    env = dict(os.environ, PYTHONPATH=str(REPO), RECBOLE_LLM_CACHE=str(tmp_path / "cache"))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(prelude) + textwrap.dedent(code)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_recbole_imports_and_runs_without_ray(tmp_path):
    from conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "data")
    info = _child(
        """
        import json, sys
        from recbole_llm.plugins import get_registry
        get_registry()
        import recbole.quick_start.quick_start as qs
        from recbole_llm.quick_start import run_experiment
        try:
            import ray
            plain_import = "imported"
        except ModuleNotFoundError:
            plain_import = "ModuleNotFoundError"
        try:
            qs.tune.report(ndcg=1.0)
            report = None
        except ImportError as exc:
            report = str(exc)
        res = run_experiment("BPR", "tiny", config_dict={
            "epochs": 1, "state": "WARNING", "show_progress": False, "data_path": "data",
            "checkpoint_dir": "saved", "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO",
            "group_by": "user", "mode": "full"}})
        print(json.dumps({"ray_in_modules": "ray" in sys.modules, "plain_import": plain_import,
                          "report": report, "recall": res["test_result"]["recall@10"]}))
        """,
        tmp_path,
        prelude=HIDE_RAY,
    )
    # the placeholder lived only for RecBole's own import: everyone else still sees no ray
    assert info["ray_in_modules"] is False
    assert info["plain_import"] == "ModuleNotFoundError"
    assert "recbole-llm[ray]" in info["report"] and "ray.tune.report" in info["report"]
    assert 0.0 < info["recall"] <= 1.0


def test_ray_tune_is_the_real_one_when_ray_is_installed():
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (the `ray` extra, Python <= 3.11)")
    import ray.tune
    import recbole.quick_start.quick_start as qs

    assert qs.tune is ray.tune


def test_quick_start_source_check_refuses_changed_code(monkeypatch):
    """The placeholder is used only for the exact import it was written for."""
    from recbole_llm import compat

    source = compat._recbole_source("quick_start/quick_start.py")
    assert source.count("from ray import tune\n") == 1
    monkeypatch.delitem(sys.modules, "recbole.quick_start.quick_start")
    monkeypatch.setattr(compat.importlib.util, "find_spec", lambda name: None if name == "ray" else _spec(name))
    monkeypatch.setattr(compat, "_recbole_source", lambda rel: source.replace("tune.report(", "tune.run("))
    with pytest.raises(RuntimeError, match="not the RecBole 1.2.1 code"):
        compat._ray_optional()


def _spec(name):
    import importlib.machinery

    return importlib.machinery.PathFinder.find_spec(name)


@pytest.mark.slow
@pytest.mark.parametrize("before", [False, True])
def test_recbole_imports_leave_anomaly_mode_and_recursion_limit_alone(tmp_path, before):
    info = _child(
        f"""
        import json, sys, torch
        torch.autograd.set_detect_anomaly({before})
        limit = sys.getrecursionlimit()
        from recbole_llm.plugins import get_registry
        get_registry()  # imports every RecBole model module, sine.py included
        import recbole.quick_start
        print(json.dumps({{"sine": "recbole.model.sequential_recommender.sine" in sys.modules,
                          "anomaly": torch.is_anomaly_enabled(),
                          "limit_kept": sys.getrecursionlimit() == limit}}))
        """,
        tmp_path,
    )
    assert info == {"sine": True, "anomaly": before, "limit_kept": True}


def test_recbole_trainer_uses_torch_amp_without_deprecation():
    import recbole.trainer.trainer as tr
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaler = tr.amp.GradScaler(enabled=False)
        with tr.amp.autocast(enabled=False):
            y = torch.ones(2) * 2
    assert isinstance(scaler, torch.amp.GradScaler) and not scaler.is_enabled()
    assert y.tolist() == [2.0, 2.0]
