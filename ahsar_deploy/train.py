"""Surrogate-gradient training of CUBA-LIF networks; threshold methods and AHSAR as plug-ins."""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import checks, interrupts, kernels
from . import data as datamod
from .checkpoint import make_checkpoint
from .regulator import AHSARConfig
from .snn import NEURONS, SNN, cnn_specs, mlp_specs, split_method

log = logging.getLogger(__name__)
ARCHS = ("mlp", "cnn", "rnn")   # rnn: dense hidden layers with recurrent weights (snn.py)
ROUSER_MIN_THETA = 0.05   # learnable thresholds are kept positive so they stay foldable
WIDE_INPUT = 784   # input features from which default_options picks the wide-input set (28x28 images)


def default_options(n_features: int, arch: str = "mlp") -> dict:
    """`ahsar train`'s values for the options left unset (None), by input size and arch.

    Inputs of WIDE_INPUT features or more (28x28 images: mnist, fmnist): one hidden layer
    of 1000 for mlp, 8 time steps, batch 128, Adam 1e-3 with a cosine schedule (the mlp
    with AHSAR deploys at 97.8 % on MNIST after 5 epochs: benchmarks/train_defaults.py).
    Smaller inputs (digits, sdigits, smnist's rows): mlp 128,64, 16 steps, batch 64, Adam
    2e-3 constant (the demo's network). rnn: one hidden layer of 128; cnn: no dense layer
    after the convolutions. Spike data keeps its own number of steps (train() checks it).
    """
    wide = n_features >= WIDE_INPUT
    return {"hidden": {"mlp": (1000,) if wide else (128, 64), "rnn": (128,)}.get(arch, ()),
            "steps": 8 if wide else 16, "batch": 128 if wide else 64, "lr": 1e-3 if wide else 2e-3,
            "lr_schedule": "cosine" if wide else "constant"}


def evaluate(model: SNN, x: np.ndarray, y: np.ndarray, steps: int, encoding: str = "rate",
             batch: int = 500, each=None) -> dict:
    """Loss, accuracy, per-layer mean rate and fraction of never-firing neurons of the
    float model on a split (inputs encoded once, as every backend sees them).
    each: if given, called after every batch with the readout counts (B, C) and the
    per-layer spikes [(B, T, n)] (float32 tensors), e.g. to keep them
    (benchmarks/robustness.py)."""
    model.eval()
    losses, correct = 0.0, 0
    sums = [0.0] * len(model.layers)
    fired = [None] * len(model.layers)
    enc = datamod.encode(x, steps, encoding)
    with torch.no_grad():
        for i in range(0, len(x), batch):
            interrupts.check()
            xb = torch.from_numpy(enc[i:i + batch]).float()
            yb = torch.from_numpy(np.array(y[i:i + batch]))   # a copy: y may be a read-only memory map
            counts, spikes = model(xb)
            if each is not None:
                each(counts, spikes)
            losses += float(F.cross_entropy(counts, yb, reduction="sum"))
            correct += int((counts.argmax(1) == yb).sum())
            for l, s in enumerate(spikes):
                sums[l] += float(s.sum())
                any_ = s.amax(dim=(0, 1)) > 0
                fired[l] = any_ if fired[l] is None else fired[l] | any_
    n = len(x)
    return {"loss": losses / n, "accuracy": correct / n,
            "rates": [s / (n * steps * k) for s, k in zip(sums, model.sizes[1:])],
            "dead": [float(1 - f.float().mean()) for f in fired]}


def train(data: str = "digits", method: str = "ahsar", arch: str = "mlp",
          hidden: tuple[int, ...] | None = (128, 64), steps: int | None = None, epochs: int = 30,
          seed: int = 0, lr: float | None = 2e-3, batch: int | None = 64, encoding: str = "rate",
          ahsar: AHSARConfig | None = None, theta0: float | None = None,
          channels: tuple[int, ...] = (8, 16), pool: str = "sum_pool",
          train_samples: int | None = None, lr_schedule: str | None = "constant",
          augment_shift: int = 0, bias: bool = False, i_decay: int = 1024, v_decay: int = 512,
          progress: bool = True, neuron: str = "loihi") -> dict:
    """Train and return a checkpoint dict (see checkpoint.make_checkpoint).

    theta0 overrides the initial threshold of every layer (to start from badly chosen
    thresholds); train_samples limits the training split (for quick runs); lr_schedule
    "cosine" anneals the learning rate to 0 over the epochs (per batch); augment_shift > 0
    translates each training image by up to that many pixels per axis (data.shift).
    arch "rnn": the hidden layers are dense with recurrent weights (snn.mlp_specs), the
    readout dense and feed-forward; bias: a trainable per-neuron bias in every dense
    layer (mlp, rnn; ValueError for cnn); i_decay, v_decay: Loihi's decay registers
    0..4096 of every layer (snn.py), ValueError outside.
    data: a built-in name or an .npz file (data.load_file); steps: time steps per sample,
    or the file's own T for spike data (another value is refused).
    hidden, steps, lr, batch, lr_schedule None: default_options' values for the data's
    input size and the arch (what `ahsar train` passes when they are not given); the
    keyword defaults of hidden, lr, batch and lr_schedule here are the small-input ones.
    neuron: "loihi" (reset to zero, one spike per step) or "xylo" (Xylo Audio 2's neuron:
    reset by subtraction, up to 31 events per step in hidden layers, 1 in the readout;
    snn.py NEURONS); xylo is for mlp and rnn, not cnn or hoyer (ValueError). With xylo,
    rates (and AHSAR's band) are events per neuron per step.
    steps, epochs, batch, train_samples below 1 or augment_shift below 0: DeployError, as
    `ahsar train` refuses them (checks.train_args). Training labels must be 0..C-1, each
    present (data.check_labels); a cnn takes images (N, C, H, W), and channels-last
    (N, H, W, C) ones are refused naming the transpose (data.check_image_layout).
    """
    checks.train_args(steps=steps, epochs=epochs, batch=batch, augment_shift=augment_shift,
                      train_samples=train_samples)
    if lr_schedule not in ("constant", "cosine", None):
        raise ValueError(f"unknown learning-rate schedule {lr_schedule!r}: constant or cosine")
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    base, _ = split_method(method)
    ds = datamod.load(data)
    auto = default_options(ds.n_features, arch)
    hidden = auto["hidden"] if hidden is None else hidden
    batch = auto["batch"] if batch is None else batch
    lr = auto["lr"] if lr is None else lr
    lr_schedule = auto["lr_schedule"] if lr_schedule is None else lr_schedule
    if ds.steps is not None:
        if steps not in (None, ds.steps):
            raise datamod.DatasetError(f"{data}: its spikes have {ds.steps} time steps; --steps {steps} "
                                       f"cannot change them (omit --steps)")
        if augment_shift:
            raise datamod.DatasetError(f"{data}: --augment-shift shifts images, not spike data")
    steps = ds.steps or steps or auto["steps"]
    if ds.n_classes < 2:
        raise datamod.DatasetError(f"{ds.name}: one class only in the training labels; a classifier needs at least 2")
    if bias and arch == "cnn":
        raise ValueError("--bias is for dense layers (mlp, rnn); the cnn has none")
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron model {neuron!r}: choose one of {', '.join(NEURONS)}")
    if neuron != "loihi" and (arch == "cnn" or base == "hoyer"):
        raise ValueError(f"--neuron {neuron} is for --arch mlp or rnn with baseline or rouser thresholds "
                         f"(+ahsar), not {arch if arch == 'cnn' else 'hoyer'}")
    for name, d in (("i_decay", i_decay), ("v_decay", v_decay)):
        if not 0 <= d <= 4096:
            raise ValueError(f"{name} {d} outside Loihi's decay range 0..4096")
    if arch == "cnn" and len(ds.shape) != 3:
        raise datamod.DatasetError(f"{ds.name}: --arch {arch} needs images, x of shape (N, C, H, W) (or spikes "
                                   f"(N, T, C, H, W)); these samples have {ds.n_features} features, no shape")
    if arch == "cnn":
        datamod.check_image_layout(ds.shape, ds.name, spikes=ds.steps is not None)
    datamod.check_labels(ds.train.y, f"{ds.name}: training")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if arch != "cnn":
        model = SNN(method=method, ahsar=ahsar, input_shape=(ds.n_features,), i_decay=i_decay,
                    v_decay=v_decay, specs=mlp_specs([ds.n_features, *hidden, ds.n_classes],
                                                     recurrent=arch == "rnn", bias=bias), neuron=neuron)
    else:
        model = SNN(method=method, ahsar=ahsar, input_shape=ds.shape, i_decay=i_decay, v_decay=v_decay,
                    specs=cnn_specs(channels, pool=pool, hidden=hidden, n_classes=ds.n_classes,
                                    # 8x8 digits: 3x3 'same' kernels; 28x28: 5x5 'valid'
                                    **({"kernel": 3, "padding": 1} if ds.shape[1] < 16 else {})))
    if theta0 is not None:
        with torch.no_grad():
            for layer in model.layers:
                layer.theta_base.fill_(theta0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    x_tr, y_tr = ds.train.x, ds.train.y
    if train_samples is not None:
        x_tr, y_tr = x_tr[:train_samples], y_tr[:train_samples]
    total_batches = epochs * -(-len(y_tr) // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda b: 0.5 * (1 + np.cos(np.pi * b / total_batches))) if lr_schedule == "cosine"
        else (lambda b: 1.0))
    log.info("training %s %s on %s (%d samples, %d steps, %s), %d epochs, batch %d, Adam %g %s, seed %d%s",
             arch, "-".join(map(str, model.sizes)), ds.name, len(y_tr), steps,
             "spikes as given" if ds.steps is not None else f"{encoding} coding", epochs, batch, lr,
             lr_schedule, seed, "" if model.regulator is None else
             f", AHSAR {model.regulator.config.summary() or 'defaults'}")
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x_tr))
        total, n = 0.0, 0
        bar = tqdm(range(0, len(order), batch), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   leave=False, disable=None if progress else True)   # None: only on a terminal
        for i in bar:
            interrupts.check()
            idx = order[i:i + batch]
            xb = datamod.encode(datamod.shift(x_tr[idx], ds.shape, augment_shift, rng), steps,
                                encoding, seed=int(rng.integers(1 << 31)))
            counts, _ = model(torch.from_numpy(xb).float())
            loss = F.cross_entropy(counts, torch.from_numpy(y_tr[idx])) + model.hoyer_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if base == "rouser":
                with torch.no_grad():
                    for layer in model.layers:
                        layer.theta_base.clamp_(min=ROUSER_MIN_THETA)
            total += loss.item() * len(idx)
            n += len(idx)
            if i // batch % 20 == 0:
                bar.set_postfix(loss=f"{total / n:.3f}")
        val = evaluate(model, ds.val.x, ds.val.y, steps, encoding)
        entry = {"epoch": epoch + 1, "train_loss": total / n, "val_loss": val["loss"],
                 "val_accuracy": val["accuracy"], "rates": val["rates"], "dead": val["dead"],
                 "thresholds_mean": [float(t.mean()) for t in model.thresholds()]}
        if model.regulator is not None:
            reg = model.regulator
            reg.end_epoch(float(np.mean(val["rates"][:-1])), val["loss"], epoch + 1 < epochs)
            entry["h"] = [float(v) for v in reg.h]
            entry["scales"] = [float(v) for v in torch.exp(reg.log_s)]
            entry["gain"] = float(torch.exp(reg.log_g))
        history.append(entry)
        log.info("epoch %d/%d  train loss %.4f  val loss %.4f  val acc %.2f %%  rates %s",
                 epoch + 1, epochs, total / n, val["loss"], 100 * val["accuracy"],
                 " ".join(f"{r:.3f}" for r in val["rates"]))
    test = evaluate(model, ds.test.x, ds.test.y, steps, encoding)
    log.info("float model test accuracy %.2f %% (%d samples)", 100 * test["accuracy"], len(ds.test.y))
    return make_checkpoint(model, data=ds, steps=steps, seed=seed, history=history,
                           test_accuracy=test["accuracy"], test_rates=test["rates"],
                           encoding=encoding,
                           extra={"test_dead": test["dead"], "kernels": kernels.state(),
                                  "train": {"arch": arch, "lr": lr, "batch": batch, "epochs": epochs,
                                            "theta0": theta0, "train_samples": len(y_tr),
                                            "lr_schedule": lr_schedule,
                                            "augment_shift": augment_shift, "bias": bias}})


def ahsar_config(control: str | None = None, settings: str | None = None) -> AHSARConfig | None:
    """The AHSAR config `ahsar train --control C --ahsar-set KEY=VALUE,...` asks for: None
    (the method's default) when neither is given, else the default config with the control
    mode switched and the settings applied (AHSARConfig.parse). ValueError, one line, for a
    bad setting or a control mode given both ways."""
    if control is None and not settings:
        return None
    if control is not None and "control" in AHSARConfig.items(settings or ""):
        raise ValueError(f"the control mode is given twice (control {control} and in the settings "
                         f"{settings!r}): give it once")
    base = AHSARConfig() if control is None else replace(AHSARConfig(), control=control)
    return AHSARConfig.parse(settings or "", base)
