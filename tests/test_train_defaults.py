"""`ahsar train`'s defaults are the ones the README and --help state: by input size
(28x28 images and up: the wide MNIST network; digits: the demo's network, unchanged)."""
from ahsar_deploy import cli, data
from ahsar_deploy.train import WIDE_INPUT, default_options

MNIST = {"hidden": (1000,), "steps": 8, "batch": 128, "lr": 1e-3, "lr_schedule": "cosine"}
DIGITS = {"hidden": (128, 64), "steps": 16, "batch": 64, "lr": 2e-3, "lr_schedule": "constant"}


def test_parser_leaves_data_dependent_options_to_the_data():
    a = cli.parser().parse_args(["train", "--data", "mnist"])
    assert (a.method, a.arch, a.epochs, a.encoding, a.augment_shift, a.seed) == ("ahsar", "mlp", 20, "rate", 0, 0)
    assert all(getattr(a, k) is None for k in MNIST)   # resolved from the data's input size


def test_defaults_by_input_size():
    assert data.load("mnist").n_features == WIDE_INPUT
    assert default_options(data.load("mnist").n_features, "mlp") == MNIST
    assert default_options(data.load("digits").n_features, "mlp") == DIGITS   # `make demo`'s network
    assert default_options(WIDE_INPUT, "cnn")["hidden"] == () and default_options(64, "rnn")["hidden"] == (128,)


def test_cmd_train_passes_unset_options_as_none(monkeypatch, tmp_path):
    """What the CLI hands train() for `ahsar train --data mnist`; train() resolves the Nones."""
    import ahsar_deploy.checkpoint
    import ahsar_deploy.train
    got = {}
    monkeypatch.setattr(ahsar_deploy.train, "train",
                        lambda **kw: got.update(kw) or {"test_accuracy": 0.0, "test_rates": []})
    monkeypatch.setattr(ahsar_deploy.checkpoint, "save", lambda ckpt, path: None)
    assert cli.main(["train", "--data", "mnist", "-o", str(tmp_path / "m.pt"), "-q"]) == 0
    assert all(got[k] is None for k in MNIST) and got["epochs"] == 20
    got.clear()
    assert cli.main(["train", "--data", "mnist", "--hidden", "64", "--batch", "32", "-o", str(tmp_path / "m.pt"),
                     "-q"]) == 0
    assert got["hidden"] == (64,) and got["batch"] == 32 and got["lr"] is None


def test_readme_recipe_is_the_defaults_plus_shift(monkeypatch, tmp_path):
    """`ahsar train --data mnist --augment-shift 1` (README, 98.6 %) trains what the long
    form trains once train() fills the unset options from default_options."""
    import ahsar_deploy.checkpoint
    import ahsar_deploy.train
    calls = []
    monkeypatch.setattr(ahsar_deploy.train, "train",
                        lambda **kw: calls.append(kw) or {"test_accuracy": 0.0, "test_rates": []})
    monkeypatch.setattr(ahsar_deploy.checkpoint, "save", lambda ckpt, path: None)
    out = ["-o", str(tmp_path / "m.pt"), "-q"]
    assert cli.main(["train", "--data", "mnist", "--augment-shift", "1", *out]) == 0
    assert cli.main(["train", "--data", "mnist", "--method", "ahsar", "--arch", "mlp", "--hidden", "1000",
                     "--steps", "8", "--batch", "128", "--lr", "1e-3", "--lr-schedule", "cosine",
                     "--augment-shift", "1", "--epochs", "20", *out]) == 0
    short, long = ({k: (MNIST[k] if v is None and k in MNIST else v) for k, v in c.items()} for c in calls)
    assert short == long


def test_train_resolves_none_as_the_cli_does():
    from ahsar_deploy.train import train
    ckpt = train(data="digits", hidden=None, steps=None, lr=None, batch=None, lr_schedule=None,
                 epochs=1, train_samples=100, progress=False)
    assert ckpt["arch"]["sizes"] == [64, 128, 64, 10] and ckpt["data"]["steps"] == 16
    assert (ckpt["train"]["batch"], ckpt["train"]["lr"], ckpt["train"]["lr_schedule"]) == (64, 2e-3, "constant")
