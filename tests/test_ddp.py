"""Distributed training: ``python -m qmimic.train trainer=ddp trainer.devices=2`` on CPU (gloo).

The end-to-end runs use an evaluation split that does not divide by the number of processes
(5 test and 3 validation images on 2 ranks): with Lightning's padded ``DistributedSampler`` an
image would be scored twice, and torchmetrics' COCO mAP would hang on uneven shards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from helpers import TINY_DETECTOR, run_cli, save_untrained_checkpoint, tiny_overrides
from qmimic.data.sharding import ContiguousShardSampler
from qmimic.errors import UserError
from qmimic.io.checkpoints import load_checkpoint, load_run, net_state, save_run
from qmimic.models import build_detector
from qmimic.modules import DistillModule
from qmimic.modules.evaluation import GatheredMeanAveragePrecision

TESTS_DIR = Path(__file__).resolve().parent

# Uneven shards on 2 ranks; one image per evaluation batch, so that each image's prediction is
# computed alone whichever process and batch it falls in. More kept detections per image than
# the default make the metrics of a 2-step model nonzero, so that equality means something.
DDP_OVERRIDES = [
    "data.num_val=3",
    "data.num_test=5",
    "data.batch_size=2",  # 4 training images per rank: 2 optimizer steps, DDP's unused-parameter
    "data.eval_batch_size=1",  # check only fires from the second one
    "+model.box_detections_per_img=600",
    "trainer=ddp",
    "trainer.devices=2",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
]


class TeacherProbe(L.Callback):
    """What each rank sees of the distillation teacher, for :func:`test_ddp_run_matches_...`.

    Added to a run from the command line (``+callbacks.probe._target_=test_ddp.TeacherProbe``);
    writes ``rank<R>.json`` (one record per training step) and ``teacher<R>.pt`` (the teacher's
    state after fit) into ``out_dir``.
    """

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.steps: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        teacher = pl_module.teacher
        params = list(teacher.parameters())
        wrapped = {id(p) for p in trainer.strategy.model.parameters()}
        groups = [g for optimizer in trainer.optimizers for g in optimizer.param_groups]
        optimized = {id(p) for g in groups for p in g["params"]}
        self.steps.append(
            {
                "wrapper": type(trainer.strategy.model).__name__,
                "devices": sorted({str(t.device) for t in [*params, *teacher.buffers()]}),
                "module_device": str(pl_module.device),
                "requires_grad": any(p.requires_grad for p in params),
                "has_grad": any(p.grad is not None for p in params),
                "training": any(m.training for m in teacher.modules()),
                "in_ddp": any(id(p) in wrapped for p in params),
                "in_optimizer": any(id(p) in optimized for p in params),
            }
        )

    def on_fit_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rank = trainer.global_rank
        torch.save(pl_module.teacher.state_dict(), self.out_dir / f"teacher{rank}.pt")
        report = {"world_size": trainer.world_size, "steps": self.steps}
        (self.out_dir / f"rank{rank}.json").write_text(json.dumps(report))


def test_contiguous_shards_cover_the_split_once_in_order():
    dataset = TensorDataset(torch.arange(7))
    shards = [list(ContiguousShardSampler(dataset, num_replicas=3, rank=r)) for r in range(3)]
    assert shards == [[0, 1], [2, 3], [4, 5, 6]]  # rank-major concatenation = dataset order
    assert [len(ContiguousShardSampler(dataset, 3, r)) for r in range(3)] == [2, 2, 3]


def test_more_processes_than_images_is_a_user_error():
    with pytest.raises(UserError, match="cannot share 2 evaluation image.s. between 3 processes"):
        ContiguousShardSampler(TensorDataset(torch.arange(2)), num_replicas=3, rank=0)


def test_device_moves_reach_the_unregistered_teacher(tmp_path: Path):
    """What DDP's ``model.to(root_device)`` relies on, checked without a GPU on ``meta``."""
    teacher = build_detector(width=0.125, **TINY_DETECTOR)
    model = {"_target_": "qmimic.models.build_detector", "width": 0.125}
    model |= {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_DETECTOR.items()}
    save_run(tmp_path / "t.ckpt", teacher, {"model": model})
    student = build_detector(width=1 / 16, **TINY_DETECTOR)
    module = DistillModule(
        student, load_run(tmp_path / "t.ckpt").detector, optimizer=torch.optim.SGD,
        quantize_teacher=False, quantize_student=False,
    )  # fmt: skip
    module.to(torch.device("meta"))
    tensors = [*module.teacher.parameters(), *module.teacher.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    assert not any(p.requires_grad for p in module.teacher.parameters())


def _coco_worker(rank: int, port: int, shards: list, expected: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=len(shards))
    try:
        metric = GatheredMeanAveragePrecision(box_format="xyxy", backend="faster_coco_eval")
        for preds, target in shards[rank]:
            metric.update(preds, target)
        result = metric.compute()
        for key in ("map", "map_50", "mar_100"):
            assert abs(float(result[key]) - expected[key]) < 1e-7, (key, result[key], expected)
    finally:
        dist.destroy_process_group()


def _random_images(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    generator = torch.Generator().manual_seed(seed)
    preds, target = [], []
    for _ in range(n):
        gt = torch.rand(3, 2, generator=generator) * 60
        gt_boxes = torch.cat([gt, gt + 10 + torch.rand(3, 2, generator=generator) * 30], 1)
        jitter = (torch.rand(3, 4, generator=generator) - 0.5) * 12
        boxes = torch.cat([gt_boxes + jitter, torch.rand(2, 4, generator=generator).sort(1)[0]])
        labels = torch.randint(1, 3, (3,), generator=generator)
        preds.append(
            {
                "boxes": boxes,
                "scores": torch.rand(5, generator=generator),
                "labels": torch.cat([labels, torch.ones(2, dtype=torch.long)]),
            }
        )
        target.append({"boxes": gt_boxes, "labels": labels})
    return preds, target


@pytest.mark.slow
def test_coco_map_gathers_uneven_shards_like_one_process():
    preds, target = _random_images(9, seed=3)
    single = GatheredMeanAveragePrecision(box_format="xyxy", backend="faster_coco_eval")
    single.update(preds, target)
    expected = {k: float(v) for k, v in single.compute().items() if v.numel() == 1}
    assert expected["map_50"] > 0
    # 5, 0 and 4 images: torchmetrics' own sync pairs collectives per image and would hang.
    shards = [[(preds[:2], target[:2]), (preds[2:5], target[2:5])], [], [(preds[5:], target[5:])]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the workers need no fresh interpreter (spawn would re-import this module per rank).
    mp.start_processes(
        _coco_worker, args=(port, shards, expected), nprocs=len(shards), start_method="fork"
    )


@pytest.fixture
def probe_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the training subprocesses (every rank) import :class:`TeacherProbe`."""
    paths = [str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


def _single(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


def _test_metrics(path: Path) -> dict[str, float]:
    return {k: v for k, v in json.loads(path.read_text()).items() if k.startswith("test/")}


def _check_one_run(log_dir: Path, result: subprocess.CompletedProcess) -> Path:
    """The run's directory, after checking that both ranks used it and only rank 0 wrote."""
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = _single([p.parent for p in log_dir.rglob("config.yaml") if p.parent.name != ".hydra"])
    assert _single(list(log_dir.rglob("results.json"))).parent == run_dir
    assert _single(list(run_dir.parent.iterdir())) == run_dir  # no second timestamped run
    assert (run_dir / "train_ddp_process_1.log").exists()  # rank 1 ran in the same directory
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"last.ckpt", "best.ckpt"}
    # Every rank's stdout is the same pipe: the summary lines come from rank 0 alone.
    assert result.stdout.count("model: resnet18") == 1
    assert result.stdout.count("results written to") == 1
    return run_dir


def _check_gathered(run_dir: Path, cwd: Path) -> None:
    """results.json of the DDP run equals a single-process evaluation of its last.ckpt."""
    evaluated = run_cli(
        "qmimic.evaluate",
        f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"paths.log_dir={cwd / 'eval'}",
        cwd=cwd,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    single = _test_metrics(_single(list((cwd / "eval").rglob("results.json"))))
    gathered = _test_metrics(run_dir / "results.json")
    assert set(gathered) == set(single) and "test/voc07_map" in single
    assert gathered["test/map_50"] > 0 and gathered["test/voc07_map"] > 0
    for key, value in single.items():
        assert gathered[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow
def test_ddp_detector_run_matches_single_process_evaluation(shapes_cache: Path, tmp_path: Path):
    log_dir = tmp_path / "logs"
    result = run_cli(
        "qmimic.train",
        *tiny_overrides(shapes_cache, log_dir),
        "+experiment=scratch_shapes",
        *DDP_OVERRIDES,
        cwd=tmp_path,
    )
    run_dir = _check_one_run(log_dir, result)
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 2
    _check_gathered(run_dir, tmp_path)


@pytest.mark.slow
def test_ddp_distill_run_keeps_teacher_frozen_in_every_rank(
    shapes_cache: Path, tmp_path: Path, probe_path: None
):
    log_dir = tmp_path / "logs"
    base = [*tiny_overrides(shapes_cache, log_dir), "data.num_val=3", "data.num_test=5"]
    teacher_ckpt = save_untrained_checkpoint("qteacher_shapes", base, tmp_path / "teacher.ckpt")
    probe = tmp_path / "probe"
    result = run_cli(
        "qmimic.train",
        *base,
        "+experiment=qmimic_shapes",
        f"teacher_ckpt={teacher_ckpt}",
        *DDP_OVERRIDES,
        "+callbacks.probe._target_=test_ddp.TeacherProbe",
        f"+callbacks.probe.out_dir={probe}",
        cwd=tmp_path,
    )
    run_dir = _check_one_run(log_dir, result)
    _check_gathered(run_dir, tmp_path)

    teacher_state = net_state(load_checkpoint(teacher_ckpt))
    for rank in (0, 1):
        report = json.loads((probe / f"rank{rank}.json").read_text())
        assert report["world_size"] == 2 and len(report["steps"]) == 2
        for step in report["steps"]:
            assert step["wrapper"] == "DistributedDataParallel"
            assert step["devices"] == [step["module_device"]]
            assert not any(step[k] for k in ("requires_grad", "has_grad", "training"))
            assert not step["in_ddp"] and not step["in_optimizer"]
        after = torch.load(probe / f"teacher{rank}.pt", weights_only=True)
        assert after.keys() == teacher_state.keys()
        assert all(torch.equal(after[k], teacher_state[k]) for k in after)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["-m", "seed=0,1"], "error: a sweep (-m) cannot start DDP processes"),
        (["data.aspect_ratio_grouping=true"], "error: data.aspect_ratio_grouping=true cannot"),
    ],
)
def test_what_cannot_run_on_several_processes_is_one_message(
    shapes_cache: Path, tmp_path: Path, overrides: list[str], expected: str
):
    result = run_cli(
        "qmimic.train",
        *overrides,
        *tiny_overrides(shapes_cache, tmp_path),
        "+experiment=scratch_shapes",
        "trainer=ddp",
        "trainer.devices=2",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    # Refused before any process was started or anything of the run was written.
    for pattern in ("results.json", "config.yaml", "*.ckpt", "train_ddp_process_*.log"):
        assert not [p for p in tmp_path.rglob(pattern) if p.parent.name != ".hydra"], pattern
