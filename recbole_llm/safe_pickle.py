"""Loading ``torch.save`` files without running code from them.

A pickle is a small program: its ``REDUCE``/``BUILD`` opcodes call whatever the file names, which
is how a malicious checkpoint runs a shell command when it is loaded. torch's
``weights_only=True`` unpickler blocks that, but it cannot read RecBole's checkpoints (RecBole saves
with pickle protocol 4, whose opcodes it does not implement, and they hold RecBole's ``Config``).
So every checkpoint and cache recbole-llm reads goes through :func:`load` here: ``torch.load`` with
a restricted unpickler (Python's own, with the risky opcodes rewritten) that admits exactly

* everything torch's ``weights_only`` loader admits (tensors, storages, parameters, dtypes,
  devices, ``OrderedDict``...), except its two rebuild helpers that call a class or function named
  in their arguments;
* numpy scalars and arrays of numeric, bool or string dtypes (no object or structured dtypes);
* in checkpoints (``kind="checkpoint"``), not in caches: RecBole's and recbole-llm's ``Config``
  (created empty and filled from plain data; its ``__init__``, which evaluates strings, never runs),
  RecBole's enums (looked up by value), the YAML loader class Config keeps, and the model classes
  registered with RecBole or a recbole-llm plugin, found by name in a table built here (the file
  never makes us import a module). A class is a value only: calling it, or passing it to any
  function while loading, is refused.

Anything else raises :class:`~recbole_llm.errors.UntrustedFileError` naming the file, what it
asked for, and how to load a file the user trusts (``--trust_checkpoint`` / ``trust=True``:
torch's full unpickler). This module imports nothing heavy at import time.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import contextvars
import pickle
import re
import zipfile
from pathlib import Path

from recbole_llm.errors import UntrustedFileError

TRUST_HINT = "If you trust this file, pass --trust_checkpoint on the command line (trust=True in Python)."

#: Whether loads in the current context may unpickle anything (``--trust_checkpoint``).
_TRUSTED = contextvars.ContextVar("recbole_llm_trusted_loading", default=False)

#: torch's weights_only rebuild helpers that call a function or class taken from their arguments.
_TORCH_EXCLUDED = {"torch._tensor._rebuild_from_type_v2", "torch._utils._rebuild_wrapper_subclass"}
#: numpy dtype codes we rebuild: bool, signed/unsigned ints, floats, complex, unicode and byte strings.
_NUMPY_DTYPE = re.compile(r"^[<>=|]?(b1|bool|[iu][1248]|f[248]|c(8|16)|[US]\d*)$")
#: Config classes a checkpoint may hold besides RecBole's; ``recbole_llm.config`` adds its own on import
#: (the data layer registers itself here, so this core module imports nothing above it).
_CONFIG_CLASSES: list = []


def allow_config_class(cls) -> None:
    """Let checkpoints hold ``cls`` (a RecBole ``Config`` subclass) as a value, built like RecBole's."""
    if cls not in _CONFIG_CLASSES:
        _CONFIG_CLASSES.append(cls)


_RECBOLE_ENUMS = ("ModelType", "KGDataLoaderState", "EvaluatorType", "InputType", "FeatureType", "FeatureSource")


class _Refused(Exception):
    """Raised inside the unpickler; turned into UntrustedFileError with the file name."""


@contextlib.contextmanager
def trusted_loading(trust=True):
    """Within the block, checkpoint loads that honour the user's trust flag use torch's full
    unpickler (``run_experiment`` enters it when ``trust_checkpoint`` is set)."""
    token = _TRUSTED.set(bool(trust))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def trusted() -> bool:
    return _TRUSTED.get()


class _Policy:
    """What one kind of file may contain (see the module docstring)."""

    def __init__(self, kind):
        import numpy as np
        import torch  # noqa: F401
        from torch._weights_only_unpickler import _get_allowed_globals

        self.kind = kind
        self.globals = {k: v for k, v in _get_allowed_globals().items() if k not in _TORCH_EXCLUDED}
        multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
        for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
            self.globals[f"{prefix}.scalar"] = multiarray.scalar
            self.globals[f"{prefix}._reconstruct"] = multiarray._reconstruct
        self.globals["numpy.dtype"] = np.dtype
        self.globals["numpy.ndarray"] = np.ndarray
        self.np = np
        self.callables = {id(v) for v in self.globals.values()}
        self.callables.discard(id(np.ndarray))  # an array is rebuilt through _reconstruct, never called
        self.enums = set()
        self.values = {}  # id -> object: classes that may only be values
        self.newobj = set()  # ids of classes created with __new__ and filled from plain data
        self.plain_build = set()
        from collections import OrderedDict

        self.plain_build.add(OrderedDict)
        if kind == "checkpoint":
            self._add_checkpoint_globals()

    def _add_checkpoint_globals(self):
        import yaml
        from recbole.config.configurator import Config as RecBoleConfig
        from recbole.utils import enum_type

        for cls in (RecBoleConfig, *_CONFIG_CLASSES):
            self.globals[f"{cls.__module__}.{cls.__qualname__}"] = cls
            self.newobj.add(id(cls))
            self.plain_build.add(cls)
        for name in _RECBOLE_ENUMS:
            cls = getattr(enum_type, name)
            self.globals[f"recbole.utils.enum_type.{name}"] = cls
            self.enums.add(id(cls))
        for cls in [yaml.FullLoader] + list(_model_classes()):
            self.globals[f"{cls.__module__}.{cls.__qualname__}"] = cls
            self.values[id(cls)] = cls
        self.config_types = (RecBoleConfig,)

    def check_args(self, args, what):
        """Refuse a call whose arguments carry a value-only class (a model class handed to a
        rebuild helper would be called by it)."""
        seen, todo = set(), [args]
        config_types = getattr(self, "config_types", ())
        while todo:
            obj = todo.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if id(obj) in self.values:
                raise _Refused(f"{what} with the class {obj.__module__}.{obj.__qualname__} as an argument")
            if isinstance(obj, (tuple, list, set, frozenset)):
                todo.extend(obj)
            elif isinstance(obj, dict):
                todo.extend(obj.keys())
                todo.extend(obj.values())
            elif config_types and isinstance(obj, config_types):
                todo.append(vars(obj))


def _model_classes():
    """The model classes RecBole exports and those the plugins registered."""
    from recbole.utils import get_model as recbole_get_model

    from recbole_llm._recbole import recbole_model_names
    from recbole_llm.plugins import get_registry

    for name in recbole_model_names():
        try:
            yield recbole_get_model(name)
        except (ImportError, ValueError):
            continue
    yield from get_registry().models.values()


_POLICIES: dict = {}


def _policy(kind):
    # rebuilt when plugins change the registry (tests register plugins at run time) or a Config class joins
    from recbole_llm.plugins import get_registry

    key = (kind, (id(get_registry()), tuple(_CONFIG_CLASSES)) if kind == "checkpoint" else None)
    if key not in _POLICIES:
        _POLICIES[key] = _Policy(kind)
    return _POLICIES[key]


def _unpickler_class(policy):
    base = pickle._Unpickler
    dispatch = dict(base.dispatch)

    class RestrictedUnpickler(base):
        def find_class(self, module, name):
            if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle itself maps them
                if (module, name) in _compat_pickle.NAME_MAPPING:
                    module, name = _compat_pickle.NAME_MAPPING[(module, name)]
                elif module in _compat_pickle.IMPORT_MAPPING:
                    module = _compat_pickle.IMPORT_MAPPING[module]
            full = f"{module}.{name}"
            try:
                return policy.globals[full]
            except KeyError:
                raise _Refused(f"the global {full}") from None

        def load_reduce(self):
            args = self.stack.pop()
            func = self.stack[-1]
            if id(func) in policy.enums:
                if not (isinstance(args, tuple) and len(args) == 1):
                    raise _Refused(f"the enum {func.__qualname__} called with {len(args)} arguments")
                self.stack[-1] = func(args[0])
                return
            if id(func) not in policy.callables:
                raise _Refused(f"a call of {getattr(func, '__qualname__', type(func).__name__)}")
            if func is policy.np.dtype and not (args and isinstance(args[0], str) and _NUMPY_DTYPE.match(args[0])):
                raise _Refused(f"the numpy dtype {args[0] if args else None!r}")
            policy.check_args(args, f"a call of {getattr(func, '__qualname__', func)}")
            self.stack[-1] = func(*args)

        def load_newobj(self):
            args = self.stack.pop()
            cls = self.stack.pop()
            if id(cls) not in policy.newobj or args:
                raise _Refused(f"creating {getattr(cls, '__qualname__', cls)!s}")
            self.append(cls.__new__(cls))

        def load_newobj_ex(self):
            raise _Refused("the NEWOBJ_EX opcode")

        def load_inst(self):
            raise _Refused("the INST opcode")

        def load_obj(self):
            raise _Refused("the OBJ opcode")

        def load_build(self):
            state = self.stack.pop()
            inst = self.stack[-1]
            kind = type(inst)
            np = policy.np
            if kind in policy.plain_build:
                if isinstance(state, tuple) and len(state) == 2 and state[1]:
                    raise _Refused(f"slot state for {kind.__qualname__}")
                if isinstance(state, tuple) and len(state) == 2:
                    state = state[0]
                if state:
                    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
                        raise _Refused(f"state of {kind.__qualname__} that is not a mapping of names")
                    inst.__dict__.update(state)  # no call: a class in it stays a value
                return
            import torch

            if isinstance(inst, (np.ndarray, np.dtype)) or kind in (torch.Tensor, torch.nn.Parameter):
                policy.check_args(state, f"state of {kind.__qualname__}")
                kind.__setstate__(inst, state)
                dtype = inst if isinstance(inst, np.dtype) else getattr(inst, "dtype", None)
                if isinstance(dtype, np.dtype) and dtype.hasobject:
                    raise _Refused("numpy data of Python objects")
                return
            raise _Refused(f"setting the state of a {kind.__qualname__}")

        dispatch[pickle.REDUCE[0]] = load_reduce
        dispatch[pickle.NEWOBJ[0]] = load_newobj
        dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
        dispatch[pickle.INST[0]] = load_inst
        dispatch[pickle.OBJ[0]] = load_obj
        dispatch[pickle.BUILD[0]] = load_build

    RestrictedUnpickler.dispatch = dispatch
    return RestrictedUnpickler


class _PickleModule:
    """The ``pickle_module`` handed to ``torch.load``: our unpickler for every pickle in the file."""

    __name__ = "recbole_llm.safe_pickle"

    def __init__(self, policy):
        self.Unpickler = _unpickler_class(policy)
        self.UnpicklingError = pickle.UnpicklingError

    def load(self, file, **kwargs):
        return self.Unpickler(file, **kwargs).load()


def load(path, what: str, kind: str = "checkpoint", trust: bool | None = None, map_location="cpu", remedy=None):
    """``torch.load(path)`` that never runs code from the file (see the module docstring).

    ``kind``: ``"checkpoint"`` (RecBole's Config, enums and model classes allowed) or ``"cache"``
    (tensors and plain data only). ``trust``: load with torch's full unpickler (``None``: the
    current :func:`trusted_loading` setting; caches ignore trust). Refusals raise
    :class:`UntrustedFileError` (a cache's message ends with ``remedy``, how to rebuild it); other read
    errors propagate to the caller."""
    import torch

    if trust is None:
        trust = trusted()
    if trust and kind == "checkpoint":
        return torch.load(path, map_location=map_location, weights_only=False)
    if _is_torchscript(path):
        raise UntrustedFileError(f"{what} {path} is a TorchScript archive, which recbole-llm does not load "
                                 f"(loading it runs its code). {TRUST_HINT if kind == 'checkpoint' else ''}".rstrip())
    try:
        return torch.load(path, map_location=map_location, weights_only=False, pickle_module=_PickleModule(_policy(kind)))
    except _Refused as exc:
        remedy = TRUST_HINT if kind == "checkpoint" else (remedy or f"Delete {path}; it is rebuilt on the next run.")
        raise UntrustedFileError(
            f"{what} {path} refused: it asks for {exc}, which is not in what recbole-llm checkpoints and caches "
            f"hold, and loading it could run code. {remedy}") from None


def _is_torchscript(path) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(Path(n).name == "constants.pkl" for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def torch_load_for_recbole(f, map_location=None, *args, **kwargs):
    """``torch.load`` as RecBole's trainer and quick-start modules see it (installed by
    :mod:`recbole_llm.compat`): the checkpoint policy above, or the full unpickler inside
    :func:`trusted_loading`. A file object or a non-default call goes to torch unchanged."""
    import torch

    if args or set(kwargs) - {"weights_only"} or not isinstance(f, (str, Path)):
        kwargs.setdefault("weights_only", True)
        return torch.load(f, map_location, *args, **kwargs)
    return load(f, "RecBole checkpoint", kind="checkpoint", map_location=map_location)


__all__ = ["load", "trusted_loading", "trusted", "torch_load_for_recbole", "TRUST_HINT"]
