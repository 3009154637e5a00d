"""The run folder's contract: summary.json lists each stage's artefacts under run_folder's keys, and a
run folder of the layout before model folders is refused in one line that says what to do."""

from __future__ import annotations

import pytest

from tleg_dist.artifacts import run_folder as rf


def finished(run, stage: str, files: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    rf.write_summary(run, {"status": rf.COMPLETED, "stage": stage, "files": files})


def test_artifact_reads_the_path_the_summary_lists(tmp_path):
    run = tmp_path / "ft"
    files = {rf.MODEL: str(run / rf.MODEL_FOLDER), rf.WEIGHTS: str(run / rf.MODEL_FOLDER / "model.safetensors")}
    finished(run, "finetune", files)
    assert rf.artifact(run, rf.WEIGHTS) == run / rf.MODEL_FOLDER / "model.safetensors"
    with pytest.raises(rf.MissingArtifact, match=r"lists no 'learngene' artefact \(it has \['model', 'weights'\]\)"):
        rf.artifact(run, rf.LEARNGENE)


@pytest.mark.parametrize("has_model_folder, advice", [
    (False, "convert the run: python -m tleg_dist.convert export {run} --out {run}/model"),
    (True, "load its model folder {run}/model"),
])
def test_an_old_layout_run_says_how_to_convert_it(tmp_path, has_model_folder, advice):
    run = tmp_path / "old"
    finished(run, "finetune", {rf.WEIGHTS: str(run / "final.safetensors"), "config": str(run / "final.json")})
    if has_model_folder:  # the layout in between: a model folder, and the old file beside it
        (run / rf.MODEL_FOLDER).mkdir()
    with pytest.raises(rf.MissingArtifact) as e:
        rf.artifact(run, rf.WEIGHTS)
    msg = str(e.value)
    assert "\n" not in msg and "lists 'weights' as final.safetensors" in msg, msg
    assert msg.endswith(advice.format(run=run)), msg


def test_other_stages_weights_are_not_taken_for_the_old_layout(tmp_path):
    run = tmp_path / "teacher"
    finished(run, "teacher", {rf.WEIGHTS: str(run / rf.TEACHER_WEIGHTS)})
    assert rf.artifact(run, rf.WEIGHTS) == run / rf.TEACHER_WEIGHTS
