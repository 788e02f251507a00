"""`ahsar sweep`: a grid of training trials from a small TOML or JSON file, run as Ray tasks.

A config file holds one ``[sweep]`` table of `ahsar train` options (the same names,
``-`` or ``_``; ``seeds`` is ``seed``); a list makes that option a grid axis::

    [sweep]
    data = "digits"
    epochs = 3
    seeds = [0, 1]
    method = ["baseline", "ahsar"]
    hidden = [[128, 64], [256]]   # hidden and channels: one value is "128,64" or [128, 64]

An option left out takes `ahsar train`'s default (read from the CLI's own parser, so the
two never disagree). A JSON file is the same as ``{"sweep": {...}}``, where ``null`` is
an option's "not set" (steps, theta0, train_samples, control, ahsar_set). A relative ``.npz`` path
in ``data`` is taken from the config file's folder. The grid is the product of the axes,
the first axis in the file varying slowest; each trial is a dict of
:func:`ahsar_deploy.train.train` keyword arguments (``control`` and ``ahsar_set``
standing for ``ahsar=ahsar_config(control, ahsar_set)``), named by its axis values and
identified by a hash of the arguments that differ from train()'s defaults (:class:`Trial`;
so a new train() option leaves existing trials' ids alone).

The output directory::

    OUT/trials/<id>.pt    a finished trial's checkpoint (checkpoint.save)
    OUT/trials/<id>.json  its arguments and results; written last, so it marks the trial done
    OUT/sweep.json        every trial of the grid in order, which were reused and which ran
    OUT/sweep.md          the same as a markdown table

Every file is written atomically (interrupts.atomic_path), by the process that called
:func:`sweep` (Ray tasks return their checkpoint, so a cluster needs no shared disk). A
sweep started again skips the trials whose json is there with the same arguments.

Results equal running the trials one by one: training is seeded, and each trial runs on
one torch thread whether it runs in a Ray worker or here (``serial=True``), so the
floating-point sums happen in the same order (tests/test_sweep.py checks the weights
bitwise).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import inspect
import itertools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import interrupts
from .errors import ConfigError, DeployError

log = logging.getLogger(__name__)

FORMAT = "ahsar-deploy.sweep"
VERSION = 1
LIST_OPTIONS = ("hidden", "channels")   # options whose one value is a list of integers
_NOT_OPTIONS = ("help", "output", "json", "quiet")   # `ahsar train` arguments that are no train() option
_MINIMUM = {"epochs": 1, "batch": 1, "steps": 1, "train_samples": 1, "augment_shift": 0,
            "i_decay": 0, "v_decay": 0}
_MAXIMUM = {"i_decay": 4096, "v_decay": 4096}
RAY_DOCS = "https://docs.ray.io/en/latest/ray-core/api/doc/ray.init.html"

Measure = Callable[[dict, dict], dict]   # (trial arguments, checkpoint dict) -> JSON-able extras


@dataclass(frozen=True)
class Trial:
    """One training run: ``args`` are :func:`ahsar_deploy.train.train`'s keyword arguments,
    every one given (JSON types: lists for tuples; ``control`` and ``ahsar_set`` for
    ``ahsar``), ``id`` the first 12 hex digits of the SHA-256 of the sorted JSON of those
    ``args`` that differ from train()'s keyword defaults, ``name`` for people."""
    id: str
    name: str
    args: dict

    @classmethod
    def make(cls, args: dict, name: str | None = None) -> "Trial":
        """A trial from train() keyword arguments; those left out take train()'s defaults
        (``control`` and ``ahsar_set`` may replace ``ahsar``). DeployError for a name train() does not take."""
        defaults = _train_defaults()   # the id hashes only what differs: a new train() option keeps old ids
        args = _complete(args, defaults)
        blob = json.dumps({k: v for k, v in args.items() if v != defaults[k]}, sort_keys=True,
                          separators=(",", ":"))
        tid = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return cls(id=tid, name=name or tid, args=args)


@dataclass(frozen=True)
class SweepConfig:
    """A validated config: ``options`` maps every `ahsar train` option to its values in
    normalised form (one value unless it is an axis), ``axes`` the options given as lists,
    in file order; ``source`` names the file in error messages."""
    source: str
    options: dict
    axes: tuple[str, ...]


# -- the config ------------------------------------------------------------------------------

def _train_options() -> dict[str, argparse.Action]:
    """`ahsar train`'s arguments by destination name, from the CLI's parser itself."""
    from .cli import parser
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["train"]._actions if a.dest not in _NOT_OPTIONS}


def _train_defaults() -> dict:
    """train()'s keyword defaults, tuples as lists, ``control`` and ``ahsar_set`` in place of ``ahsar``."""
    from .train import train
    out = {}
    for name, p in inspect.signature(train).parameters.items():
        if name == "progress":
            continue
        if name == "ahsar":
            out["control"] = out["ahsar_set"] = None
        else:
            out[name] = list(p.default) if isinstance(p.default, tuple) else p.default
    return out


def _complete(args: dict, defaults: dict | None = None) -> dict:
    """args over train()'s defaults (_train_defaults(), or those given), the AHSAR config in
    one spelling and list options as lists of int. DeployError for a name train() does not take."""
    defaults = defaults or _train_defaults()
    args = dict(args)
    reg = args.pop("ahsar", None)   # the benchmarks may pass a config object
    if reg is not None:
        args.setdefault("control", reg.control)
        args.setdefault("ahsar_set", reg.settings())
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        raise DeployError(f"trial arguments {', '.join(unknown)}: train() takes none of these "
                          f"(it takes {', '.join(sorted(defaults))})")
    out = {**defaults, **args}
    if out["control"] is not None or out["ahsar_set"] is not None:   # one spelling per config
        from .train import ahsar_config
        cfg = ahsar_config(out["control"], out["ahsar_set"])
        out["control"] = None if cfg is None or cfg.control == "integral" else cfg.control
        out["ahsar_set"] = None if cfg is None else cfg.settings()
    for k in LIST_OPTIONS:   # None: train() picks it (hidden, from the data and the arch)
        out[k] = None if out[k] is None else [int(v) for v in out[k]]
    return out


def _kind(v) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table", type(None): "null"}.get(type(v), type(v).__name__)


def _value(src: str, key: str, shown: str, v, action: argparse.Action, base: Path):
    """One value of one option, checked and normalised; ConfigError naming key and file."""
    def bad(what: str, fix: str):
        text = json.dumps(v) if _jsonable(v) else repr(v)
        return ConfigError(f"{src}: {shown} = {text[:80]} {what}; {fix}")

    if v is None:
        if action.default is None and not isinstance(action, argparse._StoreTrueAction):
            return None
        raise bad("is null", f"give a value or leave {shown} out for the default ({action.default!r})")
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(v, bool):
            raise bad(f"is {_kind(v)}", "write true or false")
        return v
    if key in LIST_OPTIONS:
        if isinstance(v, str):
            try:
                v = [int(x) for x in v.split(",") if x.strip()]
            except ValueError:
                raise bad("is not comma-separated integers", 'write e.g. "128,64" or [128, 64]') from None
        elif not (isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
            raise bad(f"is {_kind(v)}", 'write a string like "128,64" or a list of integers like [128, 64] '
                                        '(a list of those is a grid axis)')
        if any(x <= 0 for x in v):
            raise bad("has a size <= 0", "every layer needs at least one neuron or channel")
        return v
    if action.type is int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise bad(f"is {_kind(v)}", "write an integer (a list of integers is a grid axis)")
    elif action.type is float:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise bad(f"is {_kind(v)}", "write a number (a list of numbers is a grid axis)")
        v = float(v)
    elif not isinstance(v, str):
        raise bad(f"is {_kind(v)}", "write a string in quotes (a list of strings is a grid axis)")
    if action.choices is not None and v not in action.choices:
        close = difflib.get_close_matches(str(v), list(action.choices), 1)
        raise bad("is not one of " + ", ".join(map(str, action.choices)),
                  f"did you mean {close[0]!r}?" if close else "choose one of them")
    if key in _MINIMUM and v < _MINIMUM[key]:
        raise bad(f"is below {_MINIMUM[key]}", f"give {shown} >= {_MINIMUM[key]}")
    if key in _MAXIMUM and v > _MAXIMUM[key]:
        raise bad(f"is above {_MAXIMUM[key]}", f"give {shown} <= {_MAXIMUM[key]} (Loihi's decay register)")
    if key == "data":
        from .data import DATASETS
        if v not in DATASETS:
            p = Path(v).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise bad(f"is neither a built-in dataset ({', '.join(DATASETS)}) nor a file",
                          f"name a built-in or an .npz file (a relative path is taken from {base})")
            v = str(p.resolve())
    return v


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def parse(table: dict, source: str = "<config>", base: str | Path = ".") -> SweepConfig:
    """Validate a ``[sweep]`` table (a dict as tomllib or json loads it). ``source`` names it
    in errors, ``base`` is the folder relative data paths start from. Raises ConfigError,
    one line naming the key and the file: an unknown key (with the closest known one), a
    wrong type or value, an empty list (an empty grid axis), a value listed twice."""
    opts = _train_options()
    base = Path(base)
    options: dict = {}
    axes: list[str] = []
    spelled: dict[str, str] = {}               # option -> how the file first wrote it
    for shown, value in table.items():
        key = "seed" if shown in ("seed", "seeds") else str(shown).replace("-", "_")
        if key not in opts:
            names = sorted([*opts, "seeds"])
            close = difflib.get_close_matches(key, names, 1)
            raise ConfigError(f"{source}: unknown key {shown!r} in [sweep]; "
                              + (f"did you mean {close[0]!r}? " if close else "")
                              + "keys are `ahsar train` options: " + ", ".join(names))
        if key in options:
            raise ConfigError(f"{source}: {spelled[key]!r} and {shown!r} in [sweep] are the same option "
                              f"({key}); give one of them")
        spelled[key] = str(shown)
        if isinstance(value, list) and not value:
            raise ConfigError(f"{source}: {shown} = [] is an empty grid axis; list at least one value, "
                              f"or leave {shown} out for the default ({opts[key].default!r})")
        axis = isinstance(value, list) and (key not in LIST_OPTIONS or any(isinstance(v, (list, str))
                                                                          for v in value))
        if axis:
            values = [_value(source, key, f"{shown}[{i}]", v, opts[key], base) for i, v in enumerate(value)]
            seen = [json.dumps(v) for v in values]
            twice = next((value[i] for i, s in enumerate(seen) if s in seen[:i]), None)
            if len(set(seen)) < len(seen):
                raise ConfigError(f"{source}: {shown} lists {twice!r} twice (after normalising); "
                                  f"list each value once")
            axes.append(key)
        else:
            values = [_value(source, key, shown, value, opts[key], base)]
        options[key] = values
    return SweepConfig(source=source, options=options, axes=tuple(axes))


def load(path: str | Path) -> SweepConfig:
    """Read and validate a sweep config: TOML, or JSON for a ``.json`` file. ConfigError
    (one line naming the file, and the key where there is one) for a missing or
    unreadable file, a syntax error, no ``[sweep]`` table or anything :func:`parse` refuses."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such sweep config file; write one with a [sweep] table "
                          f"(see `ahsar sweep --help`)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give the sweep config file (TOML or JSON)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a sweep config is a TOML or JSON file") from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                              f"fix it, or write TOML in a .toml file") from None
        table_name = '"sweep" object'
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML ({e}); fix it (a .json file is read as JSON)") from None
        table_name = "[sweep] table"
    if not isinstance(doc, dict) or not isinstance(doc.get("sweep"), dict):
        raise ConfigError(f"{path}: no {table_name}; put the `ahsar train` options under it")
    extra = [k for k in doc if k != "sweep"]
    if extra:
        raise ConfigError(f"{path}: unknown key {extra[0]!r} outside the {table_name}; every option "
                          f"goes inside it")
    return parse(doc["sweep"], str(path), path.resolve().parent)


def _as_config(config) -> SweepConfig:
    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, dict):   # a [sweep] table, or a whole document holding one
        return parse(config["sweep"] if isinstance(config.get("sweep"), dict) else config)
    return load(config)


def _label(v) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return f"{v:g}"
    return "none" if v is None else str(v)


def expand(config: "SweepConfig | dict | str | Path") -> list[Trial]:
    """The grid's trials in a deterministic order: the product of the axes, the first axis
    in the file varying slowest. ``config``: a :class:`SweepConfig`, a config file path or
    a ``[sweep]`` dict. Each trial's name lists its axis values (``method=ahsar seed=1``;
    the trial's id when there is no axis).
    Options left out keep `ahsar train`'s defaults: those it derives from the data and the
    arch (hidden, steps, batch, lr, lr_schedule: None here) are resolved by train() itself
    (train.default_options); ``pool`` "sum" is train()'s "sum_pool".
    ConfigError for a combination `ahsar train` refuses (control with a method without
    AHSAR)."""
    cfg = _as_config(config)
    opts = _train_options()
    fixed = {k: vs[0] for k, vs in cfg.options.items() if k not in cfg.axes}
    trials, seen = [], set()
    for combo in itertools.product(*(cfg.options[k] for k in cfg.axes)):
        chosen = {**fixed, **dict(zip(cfg.axes, combo))}
        v = {k: chosen.get(k, a.default) for k, a in opts.items()}
        for k in ("control", "ahsar_set"):
            if v[k] is not None and "ahsar" not in v["method"]:
                raise ConfigError(f"{cfg.source}: {k} = {v[k]!r} with method = {v['method']!r}: {k} "
                                  f"applies to AHSAR; list only methods with ahsar, or drop {k}")
        if v["ahsar_set"] is not None:
            from .train import ahsar_config
            try:
                ahsar_config(v["control"], v["ahsar_set"])
            except ValueError as e:
                where = "ahsar_set" if "ahsar_set" not in cfg.axes else \
                    f"ahsar_set[{cfg.options['ahsar_set'].index(v['ahsar_set'])}]"
                raise ConfigError(f"{cfg.source}: {where} = {v['ahsar_set']!r}: {e}") from None
        for k in LIST_OPTIONS:
            if isinstance(v[k], str):
                v[k] = [int(x) for x in v[k].split(",") if x.strip()]
        v["pool"] = f"{v['pool']}_pool"
        t = Trial.make(v, " ".join(f"{k}={_label(chosen[k])}" for k in cfg.axes) or None)
        if t.id not in seen:   # two spellings of one value train the same network once
            seen.add(t.id)
            trials.append(t)
    return trials


# -- one trial -------------------------------------------------------------------------------

def _measure_name(measure: Measure | None) -> str | None:
    return None if measure is None else f"{measure.__module__}.{measure.__qualname__}"


def _train(trial: Trial, measure: Measure | None) -> tuple[dict, dict]:
    """Train one trial in this process: (result without files, checkpoint dict)."""
    from .train import ahsar_config, train
    kw = dict(trial.args)
    control, settings = kw.pop("control"), kw.pop("ahsar_set")
    kw.update(hidden=None if kw["hidden"] is None else tuple(kw["hidden"]), channels=tuple(kw["channels"]),
              ahsar=ahsar_config(control, settings),
              progress=False)
    t0 = time.perf_counter()
    ckpt = train(**kw)
    secs = time.perf_counter() - t0
    result = {"id": trial.id, "name": trial.name, "args": trial.args,
              "test_accuracy": float(ckpt["test_accuracy"]),
              "test_rates": [float(r) for r in ckpt["test_rates"]],
              "test_dead": [float(d) for d in ckpt["test_dead"]],
              "val_accuracy": [float(e["val_accuracy"]) for e in ckpt["history"]],
              "train_seconds": secs, "checkpoint": f"trials/{trial.id}.pt"}
    if measure is not None:
        result["measured"] = measure(trial.args, ckpt)
        result["measured_by"] = _measure_name(measure)
    return result, ckpt


def _task(trial: Trial, measure: Measure | None) -> tuple[dict, dict]:
    """The Ray task: one torch thread (Ray gives the task one CPU; see the module docstring)."""
    import torch
    torch.set_num_threads(1)
    return _train(trial, measure)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _write(out: Path, result: dict, ckpt: dict) -> None:
    from . import checkpoint
    checkpoint.save(ckpt, out / result["checkpoint"])
    with interrupts.atomic_path(out / "trials" / f"{result['id']}.json") as tmp:   # last: the trial is done
        tmp.write_text(json.dumps(result, indent=1) + "\n")


def _train_here(trial: Trial, measure: Measure | None) -> tuple[dict, dict]:
    with _one_thread():
        try:
            return _train(trial, measure)
        except (ValueError, DeployError) as e:   # arguments train() refuses
            raise _trial_error(trial, e) from None


def run_trial(trial: Trial, out_dir: str | Path, measure: Measure | None = None) -> dict:
    """Train one trial here, on one torch thread, and write OUT/trials/<id>.pt and then
    <id>.json (each atomically). Returns the result dict: id, name, args, test_accuracy
    (float, 0..1, on the data's test split), test_rates (spikes per neuron per time step,
    one per layer, readout last), test_dead (fraction of neurons never firing, per layer),
    val_accuracy (per epoch), train_seconds (wall seconds of train()), checkpoint (path
    relative to OUT), and with ``measure`` its dict under "measured". Raises DeployError
    for arguments train() refuses (naming the trial), interrupts.Interrupted on a signal
    under the CLI's handlers (no file of this trial is left)."""
    result, ckpt = _train_here(trial, measure)
    _write(Path(out_dir), result, ckpt)
    return result


def _trial_name(trial: Trial) -> str:
    return trial.id if trial.name == trial.id else f"{trial.name} ({trial.id})"


def _trial_error(trial: Trial, e: BaseException) -> DeployError:
    return DeployError(f"trial {_trial_name(trial)}: {' '.join(str(e).split())}")


def _finished(out: Path, trial: Trial, measure: Measure | None) -> dict | None:
    """The stored result of a trial that is done with the same arguments, else None."""
    path = out / "trials" / f"{trial.id}.json"
    try:
        r = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); the trial runs again", path, type(e).__name__)
        return None
    if not isinstance(r, dict) or r.get("id") != trial.id or r.get("args") != trial.args:
        log.warning("%s: written for other arguments; the trial runs again", path)
        return None
    if not (out / "trials" / f"{trial.id}.pt").is_file():
        log.warning("%s: its checkpoint is missing; the trial runs again", path)
        return None
    if measure is not None and r.get("measured_by") != _measure_name(measure):
        return None
    r["name"] = trial.name   # the same training may be named differently in another grid
    return r


# -- Ray ------------------------------------------------------------------------------------

def _import_ray():
    try:
        import ray
    except ImportError:
        raise DeployError("Ray is not installed in this environment (`make install` installs it); "
                          "--serial runs the trials without it") from None
    return ray


def _ray_init(ray, address: str | None, num_cpus: int | None) -> bool:
    """Start or join Ray unless this process already has; True if this call did.

    address None: ``ray.init(address="local")``, a new local instance with num_cpus CPUs
    (default os.cpu_count()), never an instance found through RAY_ADDRESS or the last
    ``ray start``; otherwise ray.init's own resolution of ``address`` (host:port,
    ray://host:port, "auto"; RAY_DOCS). ray.init replaces the SIGTERM handler with one
    that calls sys.exit; the handlers are put back, and a SIGTERM during start-up becomes
    interrupts.Interrupted."""
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS} if main else {}
    kw = {"logging_level": logging.WARNING, "log_to_driver": True}
    try:
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **kw)
    except SystemExit as e:
        if ray.is_initialized():
            _ray_shutdown(ray)
        if e.code == signal.SIGTERM:
            raise interrupts.Interrupted(signal.SIGTERM) from None
        raise
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
        if ray.is_initialized():
            _ray_shutdown(ray)
        where = f"--address {address}" if address else "a local Ray instance"
        raise DeployError(f"{where}: Ray did not start ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                          + ("check the cluster is up (`ray status` on its head node); a cluster with token "
                             "authentication (Ray's default) needs RAY_AUTH_MODE=token and its token here"
                             if address else "--serial runs without Ray")) from None
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    return True


def _check_reachable(address: str) -> None:
    """DeployError unless something answers at a HOST:PORT address (ray://HOST:PORT too)
    within 5 s: ray.init retries an address where nothing listens for minutes, in C++,
    where Ctrl-C cannot stop it."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return   # "auto", "local", a bare host: ray.init's own resolution
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise DeployError(f"--address {address}: nothing answers at {hostport} ({e.strerror or type(e).__name__}); "
                          f"start the cluster there (`ray start --head` prints its address) or leave --address "
                          f"out for a local Ray") from None


def _ray_processes(ray) -> list:
    """The processes a local Ray instance runs under this one (GCS, raylet, agents, workers)."""
    try:
        import psutil   # Ray's own copy (ray/thirdparty_files) is importable once ray is
        home = str(Path(ray.__file__).parent)
        procs = []
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(p.cmdline())
                if cmd.startswith("ray::") or home in cmd:
                    procs.append(p)
        return procs
    except Exception:   # no psutil, or a process gone meanwhile: ray.shutdown alone
        return []


def _ray_shutdown(ray) -> None:
    """ray.shutdown(), then stop what it left: agents that were still starting when a signal
    came outlive the raylet for a minute or more (Ray 2.60, seen here)."""
    procs = _ray_processes(ray)
    ray.shutdown()
    if procs:
        import psutil
        alive = [p for p in procs if p.is_running()]
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(alive, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()


def _run_ray(todo: list[Trial], measure: Measure | None, address: str | None, num_cpus: int | None,
             done: Callable[[Trial, dict, dict], None]) -> None:
    ray = _import_ray()
    started = _ray_init(ray, address, num_cpus)
    pending: list = []
    try:
        task = ray.remote(num_cpus=1)(_task)
        refs = {task.remote(t, measure): t for t in todo}
        pending = list(refs)
        while pending:
            interrupts.check()
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in ready:
                trial = refs.pop(ref)
                try:
                    result, ckpt = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    interrupts.check()   # a worker that died of our own Ctrl-C: the signal decides
                    cause = getattr(e, "cause", None) or e
                    if isinstance(cause, (ValueError, DeployError)):   # arguments train() refuses
                        raise _trial_error(trial, cause) from None
                    raise cause from None   # a bug: the CLI's "internal error" line
                except ray.exceptions.RayError as e:
                    interrupts.check()
                    raise DeployError(f"trial {_trial_name(trial)}: Ray lost it ({type(e).__name__}: "
                                      f"{' '.join(str(e).split())[:200]})") from None
                done(trial, result, ckpt)
                del result, ckpt
    finally:
        with interrupts.held():
            for ref in pending:   # an error or a signal: stop what still runs
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if started:
                _ray_shutdown(ray)


# -- the sweep ------------------------------------------------------------------------------

def run_trials(trials: list[Trial], out_dir: str | Path, address: str | None = None, serial: bool = False,
               *, num_cpus: int | None = None, measure: Measure | None = None,
               on_result: Callable[[dict], None] | None = None, progress: bool = True,
               source: str | None = None) -> dict:
    """Run the trials not finished in ``out_dir`` (resume), write each as it finishes, then
    OUT/sweep.json and OUT/sweep.md; return sweep.json's dict: trials (result dicts in the
    given order, see :func:`run_trial`), reused and ran (trial ids), wall_seconds.

    serial=False: Ray tasks of one CPU each, on a local instance (``num_cpus``, default
    os.cpu_count()) or the cluster at ``address`` (ray.init's address, RAY_DOCS; its nodes
    need this package and the data). If this process has already called ray.init, that
    session is used and left running. serial=True: one after the other in this process.
    measure(args, checkpoint) runs where each trial trained; its dict is stored under
    "measured" (a trial stored without it runs again). on_result(result) is called here
    as each trial finishes (after its files are written); progress prints one line per
    trial to stderr. DeployError: a trial train() refuses (the sweep stops; finished
    trials are kept), Ray missing or unreachable. On SIGINT/SIGTERM (CLI) or Ctrl-C
    (library) the running trials are cancelled, Ray is shut down if this call started it,
    and the exception propagates; the finished trials' files are complete, none half-written.
    """
    if serial and address:
        raise DeployError(f"--serial runs the trials here without Ray; drop --address {address} or --serial")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DeployError(f"{out}: exists and is not a directory; give another -o")
    unique = list({t.id: t for t in trials}.values())
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    for t in unique:
        r = _finished(out, t, measure)
        if r is not None:
            results[t.id] = r
    reused = [t.id for t in unique if t.id in results]
    todo = [t for t in unique if t.id not in results]
    runner = "serial" if serial else f"Ray at {address}" if address else "local Ray"
    log.info("sweep: %d trials, %d reused from %s, %d to run (%s)", len(unique), len(reused),
             out / "trials", len(todo), runner if todo else "nothing to run")

    def done(trial: Trial, result: dict, ckpt: dict) -> None:
        _write(out, result, ckpt)
        results[trial.id] = result
        if progress:
            n = len(results) - len(reused)
            print(f"[{n}/{len(todo)}] {trial.name}: {100 * result['test_accuracy']:.2f} % "
                  f"({result['train_seconds']:.1f} s)", file=sys.stderr, flush=True)
        if on_result is not None:
            on_result(result)

    try:
        if serial:
            for t in todo:
                interrupts.check()
                result, ckpt = _train_here(t, measure)
                done(t, result, ckpt)
                del result, ckpt
        elif todo:
            _run_ray(todo, measure, address, num_cpus, done)
    except (KeyboardInterrupt, DeployError) as e:
        what = (f"interrupted by {e.signal_name}" if isinstance(e, interrupts.Interrupted) else
                "interrupted" if isinstance(e, KeyboardInterrupt) else "stopped")
        if isinstance(e, KeyboardInterrupt) or len(results) > len(reused):
            log.warning("sweep %s: %d of %d trials finished, kept in %s; the same sweep run again reuses them",
                        what, len(results), len(unique), out / "trials")
        raise
    summary = {"format": FORMAT, "version": VERSION, "config": source, "runner": runner,
               "trials": [results[t.id] for t in unique], "reused": reused, "ran": [t.id for t in todo],
               "wall_seconds": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    with interrupts.atomic_paths(out / "sweep.json", out / "sweep.md") as tmp:   # both or neither
        tmp[0].write_text(json.dumps(summary, indent=1) + "\n")
        tmp[1].write_text(table(summary))
    log.info("sweep: %d trials (%d reused, %d run) in %.1f s; wrote %s and %s", len(unique), len(reused),
             len(todo), summary["wall_seconds"], out / "sweep.json", out / "sweep.md")
    return summary


def sweep(config: "SweepConfig | dict | str | Path", out_dir: str | Path, address: str | None = None,
          serial: bool = False, *, num_cpus: int | None = None, progress: bool = True,
          on_result: Callable[[dict], None] | None = None) -> dict:
    """Run a config's grid (:func:`expand`) into ``out_dir`` (:func:`run_trials`, whose
    return value this is). ``config``: a TOML or JSON file path, a ``[sweep]`` dict or a
    :class:`SweepConfig`. address None: a local Ray on os.cpu_count() CPUs; an address
    joins that cluster (ray.init's ``address``: host:port, ray://host:port or "auto",
    https://docs.ray.io/en/latest/ray-core/api/doc/ray.init.html). serial=True: no Ray.
    ConfigError for a bad config, before anything runs or is written."""
    cfg = _as_config(config)
    return run_trials(expand(cfg), out_dir, address, serial, num_cpus=num_cpus, progress=progress,
                      on_result=on_result, source=cfg.source)


def table(summary: dict) -> str:
    """sweep.md: one row per trial, in the grid's order."""
    lines = ["| trial | id | test acc % | hidden rates | readout rate | train s | checkpoint |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["trials"]:
        lines.append(f"| {r['name']} | {r['id']} | {100 * r['test_accuracy']:.2f} | "
                     + " ".join(f"{x:.3f}" for x in r["test_rates"][:-1])
                     + f" | {r['test_rates'][-1]:.3f} | {r['train_seconds']:.1f} | {r['checkpoint']} |")
    ran, reused = len(summary["ran"]), len(summary["reused"])
    return ("\n".join(lines) + f"\n\n{len(summary['trials'])} trials: {reused} reused, {ran} run"
            + (f" ({summary['runner']})" if ran else "") + f"; config {summary['config']}\n")
