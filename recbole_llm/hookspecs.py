"""The recbole-llm plugin contract.

This file is the whole contract between recbole-llm and its plugins. A plugin is any
importable module that implements some of the hooks below with ``@recbole_llm.hookimpl``
and is announced through the ``recbole_llm`` entry-point group::

    # setup.cfg of your package
    [options.entry_points]
    recbole_llm =
        my_plugin = my_package.plugin

    # my_package/plugin.py
    import recbole_llm
    from my_package.model import MyRec

    @recbole_llm.hookimpl
    def register_models():
        return [MyRec]

    @recbole_llm.hookimpl
    def register_property_files():
        return {"MyRec": [str(Path(__file__).with_name("MyRec.yaml"))]}

The built-in models and datasets of recbole-llm are registered through these same hooks
(see ``recbole_llm.plugins.BUILTIN_PLUGINS``).

Rules the host enforces:

* Every hook returns a value (possibly empty); results of all plugins are merged.
* A model name (``cls.__name__``) may be claimed by one plugin only. Two plugins claiming
  the same name, or a plugin claiming a name RecBole already has, is reported with both
  plugin names and the model is not registered from the second plugin.
* A plugin that fails to import or whose hook raises is reported (name and error) and
  skipped; the other plugins still load.
* Model classes must be importable at module level (RecBole pickles the Config, which
  holds the model class, into every checkpoint).
"""

import pluggy

PROJECT_NAME = "recbole_llm"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_models():
    """Return a list of model classes (subclasses of RecBole's ``AbstractRecommender``).

    Each class needs ``type`` (a ``recbole.utils.ModelType``) and, unless its property
    file sets ``loss_type``, an ``input_type`` (``recbole.utils.InputType``), exactly as a
    RecBole model does. The class name is the name users pass as ``--model``.
    """


@hookspec
def register_trainers():
    """Return ``{model_name: TrainerClass}`` for models that need their own trainer.

    Models without an entry get RecBole's trainer for their model type, as in RecBole.
    """


@hookspec
def register_property_files():
    """Return ``{model_name: [yaml_path, ...]}``: default hyperparameters of a model.

    They are loaded where RecBole loads ``recbole/properties/model/<Model>.yaml``, i.e.
    after RecBole's overall and model-type defaults and before the dataset's properties,
    the user's config files, the config dict and the command line.
    """


@hookspec
def register_datasets():
    """Return a list of ``recbole_llm.data.providers.DatasetProvider`` objects.

    A provider knows how to obtain a dataset that is not on disk (download from its
    official source, verify, convert to RecBole atomic files) and may ship default
    dataset properties (field loading, item-text template).
    """


@hookspec
def register_setting_keys():
    """Return the setting names the plugin reads (a list of strings, or a dict name -> description).

    recbole-llm refuses settings nothing reads ("unknown setting 'learning_rat'; did you mean
    'learning_rate'?"). Keys in a plugin's property files are known already; declare here the
    ones it reads without a default (e.g. optional paths).
    """


@hookspec
def register_settings():
    """Return ``{model_name: [Settings, ...]}``: the schemas (``recbole_llm.settings.Settings``) of
    the settings a model reads, each setting with its type, one-line doc and whether it changes
    results. ``recbole-llm --describe MODEL`` prints them; a staged run's key holds a model's schema
    keys exactly where ``changes_results`` is True (keys outside every schema are RecBole's: all in,
    except the few in ``recbole_llm.training.staged.GENERAL_KEYS_NOT_CHANGING_RESULTS``).
    """


@hookspec
def register_search_spaces():
    """Return ``{model_name: yaml_path}``: the hyperparameter search space ``recbole-llm tune``
    uses for a model when no ``--space`` is given (format: ``recbole_llm/tune/space.py``).
    """
