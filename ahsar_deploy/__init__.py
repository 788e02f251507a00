"""ahsar-deploy: deploy threshold-regulated (AHSAR) spiking networks to neuromorphic chips.

The public Python API (each name is imported on first use, so `import ahsar_deploy`
stays light and the CLI installs its signal handlers early):

- export, run, energy, inspect: the CLI's stages, on files or in-memory objects (api.py);
- AHSAR, AHSARConfig: the regulator (regulator.py);
- attach, Attached, annotate_nir: AHSAR on snnTorch / norse / any module with a threshold,
  and its NIR metadata (regulate.py);
- from_arrays, load_data, bin_events: datasets from numpy arrays, names or .npz files, and
  event streams binned with tonic (data.py);
- DeployError: the base of every one-line error this package raises (errors.py).
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ahsar-deploy")
except PackageNotFoundError:   # run from a source tree that was never installed
    __version__ = "0+unknown"

_PUBLIC = {
    "export": ("api", "export"), "run": ("api", "run"), "energy": ("api", "energy"),
    "inspect": ("api", "inspect"),
    "AHSAR": ("regulator", "AHSAR"), "AHSARConfig": ("regulator", "AHSARConfig"),
    "attach": ("regulate", "attach"), "Attached": ("regulate", "Attached"),
    "annotate_nir": ("regulate", "annotate_nir"),
    "from_arrays": ("data", "from_arrays"), "load_data": ("data", "load"),
    "bin_events": ("data", "bin_events"),
    "DeployError": ("errors", "DeployError"),
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ahsar_deploy' has no attribute {name!r}")
    module, attr = _PUBLIC[name]
    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
