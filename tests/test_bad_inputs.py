"""Bad input to every command: one ``error:`` line naming the problem and the fix, exit status 2,
no traceback, no file that existed before changed, and no code run from an untrusted
checkpoint.

All cases run once, side by side, as the user would run them (``python -m qmimic.<command>``);
each test then checks one case's outcome.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from data.trees import tiny_voc
from helpers import payload_checkpoint, save_untrained_checkpoint, tiny_overrides

# case -> (command, arguments with {placeholders}, what the error line must say, with the same
# placeholders)
CASES = {
    "train: dataset root missing": (
        "train", ["data=voc", "data.root=/no/such/voc"], "dataset root not found: /no/such/voc"),
    "train: data= of another layout": (
        "train", ["data=voc", "data.root={cache}"], "Pascal VOC image set not found"),
    "train: init checkpoint missing": (
        "train", ["{tiny}", "+experiment=qteacher_shapes", "init_ckpt=/no/such.ckpt"],
        "checkpoint not found: /no/such.ckpt"),
    "train: init checkpoint corrupt": (
        "train", ["{tiny}", "+experiment=qteacher_shapes", "init_ckpt={corrupt}"],
        "it is truncated or not a checkpoint"),
    "train: init checkpoint truncated": (
        "train", ["{tiny}", "+experiment=qteacher_shapes", "init_ckpt={truncated}"],
        "it is truncated or not a checkpoint"),
    "train: init checkpoint of another architecture": (
        "train", ["{tiny}", "+experiment=qteacher_shapes", "model=vgg16_faster_rcnn",
                  "init_ckpt={ckpt}"], "does not match the configured model"),
    "train: model.width=0": ("train", ["{tiny}", "model.width=0"], "width must be in (0, 1]"),
    "train: data.batch_size=0": (
        "train", ["{tiny}", "data.batch_size=0"], "data.batch_size must be a whole number"),
    "train: module.mimic_weight=-1": (
        "train", ["{tiny}", "+experiment=mimic_shapes", "teacher_ckpt={ckpt}",
                  "module.mimic_weight=-1"], "module.mimic_weight must be 0 or more"),
    "train: run folder is a file": (
        "train", ["{tiny}", "hydra.run.dir={a_file}"], "is a file, not a folder"),
    "train: resume checkpoint missing": (
        "train", ["{tiny}", "ckpt_path=/no/such/last.ckpt"],
        "checkpoint not found: /no/such/last.ckpt"),
    "train: shapes cache unwritable": (
        "train", ["{tiny}", "data.root=/dev/null/cache"],
        "cannot write the built-in shapes dataset to /dev/null"),
    "train: pretrained narrow model": (
        "train", ["{tiny}", "model.pretrained=true"],
        "ImageNet weights exist for width 1 only, got width=0.25; narrow students train from "
        "scratch: set model.pretrained=false"),
    "train: a listed test image is missing": (
        "train", ["data=voc", "data.root={voc_missing}", "data.num_workers=0",
                  "data.persistent_workers=false", "paths.log_dir={root}/logs"],
        "1 file(s) listed for the val split do not exist (1 of its 2 samples), e.g. "
        "{voc_missing}/VOCdevkit/VOC2007/JPEGImages/000004.jpg"),
    "train: qmimic from a float teacher": (
        "train", ["{tiny}", "+experiment=qmimic_shapes", "teacher_ckpt={ckpt}"],
        "the teacher has no feature quantizer"),
    "train: quant.step_rule unknown": (
        "train", ["{tiny}", "+experiment=quant_shapes", "quant.step_rule=sometimes"],
        "quant.step_rule must be one of"),
    "train: teacher checkpoint carries a pickle payload": (
        "train", ["{tiny}", "+experiment=mimic_shapes", "teacher_ckpt={payload}"],
        "refusing to load {payload}"),
    "evaluate: checkpoint missing": (
        "evaluate", ["ckpt=/no/such.ckpt"], "checkpoint not found: /no/such.ckpt"),
    "evaluate: data.root without data=": (
        "evaluate", ["ckpt={ckpt}", "data.root=/elsewhere"],
        "data.root= needs the data named as well: add data=<name>"),
    "evaluate: checkpoint truncated": (
        "evaluate", ["ckpt={truncated}"], "it is truncated or not a checkpoint"),
    "evaluate: data= of another layout": (
        "evaluate", ["ckpt={ckpt}", "data=voc", "data.root={cache}"],
        "Pascal VOC image set not found"),
    "evaluate: a listed test image is missing": (
        "evaluate", ["ckpt={ckpt}", "data=voc", "data.root={voc_missing}", "data.num_workers=0",
                     "data.persistent_workers=false"],
        "1 file(s) listed for the test split do not exist"),
    "evaluate: checkpoint carries a pickle payload": (
        "evaluate", ["ckpt={payload}"], "refusing to load {payload}"),
    "evaluate: run folder inside a file": (
        "evaluate", ["ckpt={ckpt}", "hydra.run.dir={a_file}/run"], "is a file, not a folder"),
    "predict: checkpoint corrupt": (
        "predict", ["ckpt={corrupt}", "input={images}"], "it is truncated or not a checkpoint"),
    "predict: checkpoint carries a pickle payload": (
        "predict", ["ckpt={payload}", "input={images}"], "refusing to load {payload}"),
    "predict: ONNX model missing": (
        "predict", ["ckpt=/no/such.onnx", "input={images}"], "ONNX model not found: /no/such.onnx"),
    "predict: input missing": ("predict", ["ckpt={ckpt}", "input=/no/such/photos"], "no images"),
    "predict: output is a file": (
        "predict", ["ckpt={ckpt}", "input={images}", "output={a_file}"],
        "is a file, not a folder"),
    "export: checkpoint missing": (
        "export", ["ckpt=/no/such.ckpt"], "checkpoint not found: /no/such.ckpt"),
    "export: output inside a file": (
        "export", ["ckpt={ckpt}", "output={a_file}/model.onnx"], "is a file, not a folder"),
    "export: output folder unwritable": (
        "export", ["ckpt={ckpt}", "output=/proc/model.onnx", "verify.images=0"],
        "cannot write in /proc"),
    "pipeline: --out is a file": ("pipeline", ["--out", "{a_file}"], "is a file, not a folder"),
    "pipeline: unknown recipe": ("pipeline", ["--data", "nope"], "invalid choice: 'nope'"),
}  # fmt: skip


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links followed) -> a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def expand(args: list[str], places: dict) -> list[str]:
    out = []
    for arg in args:
        out += places["tiny"] if arg == "{tiny}" else [arg.format(**places)]
    return out


@pytest.fixture(scope="module")
def outcomes(shapes_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("bad_inputs")
    tiny = tiny_overrides(shapes_cache, root / "logs")
    ckpt = save_untrained_checkpoint("scratch_shapes", tiny, root / "good.ckpt")
    (root / "corrupt.ckpt").write_bytes(b"this is not a checkpoint")
    (root / "truncated.ckpt").write_bytes(ckpt.read_bytes()[:4096])
    (root / "a_file").write_text("a file where a folder is expected\n")
    payload, marker = payload_checkpoint(root)
    voc_missing = tiny_voc(root / "voc_missing")
    (voc_missing / "VOCdevkit/VOC2007/JPEGImages/000004.jpg").unlink()
    places = {
        "root": root,
        "voc_missing": voc_missing,
        "tiny": tiny,
        "cache": shapes_cache,
        "ckpt": ckpt,
        "corrupt": root / "corrupt.ckpt",
        "truncated": root / "truncated.ckpt",
        "a_file": root / "a_file",
        "images": next(shapes_cache.rglob("JPEGImages")),
        "payload": payload,
    }
    before = {"root": fingerprint(root), "cache": fingerprint(shapes_cache)}

    def run(case: str) -> subprocess.CompletedProcess:
        command, args, _ = CASES[case]
        return subprocess.run(
            [sys.executable, "-m", f"qmimic.{command}", *expand(args, places)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(CASES, pool.map(run, CASES), strict=True))
    after = {"root": fingerprint(root), "cache": fingerprint(shapes_cache)}
    return {
        "results": results, "before": before, "after": after, "places": places,
        "payload_ran": marker.exists(),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_gets_one_error_line_and_a_non_zero_exit(outcomes: dict, case: str):
    result = outcomes["results"][case]
    expected = CASES[case][2].format(**outcomes["places"])
    assert result.returncode == 2, result.stdout[-2000:]  # 2: the input is wrong (1: a bug)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert expected in errors[0]


def test_no_file_that_existed_before_changed(outcomes: dict):
    for place in ("root", "cache"):
        before, after = outcomes["before"][place], outcomes["after"][place]
        assert {k: after.get(k) for k in before} == before


def test_no_checkpoint_payload_ran(outcomes: dict):
    assert not outcomes["payload_ran"]


def test_output_folders_are_read_with_hydra_override_grammar(tmp_path: Path):
    """A quoted ``++`` override is still checked; a sweep over folders is left to Hydra."""
    from qmimic.cli import check_output_overrides
    from qmimic.errors import UserError

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_overrides(["-m", f'++hydra.run.dir="{a_file}"'])
    check_output_overrides([f"paths.log_dir={a_file},{tmp_path}", f"hydra.run.dir={tmp_path}"])
    check_output_overrides(["--cfg", "job", f"hydra.run.dir={tmp_path / 'new'}"])
