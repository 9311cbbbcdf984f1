"""Packaging and import hygiene.

* A wheel (``pip install .``) carries ``properties/`` and works from outside the checkout.
* ``import recbole_llm`` / ``recbole_llm.hookspecs`` load neither torch, RecBole nor ray.
* Every module that imports RecBole passes the compat gate (``recbole_llm._recbole``) first.
* The package's module-level imports have no cycles, and its layers import only downwards.

Each import check runs in a fresh interpreter: this test process has RecBole loaded already.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "recbole_llm"
GATE = "recbole_llm._recbole"
HEAVY = ("torch", "recbole", "ray")


def _python(code, cwd, env_extra=None, timeout=180):
    env = dict(os.environ)
    env.update(env_extra or {})
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def _checkout_env(tmp_path):
    """Run against this checkout (not another install), from a folder outside it."""
    return {"PYTHONPATH": str(REPO), "RECBOLE_LLM_CACHE": str(tmp_path / "cache")}


# ------------------------------------------------------------------------------ wheel
@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The wheel built from a copy of this checkout (so no stale build/ folder of the checkout
    leaks into it), installed with ``pip install --target``."""
    try:
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"cannot build a wheel offline without build isolation: {exc}")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    src.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
    for name in ("recbole_llm", "atomic_data", "properties"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run(
        pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    [whl] = (root / "dist").glob("recbole_llm-*.whl")
    target = root / "site"
    install = subprocess.run(
        pip + ["install", "--no-deps", "--no-index", "--target", str(target), str(whl)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    return whl, target


@pytest.mark.slow
def test_wheel_carries_every_module_and_property_file(installed_wheel):
    import zipfile

    whl, _ = installed_wheel
    names = set(zipfile.ZipFile(whl).namelist())
    expected = {p.relative_to(REPO).as_posix() for d in ("recbole_llm", "atomic_data") for p in (REPO / d).rglob("*.py")}
    expected |= {
        "recbole_llm/properties/" + p.relative_to(REPO / "properties").as_posix()
        for p in (REPO / "properties").rglob("*.yaml")
    }
    assert "recbole_llm/properties/overall.yaml" in expected
    assert sorted(expected - names) == []


@pytest.mark.slow
def test_installed_wheel_finds_its_properties_outside_the_checkout(installed_wheel, tmp_path):
    _, site = installed_wheel
    info = _python(
        """
        import json, os
        import recbole_llm
        from recbole_llm.paths import properties_dir
        from recbole_llm.config import Config
        from recbole_llm.plugins import get_registry

        props = properties_dir()
        cfg = Config(model="LightGCN", dataset="ml-100k", config_dict={"state": "WARNING"})
        print(json.dumps({
            "package": recbole_llm.__file__,
            "glta": str(props / "model" / "GLTA.yaml") if (props / "model" / "GLTA.yaml").is_file() else None,
            "ml100k": str(props / "dataset" / "ml-100k.yaml") if (props / "dataset" / "ml-100k.yaml").is_file() else None,
            "glta_registered": get_registry().property_files.get("GLTA"),
            "count_flops": cfg["count_flops"],
            "item_text_max_tokens": cfg["item_text_max_tokens"],
            "item_load_col": cfg["load_col"]["item"],
        }))
        """,
        cwd=tmp_path,
        env_extra={"PYTHONPATH": str(site), "RECBOLE_LLM_CACHE": str(tmp_path / "cache")},
    )
    site = str(site.resolve())
    assert info["package"].startswith(site), info  # the installed copy, not the editable one
    assert info["glta"] and info["glta"].startswith(site), info
    assert info["ml100k"] and info["ml100k"].startswith(site), info
    assert info["glta_registered"] == [str(Path(info["glta"]).with_name("llm.yaml")), info["glta"]]
    assert info["count_flops"] is False  # properties/overall.yaml (RecBole has no such key)
    assert info["item_text_max_tokens"] == 64  # properties/dataset/ml-100k.yaml
    assert "movie_title" in info["item_load_col"]


# ---------------------------------------------------------------------------- light imports
def test_package_and_hookspecs_import_without_torch_recbole_ray(tmp_path):
    info = _python(
        """
        import json, os, sys
        import recbole_llm.hookspecs, recbole_llm
        from recbole_llm import hookimpl
        import recbole_llm.plugins, recbole_llm.paths, recbole_llm.errors
        print(json.dumps({"file": recbole_llm.__file__,
                          "heavy": [m for m in ("torch", "recbole", "ray") if m in sys.modules],
                          "omp": os.environ.get("OMP_WAIT_POLICY")}))
        """,
        cwd=tmp_path,
        env_extra={**_checkout_env(tmp_path), "OMP_WAIT_POLICY": ""},
    )
    assert info["file"] == str(PACKAGE / "__init__.py")
    assert info["heavy"] == []
    assert info["omp"] == ""  # the user's setting wins (setdefault)


def test_omp_wait_policy_defaults_to_passive(tmp_path):
    env = _checkout_env(tmp_path)
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", "import os, recbole_llm; print(os.environ['OMP_WAIT_POLICY'])"],
        cwd=tmp_path, env={**base, **env}, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "PASSIVE", out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("module", ["recbole_llm.plugins", "recbole_llm.utils", "recbole_llm.config"])
def test_each_module_imports_first(module, tmp_path):
    """Imported first in a fresh process (a cycle shows up as a partially initialised module)."""
    info = _python(
        f"""
        import json, sys
        import {module}
        from recbole_llm import compat
        print(json.dumps({{"applied": compat._APPLIED, "recbole": "recbole" in sys.modules}}))
        """,
        cwd=tmp_path,
        env_extra=_checkout_env(tmp_path),
    )
    # Whoever loads RecBole has applied the compat fixes; the plugin host loads neither.
    assert info["applied"] == info["recbole"] == (module != "recbole_llm.plugins")


@pytest.mark.slow
def test_config_alone_applies_compat(tmp_path):
    info = _python(
        """
        import json
        from recbole_llm.config import Config

        cfg = Config(model="BPR", dataset="ml-100k", config_dict={"state": "WARNING"})
        import numpy as np
        from recbole.data.dataset.dataset import Dataset
        import recbole.trainer.trainer as tr
        print(json.dumps({
            "float_": getattr(np, "float_", None) is np.float64,
            "load_feat": getattr(Dataset._load_feat, "__recbole_llm_compat__", False),
            "ddp": getattr(tr.DistributedDataParallel, "__recbole_llm_compat__", False),
            "count_flops": cfg["count_flops"],
        }))
        """,
        cwd=tmp_path,
        env_extra=_checkout_env(tmp_path),
    )
    assert info == {"float_": True, "load_feat": True, "ddp": True, "count_flops": False}


# ------------------------------------------------------------------------------ static checks
def _module_name(path):
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path, module, lazy):
    """``[(lineno, imported module name)]`` of one file: module-level statements only unless
    ``lazy`` (then also inside functions). ``if TYPE_CHECKING:`` blocks are skipped."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not lazy:
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = module.split(".") if is_package else module.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                found.append((child.lineno, base))
                found.extend((child.lineno, f"{base}.{alias.name}") for alias in child.names)
            visit(child)

    visit(tree)
    return found


def _graph(lazy):
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = sorted({m for _, m in _imports(path, name, lazy) if m in modules and m != name})
    return graph


def _find_cycle(graph):
    state, stack = {}, []

    def dfs(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def test_module_level_imports_are_acyclic():
    graph = _graph(lazy=False)
    assert "recbole_llm.plugins" in graph and "recbole_llm.utils" in graph
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


#: The package's layers, lowest first: a module may import its own layer and the ones below it, never
#: one above (function-level imports included). A module belongs to the layer of its longest prefix.
LAYERS = [
    ("core", ("recbole_llm._recbole", "recbole_llm.compat", "recbole_llm.errors", "recbole_llm.paths",
              "recbole_llm.settings", "recbole_llm.hookspecs", "recbole_llm.memory", "recbole_llm.plugins",
              "recbole_llm.utils", "recbole_llm.random_state", "recbole_llm.files", "recbole_llm.plain", "recbole_llm.protocol",
              "recbole_llm.safe_pickle")),
    ("data", ("recbole_llm.data", "recbole_llm.config", "recbole_llm.config_checks")),
    ("graph", ("recbole_llm.graph",)),
    ("llm", ("recbole_llm.llm",)),
    ("training", ("recbole_llm.training",)),
    ("models", ("recbole_llm.models",)),
    ("benchmark/cli", ("recbole_llm.benchmark", "recbole_llm.cli", "recbole_llm.quick_start", "recbole_llm")),
]


def _layer(module):
    """Index in :data:`LAYERS` of ``module`` (or of the module an imported name belongs to)."""
    best = max(((len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    return None if best is None else best[1]


def test_layers_import_only_downwards():
    """data <- graph <- llm <- training <- models <- benchmark/cli, with the small core under all of them.
    ``from recbole_llm import x`` names a submodule (the package root imports nothing heavy)."""
    modules = _modules()
    unplaced = sorted(name for name in modules if _layer(name) is None)
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    upward = []
    for name, path in modules.items():
        own = _layer(name)
        for line, imported in _imports(path, name, lazy=True):
            if imported == "recbole_llm" or not imported.startswith("recbole_llm"):
                continue
            target = _layer(imported)
            if target > own:
                upward.append(f"{path.relative_to(REPO)}:{line} ({LAYERS[own][0]}) imports {imported} "
                              f"({LAYERS[target][0]})")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(sorted(set(upward)))


def test_layer_check_sees_an_upward_import():
    """The layer check itself: a graph module importing training is caught, a training one importing
    graph is not."""
    assert _layer("recbole_llm.graph.hops") < _layer("recbole_llm.training.checkpoint.save_atomic")
    assert _layer("recbole_llm.training.lightgcn") > _layer("recbole_llm.graph.interactions")
    assert _layer("recbole_llm.data.interactions") < _layer("recbole_llm.graph.interactions")
    assert _layer("recbole_llm.models.prompt_recommender") > _layer("recbole_llm.llm.backbone")


def test_plugin_host_does_not_import_model_resolution():
    """plugins <-> utils was a cycle (utils imports plugins): the host must not import
    utils, config or quick_start, not even inside a function."""
    lazy = dict(_graph(lazy=True))
    assert not {"recbole_llm.utils", "recbole_llm.config", "recbole_llm.quick_start"} & set(lazy["recbole_llm.plugins"])


def _first_line(imports, prefix_match):
    lines = [line for line, name in imports if prefix_match(name)]
    return min(lines) if lines else None


def _is_recbole(name):
    return name == "recbole" or name.startswith("recbole.")


def test_every_recbole_import_passes_the_compat_gate():
    """A module importing RecBole at module level imports ``recbole_llm._recbole`` before it,
    or one of its packages' ``__init__`` does so before importing anything of the package."""
    modules = _modules()
    imports = {name: _imports(path, name, lazy=False) for name, path in modules.items()}

    def gates_itself(name):
        first_recbole = _first_line(imports[name], _is_recbole)
        gate = _first_line(imports[name], lambda m: m == GATE)
        return gate is not None and (first_recbole is None or gate < first_recbole)

    def gated_package(name):
        pkg = name
        while "." in pkg:
            pkg = pkg.rsplit(".", 1)[0]
            if pkg == "recbole_llm" or pkg not in imports:
                continue
            own = [line for line, m in imports[pkg] if (m.startswith(pkg + ".") or _is_recbole(m)) and m != GATE]
            gate = _first_line(imports[pkg], lambda m: m == GATE)
            if gate is not None and (not own or gate < min(own)):
                return True
        return False

    ungated = [
        name
        for name in modules
        if _first_line(imports[name], _is_recbole) is not None and not gates_itself(name) and not gated_package(name)
    ]
    assert ungated == [], f"modules importing RecBole without `from recbole_llm import _recbole` first: {ungated}"
    assert gates_itself("recbole_llm.config") and gates_itself("recbole_llm.utils")
    # The light modules do not gate (the gate loads RecBole).
    for light in ("recbole_llm", "recbole_llm.hookspecs", "recbole_llm.plugins", "recbole_llm.paths"):
        assert _first_line(imports[light], lambda m: m == GATE or _is_recbole(m)) is None, light


# ---------------------------------------------------------------------------- dependencies
def _requirement_names(lines):
    import re

    return {re.split(r"[\s<>=!~;\[]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for line in lines if line.strip() and not line.strip().startswith("#")}


def test_recbole_runtime_dependencies_are_declared_without_ray():
    """RecBole is installed with --no-deps (its ray<=2.6.3 pin has no wheels for Python >= 3.12), so
    setup.cfg lists what RecBole needs at run time itself: its metadata less ray, plotly and
    tabulate, each left out for a reason checked against RecBole's source."""
    import configparser
    from importlib.metadata import requires

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    declared = _requirement_names(cfg["options"]["install_requires"].splitlines())
    extras = {name: _requirement_names(cfg["options.extras_require"][name].splitlines())
              for name in cfg["options.extras_require"]}
    recbole_needs = _requirement_names(r for r in requires("recbole") if "extra ==" not in r)
    left_out = {"ray", "plotly", "tabulate"}
    assert "recbole" not in declared  # pip would re-check RecBole's ray pin and fail on Python >= 3.12
    assert sorted(recbole_needs - left_out - declared) == []
    assert left_out <= recbole_needs
    assert "ray" in extras["ray"] and "ray" not in declared

    import recbole

    root = Path(recbole.__file__).parent
    users = {name: sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                          if f"import {name}" in p.read_text() or f"from {name} " in p.read_text())
             for name in left_out}
    # ray: the Ray Tune objective only; plotly: hyperopt result plots only; tabulate: never imported
    assert users == {"ray": ["quick_start/quick_start.py"], "plotly": ["trainer/hyper_tuning.py"], "tabulate": []}

    readme = (REPO / "README.md").read_text()
    setup_line = readme.split("# 1. set up", 1)[1].splitlines()[1]
    assert "--no-deps recbole==1.2.1" in setup_line
