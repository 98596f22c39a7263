"""The benchmark scripts keep working: the forgetting-quality table runs end to end in its quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a couple of minutes: every method on four scenarios, on digits
def test_forgetting_quality_quick_covers_every_method_and_scenario(tmp_path):
    out = tmp_path / "fq.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "forgetting_quality.py"), "--quick",
                           "--workdir", str(tmp_path / "work"), "--json", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(out.read_text())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import forgetting_quality as fq
    finally:
        sys.path.pop(0)
    summary = fq.summarize(payload)
    assert set(summary) == set(fq.SCENARIOS)
    for scenario, rows in summary.items():
        assert set(rows) == {"retrain", "original (no deletion)", *fq.METHODS}, scenario
        assert rows["retrain"]["avg_gap"][0] == 0.0 and rows["retrain"]["time_ratio"][0] == 1.0
        for name, row in rows.items():
            assert all(0.0 <= row[k][0] <= 1.0 for k in fq.METRICS), (scenario, name)
    # the class scenario: the retrained model never saw the class, and the methods that forget it get close
    assert summary["one class"]["retrain"]["forget_acc"][0] == 0.0
    assert summary["one class"]["amnesiac + repair"]["undone"][0] > 0
    table = fq.render(payload, "fq.json")
    assert table.count("| retrain |") == len(fq.SCENARIOS) and fq.BEGIN in table and fq.END in table
