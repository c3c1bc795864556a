"""A resumed run keeps the CSV metrics of the epochs before the cut."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import CSVLogger

from qmimic.io.loggers import keep_csv_history


def test_a_resume_moves_the_earlier_metrics_aside_instead_of_losing_them(tmp_path: Path):
    folder = tmp_path / "csv"
    folder.mkdir()
    earlier = "epoch,step,train/loss\n0,19,1.5\n"
    (folder / "metrics.csv").write_text(earlier)
    (folder / "metrics.before-resume-1.csv").write_text("a first resume's\n")

    logger = CSVLogger(tmp_path, name="csv", version="")
    (kept,) = keep_csv_history([logger])
    logger.log_metrics({"train/loss": 0.5}, step=20)  # what Lightning's writer does next
    logger.save()

    assert kept == folder / "metrics.before-resume-2.csv" and kept.read_text() == earlier
    assert (folder / "metrics.before-resume-1.csv").read_text() == "a first resume's\n"
    assert (folder / "metrics.csv").read_text().splitlines() == ["step,train/loss", "20,0.5"]


def test_nothing_to_keep_on_a_fresh_run(tmp_path: Path):
    assert keep_csv_history([CSVLogger(tmp_path, name="csv", version="")]) == []
    assert not (tmp_path / "csv").exists() or not any((tmp_path / "csv").iterdir())
