"""examples/compare_backbones.py runs end to end (one batch per configuration here; the
documented run trains each for 55 s) and its report shows every backbone's RMSE and its
skill over bicubic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "compare_backbones.py"


def test_compare_backbones_example_writes_its_report(tmp_path):
    cmd = [sys.executable, str(EXAMPLE), "--budget", "0", "--epochs", "1", "--device", "cpu"]
    cmd += ["--steps-per-epoch", "1", "--batch-size", "2", "--quick"]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    table = pd.read_csv(tmp_path / "table.csv", index_col=0)
    for backbone in ("convnet", "resnet", "densenet", "convnext", "unet"):
        rows = table[table["backbone"] == backbone]
        assert len(rows) >= 1, backbone
        assert rows["rmse"].notna().all() and rows["skill_rmse_vs_bicubic"].notna().all()
        assert f"| {rows.index[0]} | {backbone} |" in report
    assert set(table.loc[table["backbone"] == "resnet", "upsampling"]) >= {"spc", "rc", "dc"}
    assert "skill_rmse_vs_bicubic" in report
    for figure in ("maps.png", "metrics.png", "spectra.png", "learning_curves.png"):
        assert (tmp_path / figure).stat().st_size > 10_000, figure
