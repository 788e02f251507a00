"""No silent divergence, counted: the property test's random networks, many more of them.

Draws N random small networks with tests/test_fidelity_property.py's generator (1-3
dense CUBA-LIF layers, random weights, per-neuron thresholds and decays, Bernoulli input
spikes), deploys each to Loihi (fold, calibrate, check, fidelity pass) and compares the
integer build with the float source on held-out inputs. Prints a Markdown table: how
many were refused, how many diverged beyond the test's tolerances (with a cause named,
or silently: must be 0), how many did not, and how often each cause was named.
Writes the tables to benchmarks/results/fidelity_random.md.
Usage: python benchmarks/fidelity_random.py [--examples 500] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_fidelity_property import (PREDICTION_TOLERANCE, SPIKE_TOLERANCE, _deploy,  # noqa: E402
                                    _diverged, networks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    outcome, causes = Counter(), Counter()

    @settings(max_examples=a.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(networks())
    def trial(net):
        out = _deploy(*net)
        if out is None:
            outcome["refused (one-line error)"] += 1
            return
        findings, c = out
        key = ("diverged" if _diverged(c) else "within tolerance") + (", cause named" if findings else ", no finding")
        outcome[key] += 1
        causes.update({f["cause"] for f in findings})

    from hypothesis import seed
    seed(a.seed)(trial)()
    lines = [f"{a.examples} random networks (seed {a.seed}); tolerance: predictions {PREDICTION_TOLERANCE:.0%} "
             f"of test samples, spikes {SPIKE_TOLERANCE:.0%} of a layer's neuron-steps", "",
             "| outcome | networks |", "|---|---|"]
    for k in ("refused (one-line error)", "diverged, cause named", "diverged, no finding",
              "within tolerance, cause named", "within tolerance, no finding"):
        lines.append(f"| {k} | {outcome[k]} |")
    lines += ["", "| cause named | networks |", "|---|---|"] + [f"| {k} | {v} |" for k, v in causes.most_common()]
    print("\n".join(lines))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "fidelity_random.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
