"""Property: the integer emulator's spikes equal Lava's fixed-point simulation's at every
layer and time step, for random small networks, inputs and integer parameters within
Loihi's ranges, including current wrap-around and voltage saturation."""
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters import lava
from nets import conv_networks, networks


def _cases(tmp_path, nets):
    cases = []
    for graph, x in nets:
        build = Path(tempfile.mkdtemp(dir=tmp_path))     # examples share tmp_path; inputs may repeat
        lava.write_netx(graph, build / "model.net")
        cases.append((build, graph, x))
    return cases


# 3 examples of 4 networks: 12 networks, one Lava worker per example (start-up is most of its time)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(networks(), min_size=4, max_size=4))
def test_emulator_equals_lava(tmp_path, lava_equals_emulator_many, nets):
    lava_equals_emulator_many(_cases(tmp_path, nets))


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(conv_networks(), min_size=3, max_size=3))
def test_conv_emulator_equals_lava(tmp_path, lava_equals_emulator_many, nets):
    lava_equals_emulator_many(_cases(tmp_path, nets))
