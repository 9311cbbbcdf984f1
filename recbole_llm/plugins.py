"""Plugin host: loads built-in and installed plugins and merges what their hooks return.

Built-in plugins are ordinary modules listed in ``BUILTIN_PLUGINS``; third-party plugins are
modules announced in the ``recbole_llm`` entry-point group. Both go through the same hooks
(``recbole_llm.hookspecs``). Each hook implementation is called on its own, so a result can
be attributed to its plugin and one broken plugin never stops the others.
"""

import importlib
import importlib.metadata
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from recbole_llm import hookspecs

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "recbole_llm"

#: Modules that register recbole-llm's own models and datasets through the plugin hooks.
BUILTIN_PLUGINS = (
    "recbole_llm.models.glta.plugin",
    "recbole_llm.models.graph_attentive_gpt2.plugin",
    "recbole_llm.models.hellm.plugin",
    "recbole_llm.models.sasrec_per_user.plugin",
    "recbole_llm.models.baselines.plugin_multimodal",
    "recbole_llm.models.baselines.plugin_graph",
    "recbole_llm.models.rlmrec.plugin",
    "recbole_llm.models.unisrec.plugin",
    "recbole_llm.models.collm.plugin",
    "recbole_llm.models.llara.plugin",
    "recbole_llm.data.providers",
)


class PluginWarning(UserWarning):
    """A plugin could not be loaded or contributed something invalid."""


@dataclass
class Registry:
    """Everything the loaded plugins contributed, with the plugin that contributed it."""

    models: dict = field(default_factory=dict)  # name -> class
    model_plugin: dict = field(default_factory=dict)  # name -> plugin name
    trainers: dict = field(default_factory=dict)  # model name -> trainer class
    property_files: dict = field(default_factory=dict)  # model name -> [paths]
    datasets: dict = field(default_factory=dict)  # dataset name -> provider
    setting_keys: dict = field(default_factory=dict)  # setting name -> plugin that declared it
    search_spaces: dict = field(default_factory=dict)  # model name -> search space YAML (recbole-llm tune)
    settings: dict = field(default_factory=dict)  # model name -> [Settings schemas]
    dataset_plugin: dict = field(default_factory=dict)
    plugins: list = field(default_factory=list)  # names of plugins loaded
    errors: list = field(default_factory=list)  # human-readable problems

    def report(self, message):
        self.errors.append(message)
        warnings.warn(message, PluginWarning, stacklevel=3)


def _new_manager():
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _register_module(pm, registry, module_name, plugin_name):
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken plugin must not stop the others
        registry.report(
            f"recbole-llm plugin {plugin_name!r} failed to import ({module_name}): "
            f"{type(exc).__name__}: {exc}. It was skipped; fix or uninstall it."
        )
        return
    _register_object(pm, registry, module, plugin_name)


def _register_object(pm, registry, obj, plugin_name):
    try:
        pm.register(obj, name=plugin_name)
    except Exception as exc:
        registry.report(
            f"recbole-llm plugin {plugin_name!r} could not be registered: "
            f"{type(exc).__name__}: {exc}. It was skipped."
        )
        return
    registry.plugins.append(plugin_name)


def _call_each(pm, registry, hook_name):
    """Yield (plugin_name, result) for every implementation of one hook."""
    hook = getattr(pm.hook, hook_name)
    # get_hookimpls() lists implementations in registration order: built-ins first.
    for impl in hook.get_hookimpls():
        try:
            result = impl.function()
        except Exception as exc:
            registry.report(
                f"recbole-llm plugin {impl.plugin_name!r}: hook {hook_name}() raised "
                f"{type(exc).__name__}: {exc}. Its contribution was skipped."
            )
            continue
        if result is not None:
            yield impl.plugin_name, result


def _dist_name(ep):
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return f"package {name!r}" if name else "an unknown package"


def build_registry(plugin_manager=None, extra_plugins=(), load_entry_points=True):
    """Load plugins and return a fresh :class:`Registry`.

    ``extra_plugins`` is an iterable of ``(name, module_or_object)`` registered after the
    built-ins (used by tests and by programs that register plugins directly).
    """
    # Plugins (the built-in models too) import RecBole: apply the compat fixes first. Lazy, so
    # that importing this module (and recbole_llm.hookspecs) stays free of torch and RecBole.
    from recbole_llm._recbole import recbole_model_names

    pm = plugin_manager or _new_manager()
    registry = Registry()
    for module_name in BUILTIN_PLUGINS:
        _register_module(pm, registry, module_name, module_name)
    if load_entry_points:
        seen = {}  # entry-point name -> the entry point registered under it
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            first = seen.get(ep.name)
            if first is not None and first.value == ep.value and _dist_name(first) == _dist_name(ep):
                continue  # the same distribution seen twice on sys.path
            if first is not None or pm.has_plugin(ep.name) or ep.name in registry.plugins:
                kept = (f"entry point {first.value!r} of {_dist_name(first)}" if first is not None
                        else "a plugin registered earlier (built-in)")
                registry.report(
                    f"Two recbole-llm plugins are named {ep.name!r}: {kept} and entry point "
                    f"{ep.value!r} of {_dist_name(ep)}. Only the first is loaded; uninstall one of "
                    "the packages or rename its entry point in the 'recbole_llm' group."
                )
                continue
            seen[ep.name] = ep
            try:
                obj = ep.load()
            except Exception as exc:
                dist = getattr(ep, "dist", None)
                registry.report(
                    f"recbole-llm plugin {ep.name!r} (entry point {ep.value!r}"
                    f"{', package ' + dist.name if dist else ''}) failed to import: "
                    f"{type(exc).__name__}: {exc}. It was skipped; fix or uninstall it."
                )
                continue
            _register_object(pm, registry, obj, ep.name)
    for name, obj in extra_plugins:
        if isinstance(obj, str):
            _register_module(pm, registry, obj, name)
        else:
            _register_object(pm, registry, obj, name)

    recbole_names = set(recbole_model_names())
    for plugin, classes in _call_each(pm, registry, "register_models"):
        for cls in classes:
            name = getattr(cls, "__name__", None)
            if not isinstance(cls, type) or name is None:
                registry.report(f"recbole-llm plugin {plugin!r} registered {cls!r}, which is not a class.")
                continue
            if name in registry.models and registry.models[name] is not cls:
                registry.report(
                    f"Model name {name!r} is claimed by two plugins: {registry.model_plugin[name]!r} "
                    f"and {plugin!r}. Keeping the one from {registry.model_plugin[name]!r}; rename "
                    f"the class in one of them."
                )
                continue
            if name in recbole_names:
                registry.report(
                    f"recbole-llm plugin {plugin!r} registers model {name!r}, a name RecBole "
                    f"already uses. It was not registered; rename the class."
                )
                continue
            registry.models[name] = cls
            registry.model_plugin[name] = plugin
    for plugin, trainers in _call_each(pm, registry, "register_trainers"):
        for model_name, trainer in dict(trainers).items():
            if registry.model_plugin.get(model_name) not in (None, plugin) and model_name in registry.trainers:
                registry.report(f"Trainer for {model_name!r} registered twice (plugin {plugin!r}); keeping the first.")
                continue
            registry.trainers.setdefault(model_name, trainer)
    for plugin, files in _call_each(pm, registry, "register_property_files"):
        for model_name, paths in dict(files).items():
            paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
            missing = [str(p) for p in paths if not Path(p).is_file()]
            if missing:
                registry.report(f"recbole-llm plugin {plugin!r}: property file(s) for {model_name!r} not found: {missing}.")
            registry.property_files.setdefault(model_name, []).extend(
                str(p) for p in paths if Path(p).is_file()
            )
    for plugin, spaces in _call_each(pm, registry, "register_search_spaces"):
        for model_name, path in dict(spaces).items():
            if not Path(path).is_file():
                registry.report(f"recbole-llm plugin {plugin!r}: search space for {model_name!r} not found: {path}.")
            elif model_name in registry.search_spaces:
                registry.report(f"Search space for {model_name!r} registered twice (plugin {plugin!r}); keeping the first.")
            else:
                registry.search_spaces[model_name] = str(path)
    from recbole_llm.settings import Settings

    for plugin, schemas in _call_each(pm, registry, "register_settings"):
        for model_name, found in dict(schemas).items():
            found = [found] if isinstance(found, Settings) else list(found)
            if not all(isinstance(schema, Settings) for schema in found):
                registry.report(f"recbole-llm plugin {plugin!r}: register_settings() for {model_name!r} must give "
                                f"recbole_llm.settings.Settings schemas, got {found!r}. It was ignored.")
            elif model_name in registry.settings:
                registry.report(f"Settings of {model_name!r} registered twice (plugin {plugin!r}); keeping the first.")
            else:
                registry.settings[model_name] = found
    for plugin, providers in _call_each(pm, registry, "register_datasets"):
        for provider in providers:
            name = getattr(provider, "name", None)
            if name in registry.datasets:
                registry.report(
                    f"Dataset {name!r} is provided by two plugins: {registry.dataset_plugin[name]!r} "
                    f"and {plugin!r}. Keeping the first."
                )
                continue
            registry.datasets[name] = provider
            registry.dataset_plugin[name] = plugin
    for plugin, keys in _call_each(pm, registry, "register_setting_keys"):
        names = list(keys) if isinstance(keys, (list, tuple, set, frozenset, dict)) else None
        if names is None or not all(isinstance(k, str) and k for k in names):
            registry.report(f"recbole-llm plugin {plugin!r}: register_setting_keys() must return a list of "
                            f"setting names, got {keys!r}. It was ignored.")
            continue
        for key in names:
            registry.setting_keys.setdefault(key, plugin)
    registry.plugin_manager = pm
    return registry


_REGISTRY = None


def get_registry(reload=False):
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = build_registry()
    return _REGISTRY


def set_registry(registry):
    """Replace the process-wide registry (tests, embedding applications)."""
    global _REGISTRY
    _REGISTRY = registry
    return registry
