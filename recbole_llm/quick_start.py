"""Quick-start API mirroring ``recbole.quick_start`` for plugin and RecBole models alike.

``run_recbole_llm`` has ``run_recbole``'s signature and return value; ``run_experiment`` returns the
same dict plus run statistics (epoch times, best epoch, parameters, peak memory) for the
benchmark runner. ``load_data_and_model`` reloads a checkpoint of any registered model (RecBole's
own only finds models inside its package).
"""

import functools
import logging
import sys
import time
from collections.abc import MutableMapping
from logging import getLogger

from recbole_llm import _recbole  # noqa: F401  (applies recbole_llm.compat; keep before RecBole imports)
import torch
import torch.distributed as dist
from recbole.data import create_dataset, data_preparation
from recbole.data.transform import construct_transform
from recbole.utils import get_environment, get_flops, init_logger, init_seed, set_color

from recbole_llm.config import Config
from recbole_llm.data.views import build_views
from recbole_llm.errors import CorruptFileError, TrainingDataMismatchError
from recbole_llm.memory import peak_rss_mb
from recbole_llm.paths import check_output_folders
from recbole_llm.plain import plain
from recbole_llm.protocol import PerUserRecorder
from recbole_llm.safe_pickle import trusted_loading
from recbole_llm.training.divergence import check_finite_weights
from recbole_llm.training.epoch_record import EpochRecord, with_run_hooks
from recbole_llm.utils import PIP_PACKAGES, get_model, get_trainer, missing_dependency_error


def _missing_dependency_as_error(func):
    """An optional library a RecBole model imports lazily (at construction or in training, e.g.
    NCL's faiss, KGAT's dgl) raises :class:`MissingDependencyError` naming the pip package."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in PIP_PACKAGES:
                raise
            model = kwargs.get("model", args[0] if args else None)
            name = model if isinstance(model, str) else getattr(model, "__name__", None)
            raise missing_dependency_error(name, exc.name) from exc

    return wrapper


@_missing_dependency_as_error
def run_experiment(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, queue=None,
                   on_trained=None, callback_fn=None, test=True):
    """Train and test one model on one dataset; return RecBole's result dict plus ``"stats"``.

    ``callback_fn(epoch, valid_score)`` is passed to the trainer's ``fit`` (RecBole's hook, called
    after every validation; ``recbole-llm tune`` reports and prunes there). ``test=False`` stops after
    training: the test split is not evaluated and ``test_result`` is ``None`` (tuning).

    ``on_trained(trainer, valid_data, test_data)``, if given, is called after the test evaluation (the
    best model loaded) and its return value is kept as ``result["on_trained"]``: benchmarks use it to
    evaluate inference-only variants of the trained weights without training again.

    ``stats`` holds ``best_epoch``, ``epoch_times`` (seconds), ``stage_times`` (seconds, the
    trainer's own stages if it reports ``stage_times``, plus data/model_init/views/fit/test),
    ``trainable_params``, ``total_params``, ``peak_rss_mb``, the resolved ``config`` as plain values and
    ``per_user_test`` (the test metrics per user, :class:`recbole_llm.protocol.PerUserRecorder`).
    """
    t0 = time.perf_counter()
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_output_folders(config)
    with trusted_loading(bool(config["trust_checkpoint"])):
        return _run_experiment(config, t0, saved, queue, on_trained, callback_fn, test)


def _run_experiment(config, t0, saved, queue, on_trained, callback_fn=None, test=True):
    config.final_config_dict["dataset_fingerprint"] = dataset_fingerprint(config)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)
    for note in getattr(config, "data_notes", ()):
        logger.warning(note)

    dataset = create_dataset(config)
    logger.info(dataset)
    _check_topk_against_items(config, dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if test:  # a tuning trial never touches the test split
        _check_split_not_empty(config, test_data)
    t_data = time.perf_counter()

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = getattr(config, "model_class", None) or get_model(config["model"])
    model = model_class(config, train_data._dataset).to(config["device"])
    logger.info(model)
    if config["count_flops"]:
        transform = construct_transform(config)
        flops = get_flops(model, dataset, config["device"], logger, transform)
        logger.info(set_color("FLOPs", "blue") + f": {flops}")

    trainer = with_run_hooks(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)
    # other models' views of the split that the trainer's stages read: built here, once, before fit
    t_views = time.perf_counter()
    views = trainer.data_views() if hasattr(trainer, "data_views") else {}
    if views:
        trainer.views = build_views(config, train_data, views)
    views_s = time.perf_counter() - t_views
    timer = trainer.epoch_record = EpochRecord()
    t_model = time.perf_counter()
    # RecBole's DecisionTreeTrainer.fit takes no callback_fn: pass it only when there is one
    hook = {"callback_fn": callback_fn} if callback_fn is not None else {}
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], **hook
    )
    t_fit = time.perf_counter()
    check_finite_weights(trainer.model, config, "after training")
    test_result, per_user = None, None
    if test:  # tuning trials (recbole_llm.tune) never evaluate the test split
        with PerUserRecorder(trainer, test_data) as per_user:
            test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    t_test = time.perf_counter()

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")

    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }
    stage_times = {"data": t_data - t0, "model_init": t_model - t_data - views_s}
    if views:
        stage_times["views"] = views_s
    stage_times.update({str(k): float(v) for k, v in (getattr(trainer, "stage_times", None) or {}).items()})
    stage_times.update({"fit": t_fit - t_model, "test": t_test - t_fit})
    params = list(model.parameters())
    result["stats"] = {
        "best_epoch": timer.best_epoch(best_valid_score),
        "epoch_times": timer.epoch_times,
        "stage_times": stage_times,
        "stage_stats": plain(getattr(trainer, "stage_stats", None) or {}),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "total_params": total_parameters(model),
        "peak_rss_mb": peak_rss_mb(),
        "saved_model_file": getattr(trainer, "saved_model_file", None) if saved else None,
        "config": plain(dict(config.final_config_dict)),
        "per_user_test": per_user.result() if per_user else None,  # {"users", "metrics"}: the test metrics per user
    }
    if on_trained is not None:
        result["on_trained"] = on_trained(trainer, valid_data, test_data)

    if not config["single_spec"]:
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put({k: v for k, v in result.items() if k != "stats"})
    return result


@_missing_dependency_as_error
def rescore_experiment(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True,
                       trained_checkpoint=None):
    """Score the weights of a finished run again under other inference settings, without training.

    ``trained_checkpoint`` is that run's best-epoch checkpoint; ``config_dict`` is its config with
    the changed settings (e.g. ``glta_inference: first_logit``). The data and split are rebuilt from
    the config (refused when the checkpoint's model, dataset, seed or split settings differ, or its
    dataset files changed since), the model is built anew and loaded from the file without running
    code from it (:mod:`recbole_llm.safe_pickle`), and only the test split is evaluated. Returns
    :func:`run_experiment`'s dict (no validation result, no epochs); ``stats["scoring_seconds"]`` is
    the test evaluation alone, which benchmarks report as the row's wall time.
    """
    from recbole_llm.errors import ConfigError
    from recbole_llm.training.checkpoint import load_checked

    t0 = time.perf_counter()
    if not trained_checkpoint:
        raise ConfigError("rescore_experiment needs trained_checkpoint: the .pth file of the trained run to score.")
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_output_folders(config)
    trust = bool(config["trust_checkpoint"])
    remedy = "Train the row it rescores again (its checkpoint is kept under the results folder's checkpoints/)."
    blob = load_checked(trained_checkpoint, "Trained checkpoint", remedy, trust=trust)
    from recbole.config.configurator import Config as RecBoleConfig

    if not isinstance(blob, dict) or not isinstance(blob.get("config"), RecBoleConfig) or "state_dict" not in blob:
        raise CorruptFileError(f"Trained checkpoint {trained_checkpoint} is not a RecBole checkpoint "
                               f"(no config/state_dict). {remedy}")
    trained = blob["config"]
    for key in ("model", "dataset", "seed", "eval_args", "benchmark_filename"):
        if trained[key] != config[key]:
            raise ConfigError(f"Trained checkpoint {trained_checkpoint} has {key}={trained[key]!r}, this rescoring "
                              f"{key}={config[key]!r}; a rescoring changes inference settings only.")
    _check_dataset_unchanged(trained, trained_checkpoint)
    with trusted_loading(trust):
        config.final_config_dict["dataset_fingerprint"] = dataset_fingerprint(config)
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        logger = getLogger()
        logger.info(config)
        data = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, data)
        _check_split_not_empty(config, test_data)
        t_data = time.perf_counter()
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        net = (getattr(config, "model_class", None) or get_model(config["model"]))(config, train_data._dataset)
        net = net.to(config["device"])
        net.load_state_dict(blob["state_dict"])
        net.load_other_parameter(blob.get("other_parameter"))
        net.eval()
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
        t_model = time.perf_counter()
        with PerUserRecorder(trainer, test_data) as per_user:
            test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
        t_test = time.perf_counter()
    logger.info(set_color("rescored test result", "yellow") + f": {test_result} ({trained_checkpoint})")
    params = list(net.parameters())
    return {
        "best_valid_score": None, "valid_score_bigger": config["valid_metric_bigger"], "best_valid_result": None,
        "test_result": test_result,
        "stats": {"best_epoch": None, "epoch_times": [],
                  "stage_times": {"data": t_data - t0, "model_init": t_model - t_data, "test": t_test - t_model},
                  "scoring_seconds": t_test - t_model, "rescored_from": str(trained_checkpoint),
                  "trainable_params": sum(p.numel() for p in params if p.requires_grad),
                  "total_params": total_parameters(net), "peak_rss_mb": peak_rss_mb(),
                  "saved_model_file": None, "config": plain(dict(config.final_config_dict)),
                  "per_user_test": per_user.result()},
    }


def _check_topk_against_items(config, dataset):
    """A cut-off beyond the number of items cannot be ranked (torch.topk fails deep in evaluation)."""
    from recbole_llm.errors import ConfigError

    topk = config["topk"]
    ks = [topk] if isinstance(topk, int) else list(topk or [])
    n_items = int(dataset.item_num) - 1  # id 0 is RecBole's padding
    if ks and max(ks) > n_items:
        raise ConfigError(f"Setting topk={topk!r} is invalid: {config['dataset']} has {n_items} items, so a list "
                          f"cannot hold {max(ks)}. Use cut-offs up to {n_items}, e.g. --topk=[10,20].")


def _check_split_not_empty(config, test_data):
    from recbole_llm.errors import ConfigError

    dataset = getattr(test_data, "dataset", None) or getattr(test_data, "_dataset", None)
    if dataset is not None and len(dataset) == 0:
        raise ConfigError(f"The test split of {config['dataset']} is empty with eval_args={config['eval_args']!r}; "
                          "the run would report no test result. Give the test part a share of the interactions.")


def total_parameters(model) -> int:
    """Parameters of ``model`` plus those of an LLM it keeps outside its modules (``model.backbone``,
    out of the state dict on purpose), each tensor counted once (LoRA tensors live in both)."""
    tensors = {id(p): p for p in model.parameters()}
    llm = getattr(getattr(model, "backbone", None), "model", None)
    if isinstance(llm, torch.nn.Module):
        tensors.update({id(p): p for p in llm.parameters()})
    return int(sum(p.numel() for p in tensors.values()))


def run_recbole_llm(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    queue=None,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
):
    """Train and test a model, exactly like ``recbole.quick_start.run_recbole``.

    Returns ``{"best_valid_score", "valid_score_bigger", "best_valid_result", "test_result"}``.
    With ``nproc > 1`` it runs RecBole's distributed path (gloo on CPU, NCCL on GPUs), spawning
    ``nproc`` processes, and returns rank 0's result.
    """
    _check_distributed_args(nproc, world_size, ip, port, group_offset)
    if nproc == 1 and world_size <= 0:
        result = run_experiment(model, dataset, config_file_list, config_dict, saved=saved, queue=queue)
        result.pop("stats")
        return result

    import torch.multiprocessing as mp

    if world_size == -1:
        world_size = nproc
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {})
    if not config_dict.get("run_id"):  # every rank saves its checkpoints in the same run folder
        from recbole_llm.compat import new_run_id

        config_dict["run_id"] = new_run_id()
    config_dict.update({"world_size": world_size, "ip": ip, "port": port, "nproc": nproc, "offset": group_offset})
    # Settings and data files are checked here, once, before any process starts: a bad file is one
    # error in this process instead of a traceback from every rank.
    check_output_folders(Config(model=model, dataset=dataset, config_file_list=config_file_list,
                                config_dict=dict(config_dict)))
    kwargs = {"config_dict": config_dict, "queue": queue, "saved": saved}
    try:
        mp.spawn(_run_rank, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    except mp.ProcessRaisedException:
        error = _rank_error(queue)
        if error is None:
            raise
        raise error from None
    return None if queue.empty() else queue.get()


def _check_distributed_args(nproc, world_size, ip, port, group_offset):
    """Distributed settings checked before any process starts (a wrong world size made every rank
    wait forever for ranks that never come)."""
    from recbole_llm.errors import ConfigError

    def bad(text):
        return ConfigError(text + " See README, 'Running models' (--nproc).")

    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise bad(f"--nproc={nproc!r} is invalid: the number of processes on this machine must be an integer >= 1.")
    if not isinstance(world_size, int) or isinstance(world_size, bool) or (world_size != -1 and world_size < 1):
        raise bad(f"--world_size={world_size!r} is invalid: the total number of processes must be >= 1 "
                  "(or -1: --nproc).")
    if not isinstance(group_offset, int) or isinstance(group_offset, bool) or group_offset < 0:
        raise bad(f"--group_offset={group_offset!r} is invalid: it must be an integer >= 0.")
    total = nproc if world_size == -1 else world_size
    if group_offset + nproc > total:
        raise bad(f"--nproc={nproc} with --group_offset={group_offset} needs ranks up to {group_offset + nproc - 1}, "
                  f"but --world_size={total} has ranks 0..{total - 1}.")
    if total > nproc and str(ip) in ("localhost", "127.0.0.1", "::1"):
        raise bad(f"--world_size={total} asks for {total - nproc} process(es) beyond this machine's --nproc={nproc}, "
                  f"but --ip={ip} lets no other machine join; the run would wait forever. On one machine omit "
                  "--world_size; across machines give the master's address with --ip and each machine's --group_offset.")
    if nproc > 1 or total > 1:
        try:
            port_number = int(str(port))
        except ValueError:
            port_number = -1
        if not 1 <= port_number <= 65535:
            raise bad(f"--port={port!r} is invalid: a TCP port number between 1 and 65535.")


_RANK_ERROR = "__recbole_llm_error__"


def _rank_error(queue):
    """The user-facing error a spawned rank reported through the queue, re-created in this
    process with its type and message (``None`` if no rank reported one)."""
    import importlib

    from recbole_llm.errors import RecBoleLLMError

    while not queue.empty():
        item = queue.get()
        if isinstance(item, dict) and _RANK_ERROR in item:
            module, name, message = item[_RANK_ERROR]
            try:
                cls = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                cls = RecBoleLLMError
            if not (isinstance(cls, type) and issubclass(cls, RecBoleLLMError)):
                cls = RecBoleLLMError
            try:
                return cls(message)
            except Exception:
                return RecBoleLLMError(message)
    return None


def _run_rank(rank, *args):
    """Entry point of one spawned process (RecBole's ``run_recboles``)."""
    kwargs = args[-1]
    if not isinstance(kwargs, MutableMapping):
        raise ValueError(f"The last argument of _run_rank should be a dict, got {type(kwargs)}")
    kwargs["config_dict"] = dict(kwargs.get("config_dict") or {})
    kwargs["config_dict"]["local_rank"] = rank
    torch.set_num_threads(1)
    from recbole_llm.errors import RecBoleLLMError

    try:
        run_experiment(*args[:3], **kwargs)
    except RecBoleLLMError as exc:
        # Tell the parent what went wrong, with type and message; raising still stops the others.
        if kwargs.get("queue") is not None:
            kwargs["queue"].put({_RANK_ERROR: (type(exc).__module__, type(exc).__qualname__, str(exc))})
        raise


#: The atomic files RecBole reads for a dataset (``<dataset>.<suffix>``).
_ATOMIC_SUFFIXES = ("inter", "user", "item", "kg", "link", "net")


def dataset_fingerprint(config) -> dict:
    """``{file name: sha1}`` of the atomic files of ``config``'s dataset (those RecBole reads).
    Stored in the config, hence in every checkpoint, so that ``load_data_and_model`` can refuse a
    dataset edited since training (it would re-split other interactions without a word)."""
    import hashlib
    from pathlib import Path

    folder, name = Path(config["data_path"] or "."), str(config["dataset"])
    parts = config["benchmark_filename"] or [None]
    names = [f"{name}.{suffix}" for suffix in _ATOMIC_SUFFIXES if suffix != "inter"]
    names += [f"{name}.{part}.inter" if part else f"{name}.inter" for part in parts]
    fingerprint = {}
    for file_name in sorted(names):
        path = folder / file_name
        if path.is_file():
            h = hashlib.sha1()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            fingerprint[file_name] = h.hexdigest()
    return fingerprint


def load_data_and_model(model_file, trust=False):
    """Reload a checkpoint written by any registered model (plugins included).

    Returns ``(config, model, dataset, train_data, valid_data, test_data)`` like RecBole's. The file
    is read without running code from it (:mod:`recbole_llm.safe_pickle`); ``trust=True`` loads a
    file you trust with torch's full unpickler. The model class is the one registered under the
    checkpoint's model name, and a dataset whose files changed since training is refused.
    """
    from recbole.config.configurator import Config as RecBoleConfig

    from recbole_llm.training.checkpoint import load_checked

    remedy = "Pass the .pth file a training run wrote (under checkpoint_dir, saved/ by default), or train again."
    checkpoint = load_checked(model_file, "Model checkpoint", remedy, trust=trust)
    if (not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= set(checkpoint)
            or not isinstance(checkpoint["config"], RecBoleConfig)):
        raise CorruptFileError(f"Model checkpoint {model_file} is not a RecBole checkpoint (no config/state_dict). {remedy}")
    config = checkpoint["config"]
    _check_dataset_unchanged(config, model_file)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"], config["reproducibility"])
    model_class = get_model(config["model"])
    model = model_class(config, train_data._dataset).to(config["device"])
    with trusted_loading(trust):
        model.load_state_dict(checkpoint["state_dict"])
        model.load_other_parameter(checkpoint.get("other_parameter"))
    logging.getLogger(__name__).debug("loaded %s from %s", config["model"], model_file)
    return config, model, dataset, train_data, valid_data, test_data


def _check_dataset_unchanged(config, model_file):
    stored = config["dataset_fingerprint"]
    if not stored:
        getLogger(__name__).warning(
            "checkpoint %s records no dataset fingerprint (written before recbole-llm stored one, or by RecBole "
            "itself): cannot check that %s is unchanged since training", model_file, config["dataset"])
        return
    current = dataset_fingerprint(config)
    changed = sorted(name for name in set(stored) | set(current) if stored.get(name) != current.get(name))
    if changed:
        raise TrainingDataMismatchError(
            f"Model checkpoint {model_file}: dataset file(s) {', '.join(changed)} in {config['data_path']} changed "
            "since this model was trained, so re-splitting them would not give the interactions it was trained "
            "and evaluated on. Restore the files the run used, or train again on the edited data.")
