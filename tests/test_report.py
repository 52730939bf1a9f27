"""``report RUN_DIR``: the plots and the summary of an s2s run with an evaluation recorded."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli
from PIL import Image


@pytest.mark.slow
def test_report_plots_an_s2s_run_and_its_recorded_bleu(tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_checkpoint.parent.parent, run_dir)
    source = tmp_path / "src.en"
    source.write_text("The house is small .\nThank you .\n")
    reference = tmp_path / "ref.fr"
    reference.write_text("La maison est petite .\nMerci .\n")
    evaluated = run_cli("evaluate", "--checkpoint", run_dir, "--src", source, "--ref", reference, "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    recorded = json.loads((run_dir / "evaluations.jsonl").read_text().splitlines()[-1])  # others may precede
    assert recorded["step"] == 20 and recorded["num_sentences"] == 2 and "bleu" in recorded
    result = run_cli("report", run_dir)
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout.strip().splitlines()[-1])
    assert written["job"] == "s2s"
    with Image.open(written["plot"]) as plot:
        assert plot.size[0] > 800 and plot.getextrema() != ((255, 255),) * 3  # drawn on, not blank
    markdown = (run_dir / "report" / "report.md").read_text()
    assert "![training](training.png)" in markdown and "| steps logged | 20 |" in markdown
    assert f"| 20 | {recorded['bleu']} | {recorded['bleu_tokenized']} | {recorded['bleu_copy_baseline']} |" in markdown


def test_report_of_a_folder_without_a_log_says_so(tmp_path):
    result = run_cli("report", tmp_path)
    assert result.returncode == 2 and "no training log here" in result.stderr and "Traceback" not in result.stderr
