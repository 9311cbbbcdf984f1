"""The registration hooks of a built-in model package, from a table.

Each built-in package's ``plugin`` module is an ordinary plugin (listed in
``recbole_llm.plugins.BUILTIN_PLUGINS``), but its three hooks differ only in what they name, so the
module states that as data::

    register_models, register_trainers, register_property_files, register_settings = builtin_hooks(
        models=["recbole_llm.models.glta.model:GLTA"],
        trainers={"GLTA": "recbole_llm.models.glta.trainer:GLTATrainer"},
        property_files={"GLTA": ["llm.yaml", "GLTA.yaml"]},
        settings={"GLTA": ["recbole_llm.models.glta.settings:GLTA_SETTINGS", "recbole_llm.llm.loading:LLM_SETTINGS"]},
    )

Classes are named ``"module:Class"`` and imported only when the hook runs (the plugin module itself
stays free of torch and RecBole). A property file is a name in ``properties/model/`` or, written
``recbole:<name>``, one of RecBole's own model files.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from recbole_llm.hookspecs import hookimpl
from recbole_llm.paths import properties_dir


def _load(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _property_file(name: str) -> str:
    if name.startswith("recbole:"):
        import recbole

        return str(Path(recbole.__file__).parent / "properties" / "model" / name[len("recbole:"):])
    return str(properties_dir() / "model" / name)


def builtin_hooks(models, trainers=None, property_files=None, settings=None):
    """``(register_models, register_trainers, register_property_files, register_settings)`` hook
    implementations for the given tables (a hook whose table is empty returns None, i.e. contributes
    nothing). ``settings`` names each model's schemas as ``"module:NAME"``."""

    @hookimpl
    def register_models():
        return [_load(path) for path in models]

    @hookimpl
    def register_trainers():
        return {name: _load(path) for name, path in trainers.items()} if trainers else None

    @hookimpl
    def register_property_files():
        if not property_files:
            return None
        return {name: [_property_file(f) for f in files] for name, files in property_files.items()}

    @hookimpl
    def register_settings():
        if not settings:
            return None
        return {name: [_load(path) for path in paths] for name, paths in settings.items()}

    return register_models, register_trainers, register_property_files, register_settings
