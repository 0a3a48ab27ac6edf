"""Interleaved images through the server vs the same diffusers pipeline called directly, side by side.

Through the server: a streaming create on a model that pairs the scripted text model (a test double that writes
its parts at once, so the time measured is the images' and the server's) with a diffusers pipeline; the time to
the first ``image`` delta and to the end of the stream, as a client sees them. Directly: the same pipeline folder
loaded in this process, the same prompts, sizes, steps and seeds, each image encoded as the server encodes it;
the time to the first image and to the last. The two alternate run by run, never computing together.

    python bench/images.py                     # a tiny random-weight pipeline built here (nothing downloaded)
    python bench/images.py --pipeline /models/sd-turbo --steps 2 --size 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from servers import ROOT, free_port, openinteractions

PROMPTS = ["a gladiator in the Colosseum, oil painting", "the crowd cheering in the arena, wide view",
           "a lion at the gates of the arena, dusk", "the empty arena at night, moonlight"]  # fmt: skip


def parts(images: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = [{"text": "Marcus waited below the arena floor. "}]
    for n in range(images):
        out += [{"image": PROMPTS[n % len(PROMPTS)]}, {"text": f"Part {n + 2} of the story. "}]
    return out


def write_config(folder: Path, pipeline: Path, args: argparse.Namespace) -> Path:
    script = folder / "writer.json"
    answer = json.dumps({"parts": parts(args.images)})
    script.write_text(json.dumps({"rules": [{"when": {}, "events": [{"text": answer}]}]}))
    config = folder / "config.toml"
    config.write_text(
        f'[store]\ndata_dir = "{folder / "data"}"\n\n'
        f'[models.writer]\nbackend = "scripted"\nscript = "{script}"\n\n'
        f'[images.drawer]\nbackend = "diffusers"\npath = "{pipeline}"\nsteps = {args.steps}\n'
        f'default_size = {args.size}\nmime_type = "{args.mime_type}"\n\n'
        '[models.illustrated]\nbackend = "interleaved"\ntext = "writer"\nimages = "drawer"\n'
    )
    return config


class Direct:
    """The same pipeline folder, loaded in this process; images encoded as the server encodes them."""

    def __init__(self, pipeline_path: Path, args: argparse.Namespace) -> None:
        import torch
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        sys.path.insert(0, str(ROOT / "src"))
        from openinteractions.backends.images.encoding import encode

        diffusers_logging.disable_progress_bar()
        load: Any = DiffusionPipeline.from_pretrained
        self.pipeline = load(pipeline_path, local_files_only=True, dtype=torch.float32).to("cpu")
        self.pipeline.set_progress_bar_config(disable=True)
        self.torch, self.encode, self.args = torch, encode, args
        self.prompts = [p["image"] for p in parts(args.images) if "image" in p]

    def run(self) -> tuple[float, ...]:
        args, torch = self.args, self.torch
        started, first = time.perf_counter(), None
        for n, prompt in enumerate(self.prompts):
            generator = torch.Generator(device="cpu").manual_seed(1 + n)
            with torch.inference_mode():
                image = self.pipeline(prompt=prompt, width=args.size, height=args.size, num_inference_steps=args.steps,
                                      generator=generator, output_type="pil").images[0]  # fmt: skip
            self.encode(image, args.mime_type)
            first = first or time.perf_counter() - started
        return first or 0.0, time.perf_counter() - started


def through_server(http: httpx.Client, args: argparse.Namespace) -> tuple[float, ...]:
    """One streaming create: the time to the first image delta, to the end, and to the first text delta."""
    body = {"model": "illustrated", "input": "Tell the story", "stream": True, "store": False,
            "response_format": [{"type": "text"}, {"type": "image"}], "generation_config": {"seed": 1}}  # fmt: skip
    started, first, text, images = time.perf_counter(), None, None, 0
    with http.stream("POST", "/v1beta/interactions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"type":"text"' in line:
                text = text or time.perf_counter() - started
            if line.startswith("data: ") and '"type":"image"' in line:
                images += 1
                first = first or time.perf_counter() - started
    total = time.perf_counter() - started
    if images != args.images:
        raise RuntimeError(f"the stream carried {images} images, not {args.images}")
    return first or 0.0, total, text or 0.0


def measure(config: Path, pipeline: Path, args: argparse.Namespace) -> tuple[list[tuple[float, ...]], ...]:
    """Runs alternate, a request through the server then the same images directly, so that both see the same
    load; only one of them computes at a time."""
    direct = Direct(pipeline, args)
    served_runs, direct_runs = [], []
    port = free_port()
    with openinteractions(config, port), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
        for run in range(args.warmup + args.runs):
            served, alone = through_server(http, args), direct.run()
            if run >= args.warmup:
                served_runs.append(served)
                direct_runs.append(alone)
    return served_runs, direct_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path, help="a diffusers pipeline folder (default: a tiny one built here)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=2, help="images per answer")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--mime-type", default="image/jpeg")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pipeline = args.pipeline
        if pipeline is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from test_images_pipeline import build_tiny_pipeline

            pipeline = build_tiny_pipeline(folder)
        served, direct = measure(write_config(folder, pipeline, args), pipeline, args)
    report(served, direct, args)


def report(served: list[tuple[float, ...]], direct: list[tuple[float, ...]], args: argparse.Namespace) -> None:
    def median(runs: list[tuple[float, ...]], i: int) -> float:
        return statistics.median(r[i] for r in runs)

    print(f"{args.images} images of {args.size}x{args.size}, {args.steps} steps, {args.mime_type}; "
          f"median of {args.runs} runs after {args.warmup} warm-up")  # fmt: skip
    print("| | through the server | pipeline called directly | server / direct |")
    print("|---|---|---|---|")
    for i, name in enumerate(["time to first image", "total"]):
        s, d = median(served, i), median(direct, i)
        print(f"| {name} | {s * 1000:.0f} ms | {d * 1000:.0f} ms | {s / d:.2f} |")
    print(f"(through the server, the first text delta came after {median(served, 2) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
