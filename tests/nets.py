"""Random and hand-made integer networks shared by the emulator tests (Lava, torch):
hypothesis strategies for dense and conv networks within Loihi's ranges (wrap-around and
saturation included), random recurrent networks with biases, and a 2-neuron loop worked
out by hand (tests/test_recurrent.py, tests/test_emulator_vs_lava.py,
tests/test_torch_emulator.py)."""
import numpy as np
from hypothesis import strategies as st

from ahsar_deploy.ir import DeployGraph, Layer
from hw_targets import LOIHI


@st.composite
def networks(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    saturate = draw(st.booleans())          # many strong inputs: u wraps, v saturates
    n_in = draw(st.integers(300, 700)) if saturate else draw(st.integers(1, 40))
    sizes = [n_in] + [draw(st.integers(1, 12)) for _ in range(draw(st.integers(1, 3)))]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lo = 0 if saturate and i == 0 else -128
        w = 2 * rng.integers(lo, 128, size=(b, a))
        vth = int(draw(st.sampled_from([1, 2, 100, 1000, 131071, int(rng.integers(1, 131072))])))
        layers.append(Layer(name=f"l{i}", weight=w, threshold=np.ones(b), vth=vth,
                            i_decay=draw(st.sampled_from([1, 4096, int(rng.integers(1, 4097))])),
                            v_decay=draw(st.sampled_from([0, 4095, int(rng.integers(0, 4096))]))))
    steps = draw(st.integers(2, 10))
    samples = draw(st.integers(1, 4))
    p = 0.9 if saturate else draw(st.floats(0.05, 0.8))
    x = rng.random((samples, steps, n_in)) < p
    g = DeployGraph(layers=tuple(layers), n_inputs=n_in, steps=steps, dataset="random",
                    encoding="random", method="baseline", source_sha256="", target="loihi")
    return g, x


@st.composite
def conv_networks(draw):
    """A conv layer (random kernel, stride, padding, non-square maps) then a dense readout."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9))
    kh, kw = draw(st.integers(1, min(h, 4))), draw(st.integers(1, min(w, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    c_out = draw(st.integers(1, 4))
    conv = Layer(name="c0", weight=2 * rng.integers(-60, 128, size=(c_out, c, kh, kw)), threshold=np.ones(c_out),
                 kind="conv", in_shape=(c, h, w), stride=stride, padding=padding,
                 vth=int(draw(st.sampled_from([1, 50, 300, int(rng.integers(1, 2000))]))),
                 i_decay=draw(st.sampled_from([1, 4096, int(rng.integers(1, 4097))])),
                 v_decay=draw(st.sampled_from([0, 4095, int(rng.integers(0, 4096))])))
    dense = Layer(name="d1", weight=2 * rng.integers(-128, 128, size=(3, conv.n_out)), threshold=np.ones(3),
                  vth=int(rng.integers(1, 500)), i_decay=1024, v_decay=512)
    steps = draw(st.integers(2, 6))
    x = rng.random((draw(st.integers(1, 3)), steps, c * h * w)) < draw(st.floats(0.1, 0.8))
    g = DeployGraph(layers=(conv, dense), n_inputs=c * h * w, steps=steps, dataset="random",
                    encoding="random", method="baseline", source_sha256="", target="loihi")
    return g, x


def _graph(*layers, steps, n_inputs=None, target="loihi"):
    return DeployGraph(layers=tuple(layers), n_inputs=n_inputs or layers[0].n_in, steps=steps, dataset="",
                       encoding="rate", method="baseline", source_sha256="", target=target)


# ---- (a) a 2-neuron loop with a bias, worked out by hand ------------------------------
# One input spiking at steps 0-3, into neuron 0 (weight 4). Neuron 0 excites neuron 1
# through the loop (R[1, 0] = 6), neuron 1 inhibits neuron 0 (R[0, 1] = -2). Bias
# b = [0, 3]. i_decay 4096: u holds this step's input only; v_decay 2048: v keeps half
# (truncated toward zero). vth 5. Lava's units: every input, bias and threshold << 6.
#   t  x  recurrent in (R s[t-1])  u = 64 a       v = v/2 + u + 64 b    spikes (v > 320)
#   0  1  [0, 0]                   [256, 0]      [256, 192]           -
#   1  1  [0, 0]                   [256, 0]      [384, 288]           n0 -> v0 = 0
#   2  1  [0, 6]     (s0 at 1)     [256, 384]    [256, 720]           n1 -> v1 = 0
#   3  1  [-2, 0]    (s1 at 2)     [128, 0]      [256, 192]           -
#   4  0  [0, 0]                   [0, 0]        [128, 288]           -
#   5  0  [0, 0]                   [0, 0]        [64, 336]            n1 -> v1 = 0 (bias alone)
#   6  0  [-2, 0]    (s1 at 5)     [-128, 0]     [-96, 192]           -
#   7  0  [0, 0]                   [0, 0]        [-48, 288]           -
HAND_X = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool).reshape(1, 8, 1)
HAND_SPIKES = np.zeros((1, 8, 2), dtype=bool)
HAND_SPIKES[0, 1, 0] = HAND_SPIKES[0, 2, 1] = HAND_SPIKES[0, 5, 1] = True


def _hand_layer():
    return Layer(name="loop", weight=np.array([[4], [0]]), threshold=np.ones(2), vth=5, i_decay=4096,
                 v_decay=2048, recurrent=np.array([[0, -2], [6, 0]]), bias=np.array([0, 3]))


def _random_net(seed: int):
    """2-3 dense layers, each recurrent or not, with or without bias; some strong (u wraps,
    v saturates); a few samples, biases big enough to fire on the last step (so a spike
    that leaked from one sample into the next would show)."""
    rng = np.random.default_rng(seed)
    strong = seed % 3 == 0
    n_in = int(rng.integers(300, 500)) if strong else int(rng.integers(1, 20))
    sizes = [n_in] + [int(rng.integers(1, 9)) for _ in range(int(rng.integers(2, 4)))]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lo = 0 if strong and i == 0 else -128
        rec = 2 * rng.integers(-128, 128, size=(b, b)) if (seed + i) % 4 != 3 else None
        if rec is not None and seed % 5 == 1:
            rec = -np.abs(rec)                          # an inhibitory-only loop
        layers.append(Layer(
            name=f"l{i}", weight=2 * rng.integers(lo, 128, size=(b, a)), threshold=np.ones(b),
            vth=int(rng.choice([1, 100, 1000, int(rng.integers(1, 5000))])),
            i_decay=int(rng.choice([1, 4096, int(rng.integers(1, 4097))])),
            v_decay=int(rng.choice([0, 4095, int(rng.integers(0, 4096))])), recurrent=rec,
            bias=rng.integers(-LOIHI.bias_max - 1, LOIHI.bias_max + 1, size=b) if (seed + i) % 3 else None))
    steps = int(rng.integers(3, 9))
    x = rng.random((int(rng.integers(2, 5)), steps, n_in)) < (0.9 if strong else rng.uniform(0.1, 0.7))
    return _graph(*layers, steps=steps), x


def _conv_then_recurrent(seed: int):
    rng = np.random.default_rng(seed)
    conv = Layer(name="c0", weight=2 * rng.integers(-60, 128, size=(2, 2, 3, 3)), threshold=np.ones(2), kind="conv",
                 in_shape=(2, 5, 4), padding=(1, 1), vth=200, i_decay=1024, v_decay=512)
    dense = Layer(name="d1", weight=2 * rng.integers(-128, 128, size=(4, conv.n_out)), threshold=np.ones(4),
                  vth=300, i_decay=2048, v_decay=1024, recurrent=2 * rng.integers(-128, 128, size=(4, 4)),
                  bias=rng.integers(-50, 150, size=4))
    x = rng.random((3, 5, 40)) < 0.4
    return _graph(conv, dense, steps=5, n_inputs=40), x
