"""Measure ``sharpkd video``'s pipeline with ONNX Runtime's idle threads spinning and not spinning.

Encodes a 1080p H.264 test clip (scikit-image's astronaut, panning), then runs
:func:`sharpkd.runtime.video.sharpen_video` on it with the shipped student loaded twice (ONNX backend, ``--threads``
intra-op threads): once with ``spin=True`` (ONNX Runtime's default) and once with ``spin=False`` (what ``sharpkd video``
and the app use). The two runs alternate ``--rounds`` times in one process, so a slow moment of the machine hits both
alike. It prints, per run and as
medians, the end-to-end frames per second (decode, sharpen, compose, encode) and the milliseconds per frame inside
``sharpen()``.

Run it from the repository root::

    .venv/bin/python docs/measure_video_spin.py [--frames 90] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data

import sharpkd
from sharpkd.runtime.video import VideoConfig, sharpen_video


def write_clip(path: Path, frames: int) -> Path:
    """A panning 1920x1080 clip at 30 frames/s, H.264 at CRF 28."""
    img = cv2.resize(skimage.data.astronaut(), (1920, 1080))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"crf": "28"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(img, 4 * i, axis=1)), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="student")
    args = ap.parse_args()
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="sharpkd-spin-") as tmp:
        clip = write_clip(Path(tmp) / "clip.mp4", args.frames)
        sharpeners = {spin: sharpkd.load(args.model, backend="onnx", threads=args.threads, spin=spin) for spin in runs}
        for _ in range(args.rounds):
            for spin, sharpener in sharpeners.items():
                report = sharpen_video(clip, Path(tmp) / f"out_{spin}.mp4", sharpener.sharpen, VideoConfig())
                runs[spin].append((report.end_to_end_fps, 1000 / report.processing_fps))
                print(
                    f"spin={spin!s:5}: end-to-end {report.end_to_end_fps:.1f} frames/s, "
                    f"sharpen {1000 / report.processing_fps:.1f} ms/frame",
                    flush=True,
                )
    for spin, rows in runs.items():
        fps = statistics.median(r[0] for r in rows)
        ms = statistics.median(r[1] for r in rows)
        print(f"median spin={spin!s:5}: end-to-end {fps:.1f} frames/s, sharpen {ms:.1f} ms/frame")


if __name__ == "__main__":
    main()
