"""``make gpu-check``: what a CUDA machine must show before GPU studies are trusted.

Runs, on the first CUDA device, one after the other:

1. the ``gpu``-marked tests (``tests/test_gpu.py``);
2. training slices on the built-in ``shapes`` data as ``qmimic.train`` runs them: the teacher in
   float32, bf16-mixed and fp16-mixed precision, and a Quantization Mimic student against a
   quantized teacher (bf16-mixed); each prints its steps, its wall time and its time per step;
3. DDP on one GPU (``trainer=ddp trainer.devices=1``), a short teacher slice;
4. inference latency at 600x1000 with the paper's test budgets: the full-width teacher and the
   ResNet18-1-16 student, random weights, median of repeated one-image calls.

It prints one table and writes it to ``--out`` (``gpu_check.md``). ``--device cpu`` runs the
same steps on the CPU (a dry run: the tests check with it that the script works; its timings
say nothing about a GPU).

Usage: python benchmarks/gpu_check.py [--steps 60] [--out gpu_check.md] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from model_speed import IMAGE_SIZE, build, median_seconds
from omegaconf import OmegaConf

from qmimic.io.checkpoints import quantization_plan, save_run

ROOT = Path(__file__).resolve().parents[1]
QUICK_DATA = ["data.num_train=8", "data.num_val=4", "data.num_test=4", "data.image_size=96"]
QUANT = {
    "_target_": "qmimic.quant.QuantizationPlan",
    "quantizer": {"_target_": "qmimic.quant.FeatureQuantizer", "_partial_": True},
}


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def gpu_tests(device: str) -> dict:
    if device != "cuda":
        return {"check": "gpu-marked tests", "result": "not run (no CUDA device)"}
    started = time.perf_counter()
    result = run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"])
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    return {
        "check": "gpu-marked tests",
        "result": last,
        "seconds": round(time.perf_counter() - started, 1),
        "ok": result.returncode == 0,
    }


def quantized_teacher(folder: Path) -> Path:
    """A checkpoint of a width-1/4 shapes teacher with a feature quantizer (step 0.5), random
    weights: the teacher a Quantization Mimic slice distils from."""
    detector, model_cfg = build(["data=shapes", "model.width=0.25"])
    quantization_plan(QUANT).apply(detector)
    detector.neck.step.fill_(0.5)
    config = {"model": OmegaConf.to_container(model_cfg, resolve=True), "quant": QUANT}
    return save_run(folder / "qteacher.ckpt", detector, config)


def train_slice(name: str, overrides: list[str], folder: Path, device: str, steps: int) -> dict:
    """One ``qmimic.train`` run of ``steps`` training steps; its wall time per step."""
    accelerator = "gpu" if device == "cuda" else "cpu"
    run_dir = folder / re.sub(r"[^A-Za-z0-9_-]+", "_", name)  # a Hydra override value
    command = [sys.executable, "-m", "qmimic.train", *overrides, f"hydra.run.dir={run_dir}",
               f"trainer.accelerator={accelerator}", f"++trainer.max_steps={steps}",
               "trainer.limit_val_batches=0", "test=false", "logger=csv",
               "callbacks.detection_images.count=0"]  # fmt: skip
    started = time.perf_counter()
    result = run(command)
    seconds = time.perf_counter() - started
    row = {"check": name, "seconds": round(seconds, 1), "ok": result.returncode == 0}
    results_file = run_dir / "results.json"
    if result.returncode != 0 or not results_file.is_file():
        lines = [line for line in result.stderr.splitlines() if "rror" in line] or ["?"]
        row["result"] = "failed: " + lines[-1].strip()[:200]
        return row
    results = json.loads(results_file.read_text())
    row["result"] = f"{results['steps']} steps, {results['wall_time_s']} s in the run"
    row["s_per_step"] = round(results["wall_time_s"] / max(1, results["steps"]), 4)
    return row


@torch.no_grad()
def latency(device: str, repeats: int, quick: bool = False) -> list[dict]:
    rows = []
    image = torch.rand(3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(0)).to(device)
    teacher_width = "0.25" if quick else "1.0"
    for name, width in ((f"teacher, width {teacher_width}", teacher_width),
                        ("student ResNet18-1-16", "0.0625")):  # fmt: skip
        detector, _ = build(["data=voc", f"model.width={width}", "model.pretrained=false"])
        detector = detector.to(device)

        def step(detector=detector) -> None:
            detector.predict([image])
            if device == "cuda":
                torch.cuda.synchronize()

        ms = 1000 * median_seconds(step, repeats)
        rows.append({"check": f"latency 600x1000, {name}", "result": f"{ms:.1f} ms",
                     "ok": True, "ms": round(ms, 2)})  # fmt: skip
    return rows


def markdown(rows: list[dict], device: str) -> str:
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (dry run)"
    lines = [f"# GPU check on {name}", "",
             f"torch {torch.__version__}, CUDA {torch.version.cuda}", "",
             "| check | result | ok | seconds |", "|---|---|---|---|"]  # fmt: skip
    for row in rows:
        ok = {True: "yes", False: "NO"}.get(row.get("ok"), "-")
        lines.append(f"| {row['check']} | {row['result']} | {ok} | {row.get('seconds', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=60, help="training steps per slice")
    parser.add_argument("--repeats", type=int, default=20, help="latency calls per model")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"))
    parser.add_argument(
        "--quick", action="store_true",
        help="tiny data and narrow latency models: checks that the script works, nothing more",
    )  # fmt: skip
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; make gpu-check needs one (--device cpu for a dry run)",
              file=sys.stderr)  # fmt: skip
        return 2
    rows = [gpu_tests(args.device)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = [f"data.root={folder / 'data'}", *(QUICK_DATA if args.quick else [])]
        teacher = ["+experiment=teacher_shapes", *data]
        for precision in ("32-true", "bf16-mixed", "16-mixed"):
            if args.device == "cpu" and precision == "16-mixed":
                continue  # fp16 autocast is a GPU path
            overrides = [*teacher, f"trainer.precision={precision}"]
            rows.append(
                train_slice(f"teacher {precision}", overrides, folder, args.device, args.steps)
            )
        qmimic = [
            "+experiment=qmimic_shapes",
            *data,
            f"teacher_ckpt={quantized_teacher(folder)}",
            "trainer.precision=bf16-mixed",
        ]
        rows.append(train_slice("qmimic student bf16-mixed", qmimic, folder, args.device,
                                args.steps))  # fmt: skip
        ddp = [*teacher, "trainer=ddp", "trainer.devices=1", "data.aspect_ratio_grouping=false"]
        rows.append(train_slice("teacher, DDP on one device", ddp, folder, args.device,
                                max(2, args.steps // 3)))  # fmt: skip
    rows += latency(args.device, args.repeats, quick=args.quick)
    text = markdown(rows, args.device)
    print(text)
    args.out.write_text(text)
    return 0 if all(row.get("ok", True) for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
