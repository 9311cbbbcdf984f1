"""RecBole 1.2.1 on today's numpy 2 / pandas 3 / scipy 1.17 / torch >= 2.6, without editing
site-packages.

``apply()`` runs once, before recbole-llm first imports RecBole (``recbole_llm._recbole`` calls it;
a program that imports RecBole itself calls it first). Each fix is narrow: it changes only the
RecBole code path that breaks, and it checks that the code it rewrites is still the code it
expects, so a future RecBole release fails loudly here instead of silently misbehaving.
What breaks and where is written up in ``docs/recbole-compat.md``:

1. numpy 2 removed ``np.bool8``, ``np.float_``, ``np.complex_``, ``np.unicode_``; ray's tune logger
   and ``Config.compatibility_settings`` read them. We restore the aliases. RecBole's own code
   (metrics, ``Interaction``) uses ``np.float``/``np.bool``/``np.int``..., which only
   ``Config.compatibility_settings`` (run by ``Config.__init__``) defines; a Config unpickled
   from a checkpoint never runs it, so ``load_data_and_model`` then ``trainer.evaluate`` in a
   fresh process failed. We set the same names, to the same types.
2. torch >= 2.6 loads with ``weights_only=True``, which cannot read RecBole's checkpoints (they
   pickle the Config, with pickle protocol 4), so ``Trainer.resume_checkpoint``,
   ``Trainer.evaluate(load_best_model=True)`` and ``load_data_and_model`` fail; loading them with
   ``weights_only=False`` would run any code a file carries. RecBole's trainer and quick-start
   modules get a ``torch`` whose ``load`` of a path is :func:`recbole_llm.safe_pickle.torch_load_for_recbole`
   (exactly what RecBole's checkpoints hold, nothing that runs code; the full unpickler only under
   ``--trust_checkpoint``); every other caller of ``torch.load`` keeps torch's own default.
3. scipy 1.17's ``dok_matrix`` has no ``_update`` (LightGCN, NGCF, GCMC, SpectralCF, NCL, KGIN,
   MCCLK build their adjacency with it). We add it back with its old meaning (bulk dict update).
4. RecBole wraps models in ``DistributedDataParallel(model, device_ids=[local_rank])``, which
   torch rejects for CPU modules; on CPU (gloo) the wrapper drops ``device_ids``. Its initial
   broadcast also fails on sparse buffers ("No support for sparse tensors"); they are skipped.
5. pandas 3: ``Series.agg(len)`` returns the length of the whole Series, and chained
   ``feat[field].fillna(..., inplace=True)`` is a no-op under copy-on-write (NaNs silently kept).
   The affected RecBole methods are recompiled with ``.map(len)`` and assignment-form ``fillna``.
6. ``recbole.utils.ensure_dir`` checks ``os.path.exists`` and then calls ``os.makedirs``: two DDP
   ranks starting together race (``FileExistsError: './log'``). The modules that imported it get
   a version with ``exist_ok=True`` (same meaning, no race).
7. Full-sort evaluation masks a user's earlier items only for non-sequential models
   (``FullSortEvalDataLoader.collate_fn`` returns ``history_index=None`` for sequential datasets).
   ``data_preparation`` now attaches the items to mask per user, for every model type, as the
   run's ``history_mask`` says, and ``collate_fn`` returns them (:mod:`recbole_llm.protocol`).
8. ``Trainer`` names its best-model file ``<model>-<current second>.pth`` in ``checkpoint_dir``:
   parallel runs sharing the folder overwrite each other's checkpoints and test the wrong model.
   Each trainer now saves in ``<checkpoint_dir>/<run id>/`` (``run_id`` from the config, which
   the DDP launcher shares between ranks, else a fresh one: time, pid, random).
9. RecBole 1.2.1 pins ``ray<=2.6.3`` (no wheels for CPython >= 3.12) and its ``quick_start``
   module runs ``from ray import tune``. RecBole is installed without its pins; when ray is
   absent that one import sees a placeholder whose use names the ``[ray]`` extra.
10. Importing RecBole changes process-wide state: ``sine.py`` switches autograd anomaly mode on
    (every model would then train in it) and ray raises the recursion limit. The gate imports
    them itself and restores both.
11. RecBole's trainer uses the deprecated ``torch.cuda.amp`` (``GradScaler``, ``autocast``); it
    sees ``torch.amp``'s for the CUDA device instead.
"""

import contextlib
import importlib
import importlib.util
import inspect
import re
import sys
import textwrap
import types
import warnings

_APPLIED = False


def _numpy_aliases():
    import numpy as np

    aliases = {
        "bool8": np.bool_,
        "float_": np.float64,
        "complex_": np.complex128,
        "unicode_": np.str_,
        "string_": np.bytes_,
        "object0": np.object_,
        "int0": np.intp,
        "uint0": np.uintp,
        # exactly what recbole.config.Config.compatibility_settings (RecBole 1.2.1) sets
        "bool": np.bool_,
        "int": np.int_,
        "float": np.float64,
        "complex": np.complex128,
        "object": np.object_,
        "str": np.str_,
        "long": np.int_,
        "unicode": np.str_,
    }
    for name, value in aliases.items():
        # vars(), not getattr(): numpy's module __getattr__ warns on some removed names
        if name not in vars(np):
            setattr(np, name, value)


class _TorchWithCheckpointLoad(types.ModuleType):
    """``torch`` as seen by RecBole's modules: identical except ``load``, which reads RecBole's
    checkpoints (its Config, enums, model classes) without running code from the file."""

    def __init__(self, torch_module):
        super().__init__("torch")
        self.__dict__["_torch"] = torch_module

    def __getattr__(self, name):
        return getattr(self.__dict__["_torch"], name)

    def load(self, *args, **kwargs):
        from recbole_llm.safe_pickle import torch_load_for_recbole

        return torch_load_for_recbole(*args, **kwargs)


def _torch_checkpoint_load():
    import torch

    proxy = _TorchWithCheckpointLoad(torch)
    import recbole.quick_start.quick_start as qs
    import recbole.trainer.trainer as tr

    for module in (tr, qs):
        if getattr(module, "torch", None) is torch:
            module.torch = proxy


def _scipy_dok_update():
    from scipy.sparse import _dok

    base = getattr(_dok, "_dok_base", None)
    if base is None or hasattr(base, "_update"):
        return

    def _update(self, data):
        """Bulk-set entries from a ``{(row, col): value}`` dict without index checks
        (scipy < 1.12 semantics, which RecBole's graph models rely on)."""
        self._dict.update(data)

    base._update = _update


def _cpu_ddp():
    import recbole.trainer.trainer as tr
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if getattr(tr.DistributedDataParallel, "__recbole_llm_compat__", False):
        return

    def cpu_aware_ddp(module, device_ids=None, **kwargs):
        """RecBole's DDP wrapping, valid for CPU modules too (gloo backend). Sparse buffers (graph
        adjacencies that every rank builds identically from the training split) are left out of the
        initial broadcast, which torch cannot do for sparse tensors."""
        on_cpu = all(p.device.type == "cpu" for p in module.parameters())
        sparse = [name for name, t in list(module.named_parameters()) + list(module.named_buffers())
                  if t.layout != torch.strided]
        if sparse:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, sparse)
        return DistributedDataParallel(module, device_ids=None if on_cpu else device_ids, **kwargs)

    cpu_aware_ddp.__recbole_llm_compat__ = True
    tr.DistributedDataParallel = cpu_aware_ddp


_AGG_LEN = re.compile(r"\.agg\(len\)")
_INPLACE_FILLNA = re.compile(r"^(?P<indent>\s*)(?P<target>\w+\[\w+\])\.fillna\((?P<args>.*), inplace=True\)\s*$", re.M)


def _rewrite_method(cls, name, expected_fixes):
    """Recompile ``cls.name`` with the pandas-3 rewrites; ``expected_fixes`` is how many
    rewrites the RecBole 1.2.1 source needs (checked, so a changed source fails loudly)."""
    func = getattr(cls, name)
    if getattr(func, "__recbole_llm_compat__", False):
        return
    source = textwrap.dedent(inspect.getsource(func))
    source, n_len = _AGG_LEN.subn(".map(len)", source)
    source, n_fill = _INPLACE_FILLNA.subn(
        lambda m: f"{m['indent']}{m['target']} = {m['target']}.fillna({m['args']})", source
    )
    if n_len + n_fill != expected_fixes:
        raise RuntimeError(
            f"recbole_llm.compat: {cls.__module__}.{cls.__name__}.{name} is not the RecBole 1.2.1 "
            f"code this fix was written for (found {n_len + n_fill} of {expected_fixes} patterns). "
            "Install recbole==1.2.1 or update recbole_llm/compat.py."
        )
    module = inspect.getmodule(func)
    namespace = {}
    filename = f"<recbole_llm.compat:{cls.__name__}.{name}>"
    exec(compile(source, filename, "exec"), module.__dict__, namespace)
    new_func = namespace[name]
    new_func.__qualname__ = func.__qualname__
    new_func.__recbole_llm_compat__ = True
    setattr(cls, name, new_func)


def _pandas3_dataset_methods():
    from recbole.data.dataset.dataset import Dataset
    from recbole.data.dataset.kg_dataset import KnowledgeBasedDataset
    from recbole.data.dataset.sequential_dataset import SequentialDataset

    _rewrite_method(Dataset, "_load_feat", 1)  # fillna(value="", inplace=True)
    _rewrite_method(Dataset, "_fill_nan", 2)  # fillna 0 / mean
    _rewrite_method(Dataset, "_normalize", 1)  # agg(len)
    _rewrite_method(Dataset, "_discretization", 2)  # agg(len) x2
    _rewrite_method(Dataset, "_remap", 1)  # agg(len)
    _rewrite_method(SequentialDataset, "_benchmark_presets", 1)  # agg(len)
    _rewrite_method(KnowledgeBasedDataset, "_reset_ent_remapID", 1)  # agg(len)


def _ensure_dir_race():
    import os

    import recbole.data.dataset.dataset as dataset_module
    import recbole.data.utils as data_utils
    import recbole.trainer.trainer as trainer_module
    import recbole.utils as utils_package
    import recbole.utils.logger as logger_module
    import recbole.utils.utils as utils_module

    original = utils_module.ensure_dir
    if getattr(original, "__recbole_llm_compat__", False):
        return
    if "os.makedirs(dir_path)" not in inspect.getsource(original):
        raise RuntimeError("recbole.utils.utils.ensure_dir changed; review recbole_llm.compat._ensure_dir_race")

    def ensure_dir(dir_path):
        os.makedirs(dir_path, exist_ok=True)

    ensure_dir.__doc__ = original.__doc__
    ensure_dir.__recbole_llm_compat__ = True
    for module in (utils_module, utils_package, logger_module, trainer_module, data_utils, dataset_module):
        if getattr(module, "ensure_dir", None) is original:
            module.ensure_dir = ensure_dir


def _full_sort_history():
    import recbole.data as data_package
    import recbole.data.utils as data_utils
    import recbole.quick_start.quick_start as quick_start
    from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader

    from recbole_llm.protocol import history_collate, preparation_with_history

    collate = FullSortEvalDataLoader.collate_fn
    if not getattr(collate, "__recbole_llm_compat__", False):
        if "return transformed_interaction, None, positive_u, positive_i" not in inspect.getsource(collate):
            raise RuntimeError("recbole FullSortEvalDataLoader.collate_fn changed; review "
                               "recbole_llm.compat._full_sort_history")
        FullSortEvalDataLoader.collate_fn = history_collate(collate)
    original = data_utils.data_preparation
    if getattr(original, "__recbole_llm_compat__", False):
        return
    if "test_data = get_dataloader(config, \"test\")(" not in inspect.getsource(original):
        raise RuntimeError("recbole.data.utils.data_preparation changed; review recbole_llm.compat._full_sort_history")
    wrapped = preparation_with_history(original)
    for module in (data_utils, data_package, quick_start):
        if getattr(module, "data_preparation", None) is original:
            module.data_preparation = wrapped


def new_run_id():
    """A checkpoint folder name no other run (process, or trainer in this process) uses."""
    import os
    import time
    import uuid

    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _checkpoint_run_folder():
    import functools
    import os

    import recbole.trainer.trainer as tr

    init = tr.Trainer.__init__
    if getattr(init, "__recbole_llm_compat__", False):
        return
    if 'saved_model_file = "{}-{}.pth".format(self.config["model"], get_local_time())' not in inspect.getsource(init):
        raise RuntimeError("recbole Trainer.__init__ changed; review recbole_llm.compat._checkpoint_run_folder")

    @functools.wraps(init)
    def __init__(self, config, model):
        init(self, config, model)
        folder = os.path.join(self.checkpoint_dir, str(config["run_id"] or new_run_id()))
        os.makedirs(folder, exist_ok=True)
        self.saved_model_file = os.path.join(folder, os.path.basename(self.saved_model_file))

    __init__.__recbole_llm_compat__ = True
    tr.Trainer.__init__ = __init__


def _require_recbole():
    """RecBole is not a declared dependency (setup.cfg says why): name the install line when it is missing."""
    if importlib.util.find_spec("recbole") is None:
        raise ImportError(
            "RecBole is not installed. Install it without its ray pin, as the README's set-up line does: "
            "python3 -m pip install --no-deps recbole==1.2.1"
        )


def _recbole_source(relative):
    """Text of a RecBole source file, read without importing it (``relative`` to the package)."""
    from pathlib import Path

    _require_recbole()
    spec = importlib.util.find_spec("recbole")
    return (Path(spec.submodule_search_locations[0]) / relative).read_text(encoding="utf-8")


class _RayTuneMissing(types.ModuleType):
    """``ray.tune`` as seen by RecBole's ``quick_start`` when ray is not installed."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"ray.tune.{name}: RecBole's Ray Tune objective (recbole.quick_start.objective_function) needs ray, "
            "which is not installed. Install it with pip install 'recbole-llm[ray]' "
            "(RecBole 1.2.1 allows ray<=2.6.3, which has wheels for Python 3.10 and 3.11 only)."
        )


def _ray_optional():
    if "recbole.quick_start.quick_start" in sys.modules or importlib.util.find_spec("ray") is not None:
        return
    source = _recbole_source("quick_start/quick_start.py")
    ray_imports = re.findall(r"^[ \t]*(?:import ray\b|from ray\b).*$", source, re.M)
    uses = re.findall(r"\btune\.(\w+)", source)
    if ray_imports != ["from ray import tune"] or uses != ["report"]:
        raise RuntimeError(
            "recbole.quick_start.quick_start is not the RecBole 1.2.1 code recbole_llm.compat._ray_optional "
            f"was written for (ray imports {ray_imports}, tune uses {uses}). Install recbole==1.2.1 or ray."
        )
    # Everything else quick_start imports is loaded first, so only its own body sees the placeholder.
    for name in ("torch.distributed", "recbole.config", "recbole.data", "recbole.data.transform", "recbole.utils"):
        importlib.import_module(name)
    placeholder = types.ModuleType("ray", "placeholder for RecBole's quick_start import (recbole_llm.compat)")
    placeholder.tune = _RayTuneMissing("ray.tune")
    sys.modules["ray"] = placeholder
    try:
        importlib.import_module("recbole.quick_start.quick_start")
    finally:
        if sys.modules.get("ray") is placeholder:
            del sys.modules["ray"]


@contextlib.contextmanager
def _process_state_kept():
    """Restore the process-wide settings RecBole's imports change (see 10. above)."""
    import torch

    anomaly = torch.is_anomaly_enabled()
    anomaly_nan = torch.is_anomaly_check_nan_enabled()
    recursion_limit = sys.getrecursionlimit()
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(anomaly, check_nan=anomaly_nan)
        sys.setrecursionlimit(recursion_limit)


def _import_sine():
    """Import RecBole's SINE module now, inside ``_process_state_kept``: its module body switches
    anomaly mode on, and the model registry imports it later."""
    source = _recbole_source("model/sequential_recommender/sine.py")
    if not re.search(r"^torch\.autograd\.set_detect_anomaly\(True\)$", source, re.M):
        raise RuntimeError("recbole/model/sequential_recommender/sine.py changed; review recbole_llm.compat._import_sine")
    importlib.import_module("recbole.model.sequential_recommender.sine")


def _torch_amp():
    import functools

    import recbole.trainer.trainer as tr
    import torch

    if getattr(tr.amp, "__recbole_llm_compat__", False):
        return
    source = inspect.getsource(tr)
    uses = sorted(set(re.findall(r"\bamp\.(\w+)", source)))
    if "import torch.cuda.amp as amp" not in source or uses != ["GradScaler", "autocast"]:
        raise RuntimeError(f"recbole.trainer.trainer's use of torch.cuda.amp changed ({uses}); review recbole_llm.compat._torch_amp")
    cuda_amp = types.ModuleType("amp", "torch.amp for the CUDA device, as RecBole's trainer uses torch.cuda.amp")
    cuda_amp.GradScaler = functools.partial(torch.amp.GradScaler, "cuda")
    cuda_amp.autocast = functools.partial(torch.amp.autocast, "cuda")
    cuda_amp.__recbole_llm_compat__ = True
    tr.amp = cuda_amp


def apply():
    """Apply every fix once (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _require_recbole()
    with warnings.catch_warnings():
        # ray (pinned by RecBole) imports pkg_resources, which warns about its own deprecation.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        _numpy_aliases()
        with _process_state_kept():
            _ray_optional()
            _scipy_dok_update()
            _pandas3_dataset_methods()
            _torch_checkpoint_load()
            _import_sine()
        _cpu_ddp()
        _ensure_dir_race()
        _full_sort_history()
        _checkpoint_run_folder()
        _torch_amp()
    _APPLIED = True
