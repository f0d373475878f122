"""Tests for the ``sharpkd`` command line, in-process through ``main([...])`` on tiny models and images."""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sharpkd.checkpoint import save_checkpoint
from sharpkd.cli import build_parser, main
from sharpkd.data import degrade_image, find_images
from sharpkd.images import IMAGE_SUFFIXES, read_image
from sharpkd.models import build_model, count_parameters
from sharpkd.runtime.classical import unsharp_mask
from sharpkd.runtime.sharpener import load


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@pytest.fixture
def photos(tmp_path: Path, photo: np.ndarray) -> Path:
    """A folder with two good images (one in a subfolder) and four bad files."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(photo[:48, :64]).save(root / "a.png")
    Image.fromarray(photo[40:, 50:]).save(root / "sub" / "b.jpg", quality=95)
    (root / "zero.png").write_bytes(b"")
    good = (root / "a.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "text.jpg").write_text("this is not an image\n")
    ihdr = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)  # declares 1.6 GP, holds no pixels
    (root / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b""))
    return root


BAD_FILES = ("bomb.png", "text.jpg", "truncated.png", "zero.png")


def test_sharpen_folder_skips_each_bad_file_and_exits_1(tiny_models_dir: Path, photos: Path, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["sharpen", str(photos), "-o", str(out), "--model", "student"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == len(BAD_FILES) and "Traceback" not in err
    for line, name in zip(lines, BAD_FILES):
        assert line.startswith(f"sharpkd: skipped {photos / name}: ")
    assert "empty" in lines[3] and "truncated" in lines[2] and "decompression bomb" in lines[0]

    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a_sharp.png", "sub/b_sharp.png"]
    student = load("student")
    for src, dst in ((photos / "a.png", out / "a_sharp.png"), (photos / "sub" / "b.jpg", out / "sub" / "b_sharp.png")):
        np.testing.assert_array_equal(read_image(dst), student.sharpen(read_image(src)))


def test_sharpen_good_files_exit_0_and_keep_format(photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["sharpen", str(photos / "a.png"), str(photos / "sub"), "-o", str(out), "--model", "unsharp"]
    assert main([*args, "--keep-format", "--suffix", "_u"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_u.png", "b_u.jpg"]
    # the unsharp mask runs the setting tuned on val when models/unsharp.json holds one (else its default)
    setting = load("unsharp").setting
    np.testing.assert_array_equal(read_image(out / "a_u.png"), unsharp_mask(read_image(photos / "a.png"), **setting))
    captured = capsys.readouterr()
    assert captured.err == "" and "wrote 2 image(s)" in captured.out


def test_sharpen_rerun_ignores_its_own_outputs_and_reports_collisions(
    photo: np.ndarray, tmp_path: Path, capsys
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(photo[:32, :32]).save(root / "x.png")
    Image.fromarray(photo[:32, :32]).save(root / "x.bmp")  # same stem: both would write x_sharp.png
    for _ in range(2):  # OUTDIR inside INPUT: the second run must not sharpen the first run's outputs
        assert main(["sharpen", str(root), "-o", str(root / "out"), "--model", "unsharp"]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"sharpkd: skipped {root / 'x.png'}: its output {root / 'out' / 'x_sharp.png'} would overwrite the result "
            f"for {root / 'x.bmp'}\n"
        )
    assert [p.name for p in (root / "out").iterdir()] == ["x_sharp.png"]


def test_sharpen_folder_reads_the_files_training_reads(tmp_path: Path, capsys) -> None:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    for i, suffix in enumerate(IMAGE_SUFFIXES):  # every other one upper-case, in a subfolder
        path = root / "sub" / f"{i}{suffix.upper()}" if i % 2 else root / f"{i}{suffix}"
        Image.new("RGB", (16, 16), (30 * i, 0, 0)).save(path, format=Image.registered_extensions()[suffix])
    (root / "notes.txt").write_text("not an image")
    (root / "clip.mp4").write_bytes(b"not an image either")
    out = tmp_path / "out"
    assert main(["sharpen", str(root), "-o", str(out), "--model", "input"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    trained_on = sorted((p.relative_to(root).parent / f"{p.stem}_sharp.png").as_posix() for p in find_images(root))
    assert written == trained_on and len(written) == len(IMAGE_SUFFIXES)
    assert f"wrote {len(IMAGE_SUFFIXES)} image(s)" in capsys.readouterr().out


def test_threads_option_sets_torch_threads(photos: Path, tmp_path: Path, capsys) -> None:
    saved = torch.get_num_threads()
    try:
        args = ["sharpen", str(photos / "a.png"), "-o", str(tmp_path / "out"), "--model", "input"]
        assert main([*args, "--threads", "1"]) == 0 and torch.get_num_threads() == 1
        assert main([*args, "--threads", "0"]) == 2
        assert capsys.readouterr().err == "sharpkd: error: --threads must be >= 1, got 0\n"
    finally:
        torch.set_num_threads(saved)


def test_sharpen_missing_input_is_skipped(tmp_path: Path, capsys) -> None:
    assert main(["sharpen", str(tmp_path / "nope.png"), "-o", str(tmp_path / "out"), "--model", "input"]) == 1
    assert capsys.readouterr().err == f"sharpkd: skipped {tmp_path / 'nope.png'}: no such file or directory\n"


def test_sharpen_unknown_model_exits_2_with_one_line(tiny_models_dir: Path, photos: Path, tmp_path, capsys) -> None:
    assert main(["sharpen", str(photos / "a.png"), "-o", str(tmp_path / "out"), "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sharpkd: error: unknown model 'nope'")
    assert "student" in err  # lists what is available
    assert not (tmp_path / "out").exists()


def write_bad_checkpoint(path: Path, kind: str) -> None:
    good = path.with_name("good.pt")
    save_checkpoint(good, build_model("rt", width=8))
    ckpt = torch.load(good, weights_only=True)
    if kind == "garbage":
        path.write_bytes(b"PK\x03\x04 definitely not a zip")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "nan":
        ckpt["model"] = {k: torch.full_like(v, math.nan) for k, v in ckpt["model"].items()}
        torch.save(ckpt, path)
    elif kind == "mismatch":
        ckpt["config"]["width"] = 16
        torch.save(ckpt, path)
    elif kind == "negative":
        ckpt["config"]["width"] = -1
        torch.save(ckpt, path)
    elif kind == "meta":
        ckpt["meta"] = [1, 2]
        torch.save(ckpt, path)
    elif kind == "pickle":
        ckpt["payload"] = Path("/etc/passwd")  # any non-tensor object needs unpickling code
        torch.save(ckpt, path)


@pytest.mark.parametrize("kind", ["garbage", "empty", "nan", "mismatch", "negative", "meta", "pickle"])
def test_sharpen_corrupt_checkpoint_exits_2_without_traceback(kind: str, photos: Path, tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / f"{kind}.pt"
    write_bad_checkpoint(ckpt, kind)
    assert main(["sharpen", str(photos / "a.png"), "-o", str(tmp_path / "out"), "--model", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sharpkd: error: ") and "Traceback" not in err
    assert str(ckpt) in err or repr(str(ckpt)) in err
    assert not (tmp_path / "out").exists()


def test_degrade_is_deterministic(photos: Path, tmp_path: Path, capsys) -> None:
    runs = []
    for name in ("one", "two"):
        out = tmp_path / name
        assert main(["degrade", str(photos / "a.png"), "-o", str(out), "--degradation", "motion9", "--seed", "3"]) == 0
        runs.append((out / "a_motion9.png").read_bytes())
    assert runs[0] == runs[1]
    expected = degrade_image(read_image(photos / "a.png"), "motion9", seed=3, strength=1.0)
    np.testing.assert_array_equal(read_image(tmp_path / "one" / "a_motion9.png"), expected)

    out = tmp_path / "other"
    assert main(["degrade", str(photos / "a.png"), "-o", str(out), "--degradation", "motion9", "--seed", "4"]) == 0
    assert (out / "a_motion9.png").read_bytes() != runs[0]


def test_degrade_batch_skips_bad_files(photos: Path, tmp_path: Path, capsys) -> None:
    assert main(["degrade", str(photos), "-o", str(tmp_path / "out"), "--degradation", "vc", "--strength", "0.5"]) == 1
    assert capsys.readouterr().err.count("sharpkd: skipped") == len(BAD_FILES)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["a_vc.png", "b_vc.png"]


def test_evaluate_json(tiny_models_dir: Path, capsys) -> None:
    args = ["evaluate", "--models", "student,teacher", "--limit", "2", "--max-side", "40", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["rows"]) == ["input", "unsharp", "cas", "ffmpeg-unsharp", "student", "teacher"]
    assert result["images"] == ["astronaut", "coffee"]
    assert result["degradations"] == ["downup2", "gauss1.5", "motion9", "vc", "h264", "vp8"]
    for row in result["rows"].values():
        for deg in result["degradations"]:
            assert 5 < row[deg]["psnr"] < 60 and -1 <= row[deg]["ssim"] <= 1
        assert math.isfinite(row["mean"]["gain"]) and math.isfinite(row["synthetic"]["gain"])
    assert result["rows"]["input"]["mean"]["gain"] == 0.0


def test_evaluate_table(tiny_models_dir: Path, capsys) -> None:
    args = ["evaluate", "--models", "student", "--limit", "1", "--max-side", "32", "--degradations", "vc"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| method | vc SSIM | vc PSNR | mean PSNR | gain (dB) | worst image |" in out
    assert [line.split(" | ")[0] for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:] == [
        "| input (degraded)",
        "| unsharp (sigma 2, amount 1)",  # no peer cards in this models folder: the registered defaults
        "| cas (strength 0.5)",
        "| ffmpeg-unsharp (amount 1)",
        "| student",
    ]


def test_evaluate_shows_the_tuned_peers_and_the_best_classical_row_from_the_cards(tiny_models_dir: Path, capsys):
    args = ["cards", "--out", str(tiny_models_dir), "--limit", "1", "--max-side", "24"]
    assert main(args) == 0
    assert f"wrote {tiny_models_dir / 'cas.json'}" in capsys.readouterr().out
    cas = json.loads((tiny_models_dir / "cas.json").read_text())["classical"]
    assert main(["evaluate", "--models", "student", "--limit", "1", "--max-side", "24"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" | ")[0][2:] for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert f"cas (strength {cas['setting']['strength']:g})" in rows
    assert rows[-2:] == ["best classical, tuned per preset", "student"]
    assert "best classical, tuned per preset: downup2 " in out


def test_benchmark_json_runs_in_a_worker_process(tiny_models_dir: Path, capsys) -> None:
    args = ["benchmark", "--models", "student", "--resolutions", "64x48", "--backends", "torch"]
    assert main([*args, "--repeats", "3", "--warmup", "1", "--threads", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["results"]
    assert row["model"] == "student" and (row["width"], row["height"]) == (64, 48)
    assert 0 < row["p50_ms"] <= row["p95_ms"] and row["fps"] == pytest.approx(1000 / row["p50_ms"])
    assert report["unsharp_ms"]["64x48"] > 0
    assert row["unsharp_ms"] > 0 and row["ratio_to_unsharp"] == pytest.approx(row["p50_ms"] / row["unsharp_ms"])
    assert row["parameters"] == count_parameters(load("student").model) and row["macs"] > 0
    assert row["peak_mb"] is not None and row["peak_mb"] >= 0 and row["threads"] == 1


def test_benchmark_times_the_peers_by_default() -> None:
    args = build_parser().parse_args(["benchmark"])
    assert args.models == "student,teacher,unsharp,cas,ffmpeg-unsharp"


def test_degradation_choices_are_the_six_presets_and_the_mixes() -> None:
    parser = build_parser()
    assert parser.parse_args(["video", "in.mp4", "-o", "o.mp4", "--degrade", "vp8"]).degrade == "vp8"
    assert parser.parse_args(["degrade", "x", "-o", "y", "--degradation", "h264"]).degradation == "h264"
    assert parser.parse_args(["evaluate"]).degradations == "downup2,gauss1.5,motion9,vc,h264,vp8"
    with pytest.raises(SystemExit):
        parser.parse_args(["degrade", "x", "-o", "y", "--degradation", "presets+codecs"])  # the dropped mix


def test_benchmark_unknown_model_exits_2(tiny_models_dir: Path, capsys) -> None:
    assert main(["benchmark", "--models", "nope", "--resolutions", "64x48"]) == 2
    assert capsys.readouterr().err.startswith("sharpkd: error: unknown model 'nope'")


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_export_onnx_and_torchscript_with_parity(tiny_models_dir: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    onnx_path, ts_path = tmp_path / "teacher.onnx", tmp_path / "teacher.pt"
    assert main(["export", "teacher", "-o", str(onnx_path), "--torchscript", str(ts_path)]) == 0
    out = capsys.readouterr().out
    diff = int(re.search(r"max abs diff (\d+)/255", out).group(1))
    assert diff <= 1 and onnx_path.stat().st_size > 0
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(torch.jit.load(str(ts_path))(x), load("teacher").model(x), atol=1e-4, rtol=0)


def test_export_failure_exits_1(tiny_models_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import sharpkd.runtime.export

    def fail(model, path, check=True):
        raise RuntimeError("ONNX parity check failed: max abs difference 7/255 (limit 1)")

    monkeypatch.setattr(sharpkd.runtime.export, "export_onnx", fail)
    assert main(["export", "student", "-o", str(tmp_path / "s.onnx")]) == 1
    assert (
        capsys.readouterr().err
        == "sharpkd: export failed: ONNX parity check failed: max abs difference 7/255 (limit 1)\n"
    )
    assert main(["export", "unsharp", "-o", str(tmp_path / "u.onnx")]) == 2


def test_video_on_a_synthesized_clip(tiny_models_dir: Path, tmp_path: Path, capsys) -> None:
    from sharpkd.runtime.video import synthesize_clip

    clip = synthesize_clip(tmp_path / "clip.mp4", frames=8, size=(64, 48))
    out = tmp_path / "out.mp4"
    args = ["video", clip, "-o", str(out), "--model", "student", "--side-by-side", "--degrade", "vc"]
    assert main([*args, "--max-frames", "5"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"frames: 5 (128x48 at 12.0 FPS) -> {out}\n")
    assert re.search(r"flicker ratio: \d+\.\d{3}", printed) and "processing FPS" in printed
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 5 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 128
    capture.release()


def test_video_turns_onnx_spinning_off_unless_asked(tiny_models_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The pipeline's reader and writer threads share the cores with the model, so ``video`` loads it with
    ``spin=False`` (ONNX Runtime's idle threads would hold the cores); ``--spin`` turns it back on."""
    import sharpkd.cli.tools
    from sharpkd.runtime.video import synthesize_clip

    seen = []
    real = sharpkd.cli.tools.load_sharpener

    def spy(*args, **kwargs):
        sharpener = real(*args, **kwargs)
        seen.append(sharpener.spin)
        return sharpener

    monkeypatch.setattr(sharpkd.cli.tools, "load_sharpener", spy)
    clip = synthesize_clip(tmp_path / "clip.mp4", frames=3, size=(32, 32))
    for extra in ([], ["--spin"], ["--no-spin"]):
        assert main(["video", clip, "-o", str(tmp_path / "out.mp4"), "--max-frames", "2", *extra]) == 0
    assert seen == [False, True, False]


def test_video_needs_exactly_one_source(tiny_models_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["video", "-o", str(tmp_path / "out.mp4")]) == 2
    assert main(["video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out.mp4")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "sharpkd: error: give exactly one source: a video file INPUT or --camera N"
    assert err[1].startswith("sharpkd: error: ") and "missing.mp4" in err[1]


def test_cards_command_stamps_itself(tiny_models_dir: Path, capsys) -> None:
    args = ["cards", "--out", str(tiny_models_dir), "--limit", "1", "--max-side", "24"]
    assert main(args) == 0
    readme = (tiny_models_dir / "README.md").read_text()
    assert f"```\nsharpkd cards --out {tiny_models_dir} --limit 1 --max-side 24\n```" in readme
    card = json.loads((tiny_models_dir / "student-nokd.json").read_text())
    assert card["generated"]["command"] == f"sharpkd cards --out {tiny_models_dir} --limit 1 --max-side 24"
    assert f"wrote {tiny_models_dir / 'README.md'}" in capsys.readouterr().out


def test_cards_on_a_folder_without_checkpoints_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["cards", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("sharpkd: error: no checkpoints (*.pt)")


def test_training_subcommands_still_parse() -> None:
    args = build_parser().parse_args(["distill", "--out", "runs/x", "--steps", "3"])
    assert args.command == "distill" and args.steps == 3 and args.teacher == "teacher"
    assert args.model is None and args.default_model == "rt"  # None: rt, or the --init checkpoint's preset
    args = build_parser().parse_args(["train-teacher", "--out", "runs/t"])
    assert args.command == "train-teacher" and args.default_model == "nafnet" and args.losses == "l1=1"


def test_python_m_sharpkd_help() -> None:
    result = subprocess.run([sys.executable, "-m", "sharpkd", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in (
        "train-teacher",
        "distill",
        "sharpen",
        "degrade",
        "evaluate",
        "benchmark",
        "export",
        "video",
        "cards",
    ):
        assert command in result.stdout
