"""trainer.report: the markdown and the plots from a held-out evaluation, with sections from other evaluations."""

from __future__ import annotations

from pathlib import Path

from models.evaluation import evaluate
from tests.unit.models.eta_history import small_models, split
from trainer.report import write_report


def test_report_writes_markdown_plots_and_extra_sections(tmp_path: Path) -> None:
    train, test = split()
    ev = evaluate(small_models(), train, test)
    manifest = {"name": "hgb", "version": "abc123", "sklearn_version": "1.9.1",
                "data": {"seed": 9, "days": 0.5, "orders_per_hour": 20.0, "test_days": 1, "from": "a", "to": "b"},
                "timings_s": {"fit": 1.5}}
    path = write_report(ev, manifest, tmp_path / "report", [("Stock replenishment", "| a | b |\n|---|---|\n| 1 | 2 |")])
    text = path.read_text()
    assert path.name == "index.md" and "hgb/abc123" in text
    auc = ev.metrics["risk"]["model"]["roc_auc"]
    assert f"| delay risk ROC-AUC | {auc:.3f} |" in text
    assert f"{ev.metrics['eta']['mae_reduction']:.1%} lower" in text
    assert text.index("## Results") < text.index("## Stock replenishment") and "| 1 | 2 |" in text
    for image in ("roc.png", "calibration.png", "eta_error.png", "error_by_hour.png", "error_by_traffic.png"):
        assert f"({image})" in text
        assert (tmp_path / "report" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
