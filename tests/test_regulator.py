"""AHSAR (METHODS.md section 1) on hand-computed cases."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ahsar_deploy import checkpoint
from ahsar_deploy.regulator import AHSAR, AHSARConfig
from ahsar_deploy.snn import SNN


def test_no_parameters_added():
    assert list(AHSAR(3).parameters()) == []
    a, b = SNN([8, 6, 4, 3], method="ahsar"), SNN([8, 6, 4, 3], method="baseline")
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


def test_one_integral_step_by_hand():
    reg = AHSAR(1)
    reg.observe([0.35])
    h = 0.9 * 0.15 + 0.1 * 0.35                     # 0.17
    e = (h - 0.15) / 0.10                           # 0.2, no neighbours
    assert float(reg.h[0]) == pytest.approx(h, abs=1e-15)
    assert float(reg.log_s[0]) == pytest.approx(0.02 * math.tanh(e), abs=1e-15)


def test_diffusion_by_hand():
    reg = AHSAR(3)
    reg.h.copy_(torch.tensor([0.25, 0.15, 0.05], dtype=torch.float64))
    e = np.array([1.0, 0.0, -1.0])
    want = [0.75 * e[0] + 0.25 * e[1], 0.75 * e[1] + 0.25 * (e[0] + e[2]) / 2, 0.75 * e[2] + 0.25 * e[1]]
    np.testing.assert_allclose(reg.deviations().numpy(), want, atol=1e-12)


@pytest.mark.parametrize("rate,sign", [(1.0, 1), (0.0, -1)])
def test_integral_scale_bounded_and_signed(rate, sign):
    reg = AHSAR(2)
    for _ in range(2000):
        reg.observe([rate, rate])
    assert torch.all(torch.sign(reg.log_s) == sign)          # too active -> higher threshold
    np.testing.assert_allclose(reg.log_s.abs().numpy(), math.log(4.0))   # clipped at S = 4


def test_proportional_scale_bounded():
    reg = AHSAR(1, AHSARConfig(control="proportional"))
    for _ in range(500):
        reg.observe([1.0])
    s = float(reg.scales()[0])
    h = 1 - 0.85 * 0.9 ** 500                               # h -> r = 1
    assert s == pytest.approx(1.5 ** math.tanh((h - 0.15) / 0.1), rel=1e-12) and 1.0 < s <= 1.5


def test_global_gain_by_hand():
    reg = AHSAR(1)
    reg.end_epoch(val_rate=0.35, val_loss=1.0, another_epoch_follows=True)   # first epoch: pi = 1
    assert float(reg.log_g) == 0.0
    reg.end_epoch(val_rate=0.35, val_loss=1.0, another_epoch_follows=True)   # stalled: pi = 0
    assert float(reg.log_g) == pytest.approx(0.05 * math.tanh(2.0), abs=1e-15)
    before = float(reg.log_g)
    reg.end_epoch(val_rate=0.35, val_loss=1.0, another_epoch_follows=False)  # last epoch: frozen
    assert float(reg.log_g) == before


def test_readout_unregulated_and_eval_frozen():
    torch.manual_seed(0)
    model = SNN([8, 6, 4, 3], method="ahsar")
    model.regulator.log_s.fill_(0.5)
    th = model.thresholds()
    assert torch.all(th[-1] == 1.0) and torch.allclose(th[0], torch.full((6,), math.exp(0.5), dtype=torch.float64))
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model((torch.rand(5, 4, 8) < 0.5).float())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_gradients_identical_with_regulation_on_or_off():
    torch.manual_seed(0)
    reg = SNN([8, 6, 4, 3], method="ahsar")
    reg.regulator.log_s.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))
    base = SNN([8, 6, 4, 3], method="baseline")
    base.load_state_dict({k: v for k, v in reg.state_dict().items() if not k.startswith("regulator")})
    for layer, th in zip(base.layers, reg.thresholds()):
        layer.theta_base.copy_(th)                     # same effective thresholds
    x = (torch.rand(5, 6, 8) < 0.6).float()
    y = torch.tensor([0, 1, 2, 0, 1])
    for m in (reg, base):
        m.train()
        F.cross_entropy(m(x)[0], y).backward()
    for p, q in zip(reg.parameters(), base.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_state_restored_exactly_from_checkpoint(small_model):
    ckpt = checkpoint.load(small_model)
    model = checkpoint.build_model(ckpt)
    for k in ("h", "log_s", "log_g"):
        assert torch.equal(model.regulator.state_dict()[k], ckpt["state_dict"][f"regulator.{k}"])
    assert [t.tolist() for t in model.thresholds()] == ckpt["thresholds"]


def test_settings_parse_and_refuse_in_one_line():
    c = AHSARConfig.parse("r_lo=0.02, r_hi=0.1,eta_g=0,control=proportional")
    assert (c.r_lo, c.r_hi, c.eta_g, c.control, c.diffusion) == (0.02, 0.1, 0.0, "proportional", 0.25)
    assert AHSARConfig.parse("", AHSARConfig(k=2.0)) == AHSARConfig(k=2.0)
    for spec, words in (("band=1", "KEY one of r_lo"), ("r_lo", "KEY=VALUE"), ("mu=fast", "mu takes a number"),
                        ("r_lo=0.3", "r_lo < r_hi"), ("mu=1", "mu=1 outside"), ("control=pid", "integral or"),
                        ("g_min=1.5", "g_min <= 1"), ("eta_s=-1", "eta_s=-1 is negative"),
                        ("eta_s=nan", "eta_s=nan is not a finite"), ("r_hi=inf", "r_hi=inf is not a finite"),
                        ("energy=0.1,energy=0.2", "energy given twice")):
        with pytest.raises(ValueError, match=words) as e:
            AHSARConfig.parse(spec)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="s_min=0.25, s_max=0.5 need 0 < s_min <= 1 <= s_max"):
        AHSAR(2, AHSARConfig(s_max=0.5))


def test_energy_moves_the_setpoint_by_hand():
    """energy = lambda: the regulation steers to c - lambda*w; lambda = 0 is the rule as before."""
    assert AHSARConfig().setpoint == pytest.approx(0.15) and AHSARConfig(energy=1.0).setpoint == pytest.approx(0.05)
    reg = AHSAR(1, AHSARConfig(energy=0.5))                 # setpoint 0.15 - 0.5*0.1 = 0.10
    assert float(reg.h[0]) == pytest.approx(0.10, abs=1e-15)
    reg.observe([0.15])
    h = 0.9 * 0.10 + 0.1 * 0.15                             # 0.105
    assert float(reg.log_s[0]) == pytest.approx(0.02 * math.tanh((h - 0.10) / 0.10), abs=1e-15)
    same = AHSAR(1)
    same.observe([0.2])                                     # the default at the same deviation
    assert float(same.log_s[0]) == pytest.approx(0.02 * math.tanh((0.155 - 0.15) / 0.10), abs=1e-15)
    reg.end_epoch(0.3, 1.0, True)
    reg.end_epoch(0.3, 1.0, True)                           # stalled: pushed toward the setpoint 0.10
    assert float(reg.log_g) == pytest.approx(0.05 * math.tanh((0.3 - 0.10) / 0.10), abs=1e-15)


def test_raise_only_never_lowers_a_threshold():
    """s_min = 1: a quiet layer keeps its threshold (log s stays 0), an active one still rises."""
    reg = AHSAR(2, AHSARConfig(s_min=1.0, diffusion=0.0))
    for _ in range(300):
        reg.observe([0.0, 0.5])
    assert float(reg.log_s[0]) == 0.0 and 0 < float(reg.log_s[1]) <= math.log(4.0)
    low = AHSAR(1, AHSARConfig(s_min=0.5))
    for _ in range(2000):
        low.observe([0.0])
    assert float(low.log_s[0]) == pytest.approx(math.log(0.5), abs=1e-15)


def test_settings_spell_a_config_once():
    """settings() is the canonical --ahsar-set string: parse(settings()) gives the config
    back, and equal configs have equal strings however they were written."""
    for spec in ("energy=0.50", " s_min=1 , energy=0.5", "energy=0.5,s_min=1,r_hi=0.25"):
        c = AHSARConfig.parse(spec)
        assert AHSARConfig.parse(c.settings()) == c
    assert AHSARConfig.parse("energy=0.50,s_max=1e6").settings() == "s_max=1000000,energy=0.5"
    assert AHSARConfig.parse("energy=0,s_min=0.25").settings() is None


def test_proportional_scale_keeps_the_scale_bounds():
    reg = AHSAR(1, AHSARConfig(control="proportional", s_min=1.0))
    reg.observe([0.0])                                      # too quiet: would lower the threshold
    assert float(reg.log_s[0]) == 0.0


def test_summary_is_the_whole_ahsar_set_string():
    """summary(): None for the defaults, the control mode first when it is not integral,
    then settings(); parse(summary()) gives the config back."""
    assert AHSARConfig().summary() is None
    assert AHSARConfig(control="proportional").summary() == "control=proportional"
    cfg = AHSARConfig(control="proportional", k=2.0, r_lo=0.02)
    assert cfg.summary() == "control=proportional,r_lo=0.02,k=2"
    assert AHSARConfig.parse(cfg.summary()) == cfg
    assert AHSARConfig(energy=0.5).summary() == "energy=0.5"


def test_global_gain_progress_with_zero_and_negative_best_loss():
    """pi = clip((L_best - L_val) / (0.01 |L_best|), 0, 1): a best loss of 0 (no division by
    zero: only a drop below 0 is progress) and a negative one (a user's loss through
    regulate.py) keep pi's meaning, a drop is progress and a rise is a stall."""
    step = 0.05 * math.tanh(2.0)                              # eta_g * tanh((0.35 - 0.15) / 0.1)
    for first, then, moved in ((0.0, 0.0, step), (0.0, -1.0, 0.0), (-2.0, -2.1, 0.0), (-2.0, -1.0, step),
                               (-2.0, -2.01, 0.5 * step)):
        reg = AHSAR(1)
        reg.end_epoch(val_rate=0.35, val_loss=first, another_epoch_follows=True)   # first epoch: pi = 1
        reg.end_epoch(val_rate=0.35, val_loss=then, another_epoch_follows=True)
        assert float(reg.log_g) == pytest.approx(moved, abs=1e-12), (first, then)
