"""Lava imports on Python 3.11 through ahsar_deploy.lava_compat and runs a LIF network."""
import numpy as np

import ahsar_deploy.lava_compat  # noqa: F401
from ahsar_deploy.emulator import layer_int
from ahsar_deploy.ir import Layer


def test_var_model_fields_get_fresh_defaults():
    from lava.magma.compiler.var_model import ByteEncoder, CoreEncoder
    a, b = (CoreEncoder.__dataclass_fields__[k] for k in ("x", "y"))
    assert a.default_factory() == ByteEncoder() and a.default_factory() is not b.default_factory()


def test_lava_dense_lif_fixed_point_matches_integer_model():
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    rng = np.random.default_rng(1)
    n_in, n_out, steps = 12, 6, 40
    w = 2 * rng.integers(-60, 100, size=(n_out, n_in))
    x = (rng.random((steps, n_in)) < 0.3).astype(np.int32)
    src = Source(data=np.vstack([x, np.zeros((2, n_in), np.int32)]).T.copy())
    dense = Dense(weights=w)
    lif = LIF(shape=(n_out,), du=1023, dv=300, vth=150, bias_mant=0)
    sink = Sink(shape=(n_out,), buffer=steps + 2)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        lif.run(condition=RunSteps(num_steps=steps + 2), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        got = sink.data.get().T[1:steps + 1] != 0   # one step of delay through Dense
    finally:
        lif.stop()
    layer = Layer(name="l", weight=w, threshold=np.ones(n_out), i_decay=1024, v_decay=300, vth=150)
    want = layer_int(layer, x[None].astype(bool))[0]
    assert want.sum() > 10, "test network should spike"
    np.testing.assert_array_equal(got, want)
