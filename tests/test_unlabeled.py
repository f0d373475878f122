"""Distillation on unlabeled soft footage: sharpkd.training.unlabeled (footage reading, teacher labels, crops,
validation against the teacher), ``sharpkd distill --unlabeled DIR`` end to end, and the Train page's footage mode
(sharpkd.app.finetune, and the page itself in AppTest). Tiny teachers and students throughout."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from appserver import fresh_app
from PIL import Image
from synthetic import wave_frame

import sharpkd.app.jobs
from sharpkd.app.clip import ClipLimits
from sharpkd.app.finetune import (
    FootageJob,
    FootageLimits,
    FootageUpload,
    decode_footage,
    footage_config,
    footage_from_uploads,
)
from sharpkd.checkpoint import load_checkpoint, save_checkpoint
from sharpkd.cli import main
from sharpkd.data import to_tensor, to_uint8
from sharpkd.errors import (
    DatasetError,
    FootageError,
    NoFootageError,
    NoUsableFramesError,
    UnreadableFootageError,
)
from sharpkd.models import build_model
from sharpkd.runtime.videoio import synthesize_clip
from sharpkd.training.cache import TeacherCache
from sharpkd.training.loop import TrainConfig, fit
from sharpkd.training.unlabeled import (
    FOOTAGE_PRESET,
    Footage,
    LabelledFootage,
    TeacherTargets,
    collect_frames,
    find_footage,
    holdout_indices,
    label_frames,
    load_footage,
    prepare_unlabeled,
    read_footage,
    sample_evenly,
)
from sharpkd.training.validation import evaluate_tensor_fn

WAIT_S = 300  # a tiny run takes seconds; the machine may be busy
CLIP_FRAMES, CLIP_SIZE, CLIP_FPS = 20, (64, 48), 12.0  # 1.7 s


def _tiny_teacher() -> nn.Module:
    torch.manual_seed(0)
    return build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1).eval()


@pytest.fixture
def teacher() -> nn.Module:
    return _tiny_teacher()


@pytest.fixture(autouse=True)
def temporary_folders(monkeypatch, tmp_path):
    """Jobs with no checkpoint_dir write to fresh temporary folders: keep those inside pytest's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return Path(synthesize_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", CLIP_FRAMES, CLIP_SIZE, CLIP_FPS))


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def footage_dir(tmp_path, clip) -> Path:
    """Two soft frames, a clip in a sub-folder, a corrupt image and a text file."""
    d = tmp_path / "footage"
    (d / "calls").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(wave_frame(40, 56, seed=i)).save(d / f"frame{i}.png")
    (d / "calls" / "clip.mp4").write_bytes(clip.read_bytes())
    (d / "broken.jpg").write_bytes(b"not a jpeg")
    (d / "notes.txt").write_text("ignored")
    return d


# -- reading footage ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k"), [(100, 10), (7, 7), (33, 16), (1000, 3)])
def test_sample_evenly_spreads_over_an_iterable_of_unknown_length(n, k):
    got = sample_evenly(iter(range(n)), k)
    assert len(got) == k and got == sorted(got) and got[0] == 0
    gaps = np.diff(got)
    assert gaps.max() <= 2 * n / k + 1, gaps  # no stretch of the iterable left out
    assert got[-1] >= n - 2 * n / k - 1  # the end is reached too


def test_sample_evenly_keeps_short_iterables_whole_and_checks_k():
    assert sample_evenly(range(3), 5) == [0, 1, 2]
    with pytest.raises(ValueError, match="k must be >= 1"):
        sample_evenly(range(3), 0)


def test_find_footage_lists_images_and_videos_recursively(footage_dir):
    assert [p.name for p in find_footage(footage_dir)] == ["broken.jpg", "clip.mp4", "frame0.png", "frame1.png"]


def test_find_footage_errors(tmp_path):
    with pytest.raises(NoFootageError, match="footage folder not found"):
        find_footage(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(NoFootageError, match="no image or video files"):
        find_footage(tmp_path / "empty")
    assert issubclass(NoFootageError, FootageError) and issubclass(FootageError, DatasetError)


def test_read_footage_samples_a_clip_evenly(clip):
    frames = read_footage(clip, frames_per_video=4)
    assert len(frames) == 4 and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[-1])  # the pattern moves: frames from across the clip
    assert len(read_footage(clip, frames_per_video=100)) == CLIP_FRAMES


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"max_seconds": 1.0}, r"lasts 2 s; the limit is 1 s"), ({"max_pixels": 1000}, r"64x48 .* the limit is")],
)
def test_read_footage_refuses_clips_over_the_limits(clip, kw, match):
    with pytest.raises(UnreadableFootageError, match=match):
        read_footage(clip, **kw)


def test_read_footage_corrupt_files(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "bad.png").write_bytes(b"nope")
    for name in ("bad.mp4", "bad.png"):
        with pytest.raises(UnreadableFootageError, match="bad"):
            read_footage(tmp_path / name)


def test_load_footage_skips_bad_files_and_names_video_frames(footage_dir):
    footage = load_footage(find_footage(footage_dir), frames_per_video=3)
    assert len(footage) == 2 + 3
    assert footage.names == ["clip.mp4#0", "clip.mp4#1", "clip.mp4#2", "frame0.png", "frame1.png"]
    assert [name for name, _ in footage.skipped] == ["broken.jpg"]
    np.testing.assert_array_equal(footage.frames[3], wave_frame(40, 56, seed=0))


def test_load_footage_caps_the_frames_and_drops_small_ones(footage_dir):
    capped = load_footage(find_footage(footage_dir), frames_per_video=8, max_frames=4)
    assert len(capped) == 4 and capped.names[0] == "clip.mp4#0" and capped.names[-1] == "frame1.png"
    big = load_footage(find_footage(footage_dir), frames_per_video=2, min_size=45)  # clip 48 px high, frames 40
    assert big.names == ["clip.mp4#0", "clip.mp4#1"]
    assert sorted(name for name, _ in big.skipped) == ["broken.jpg", "frame0.png", "frame1.png"]
    assert "56x40 is smaller than 45 px" in dict(big.skipped)["frame0.png"]


def test_load_footage_errors(footage_dir, tmp_path):
    with pytest.raises(NoFootageError):
        load_footage([])
    (tmp_path / "a.mp4").write_bytes(b"")
    with pytest.raises(UnreadableFootageError, match="none of the 2 footage files could be decoded"):
        load_footage([footage_dir / "broken.jpg", tmp_path / "a.mp4"])
    with pytest.raises(NoUsableFramesError, match="at least 100 px"):
        load_footage(find_footage(footage_dir), min_size=100)
    with pytest.raises(ValueError, match="frames_per_video"):
        load_footage(find_footage(footage_dir), frames_per_video=0)


# -- labels, crops, validation -----------------------------------------------------------------------------------------


def test_label_frames_runs_the_teacher_on_whole_frames_and_tiling_does_not_show(teacher):
    frame = wave_frame(150, 170, seed=3)
    done = []
    (whole,) = label_frames(teacher, [frame], tile=512, progress=lambda d, t: done.append((d, t)))
    with torch.no_grad():
        np.testing.assert_array_equal(whole, to_uint8(teacher(to_tensor(frame))))
    (tiled,) = label_frames(teacher, [frame], tile=64)  # 64 px tiles with 64 px margins: the same output
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    assert done == [(1, 1)]


def _labelled(n: int = 3, size: tuple[int, int] = (40, 56)) -> LabelledFootage:
    frames = [wave_frame(*size, seed=i) for i in range(n)]
    return LabelledFootage(frames, [255 - f for f in frames], [f"f{i}.png" for i in range(n)])  # inverted "labels"


def test_crops_are_aligned_teacher_cache_items():
    crops = _labelled().crops(12, 16, seed=0)
    assert isinstance(crops, TeacherCache) and len(crops) == 12
    assert crops.gt is crops.teacher_pred  # the target is the teacher's output, stored once
    lq, gt, teacher_pred = crops[5]
    assert lq.shape == gt.shape == (3, 16, 16) and torch.equal(gt, teacher_pred)
    torch.testing.assert_close(lq + gt, torch.ones_like(lq), atol=2e-3, rtol=0)  # the same region, flips included
    again = _labelled().crops(12, 16, seed=0)
    assert torch.equal(again.lq, crops.lq) and not torch.equal(_labelled().crops(12, 16, seed=1).lq, crops.lq)


def test_crops_spread_over_the_frames_and_refuse_small_ones():
    flat = [np.full((40, 56, 3), 10 * (i + 1), np.uint8) for i in range(3)]  # each frame's value names it
    only_two = LabelledFootage(flat, flat, ["a", "b", "c"]).crops(6, 16, indices=[0, 2])
    values = sorted(round(float(only_two.lq[i].float().mean()) * 255) for i in range(6))
    assert values == [10, 10, 10, 30, 30, 30]
    labelled = _labelled(3)
    with pytest.raises(NoUsableFramesError, match="smaller than the 48 px training crop"):
        labelled.crops(4, 48)
    with pytest.raises(ValueError, match="count >= 1"):
        labelled.crops(0, 16)


@pytest.mark.parametrize(("n", "holdout", "expected"), [(16, None, [5, 10]), (5, None, []), (4, 1, [2]), (9, 0, [])])
def test_holdout_indices(n, holdout, expected):
    assert holdout_indices(n, holdout) == expected


@pytest.mark.parametrize(("n", "holdout"), [(4, 4), (3, -1)])
def test_holdout_indices_must_leave_training_frames(n, holdout):
    with pytest.raises(ValueError, match="holdout must be in"):
        holdout_indices(n, holdout)


def test_teacher_targets_score_against_the_teacher_on_centre_crops():
    labelled = _labelled(2, size=(40, 70))
    val = labelled.validation([0, 1], max_side=32)
    assert val.presets == (FOOTAGE_PRESET,) and len(val) == 2
    name, lq, target = val.pairs()[0]
    assert name == "f0.png" and lq.shape == target.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(to_uint8(lq), labelled.frames[0][4:36, 19:51])
    metrics = evaluate_tensor_fn(lambda x: 1 - x, val)  # the inverted frame *is* the label
    assert set(metrics) == {FOOTAGE_PRESET, "mean"}
    assert metrics["mean"]["psnr"] > 50 and metrics["mean"]["input_psnr"] < 15
    with pytest.raises(ValueError, match="one preset"):
        val.pairs("h264")
    with pytest.raises(ValueError, match="need as many"):
        TeacherTargets([], [], [])


def test_prepare_unlabeled_holds_frames_back_and_fit_trains_towards_the_teacher(teacher):
    footage = collect_frames([(f"f{i}.png", [wave_frame(40, 48, seed=i)]) for i in range(8)])
    data = prepare_unlabeled(teacher, footage, patch_size=16, crops=16, seed=0)
    assert data.held_back and data.val_names == ["f4.png"] and len(data.train_names) == 7 and len(data.train) == 16
    assert "f4.png" not in data.train_names
    student = build_model("rt", width=4)
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup_steps=1, losses="psnr=1", val_every=3, device="cpu")
    result = fit(cfg, None, student, data.train, val=data.val)  # no teacher: the cache carries its outputs
    assert result.steps == 3 and set(result.history[-1]) >= {"footage/psnr", "footage/input_psnr", "mean/gain"}
    few = prepare_unlabeled(teacher, Footage(footage.frames[:3], footage.names[:3]), patch_size=16, crops=8)
    assert not few.held_back and few.val_names == few.train_names == footage.names[:3]
    with pytest.raises(NoUsableFramesError):
        prepare_unlabeled(teacher, footage, patch_size=64)


# -- sharpkd distill --unlabeled ---------------------------------------------------------------------------------------

TINY_RUN = "--model rt --set width=4 --patch-size 16 --steps 4 --batch-size 2 --val-every 2 --warmup 1 --crops 12"


@pytest.fixture
def teacher_file(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "teacher.pt", _tiny_teacher(), meta={"preset": "nafnet"})


def _distill(footage: Path, teacher_file: Path, out: Path, *extra: str) -> int:
    argv = ["distill", "--unlabeled", str(footage), "--teacher", str(teacher_file), "--out", str(out)]
    return main([*argv, *TINY_RUN.split(), "--device", "cpu", "--frames-per-video", "6", *extra])


def test_cli_distill_unlabeled_end_to_end(footage_dir, teacher_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert _distill(footage_dir, teacher_file, out) == 0  # no --data needed
    printed = capsys.readouterr()
    assert "skipped broken.jpg" in printed.err
    assert "8 frames from" in printed.out and "12 crops of 7 frames" in printed.out and "1 held-back" in printed.out
    model, meta = load_checkpoint(out / "final.pt")
    assert meta["steps"] == 4 and meta["data"] == str(footage_dir) and meta["degradation"].startswith("none")
    assert meta["val"]["footage/psnr"] > 0 and meta["val"]["step"] == 4
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["meta"]["train"]["losses"] == "psnr=1"  # distill's feature-KD default replaced
    assert (out / "metrics.jsonl").read_text().count("footage/psnr") == 2


def test_cli_distill_unlabeled_fine_tunes_init_weights(footage_dir, teacher_file, tmp_path):
    torch.manual_seed(1)
    init = save_checkpoint(tmp_path / "student.pt", build_model("rt", width=4), meta={"preset": "rt"})
    out = tmp_path / "run"
    assert _distill(footage_dir, teacher_file, out, "--init", str(init), "--losses", "l1=1,kd_psnr=0.1") == 0
    before, _ = load_checkpoint(init)
    after, meta = load_checkpoint(out / "final.pt")
    assert meta["init"]["from"] == str(init) and meta["init"]["preset"] == "rt"  # where the starting weights came from
    assert any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("empty", (), "no image or video files"),
        ("missing", (), "footage folder not found"),
        ("corrupt", (), "none of the 1 footage files could be decoded"),
        ("good", ("--patch-size", "128"), "is at least 128 px"),
        ("good", ("--data", "photos", "--val", "photos"), "drop --data, --val"),
        ("good", ("--cache-teacher", "8"), "drop --cache-teacher"),
        ("good", ("--losses", "l1=1,feat=0.1"), "drop 'feat'"),
        ("good", ("--holdout", "99"), "holdout must be in"),
        ("good", ("--crops", "4", "--batch-size", "8"), "--crops (4) must be at least --batch-size (8)"),
        ("good", ("--max-frames", "0"), "--max-frames must be >= 1"),
    ],
)
def test_cli_distill_unlabeled_errors_are_one_line(setup, extra, message, footage_dir, teacher_file, tmp_path, capsys):
    root = {"good": footage_dir, "missing": tmp_path / "missing"}.get(setup, tmp_path / setup)
    if setup in ("empty", "corrupt"):
        root.mkdir()
    if setup == "corrupt":
        (root / "x.webm").write_bytes(b"garbage")
    assert _distill(root, teacher_file, tmp_path / "run", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sharpkd: error: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)


# -- the app: sharpkd.app.finetune -------------------------------------------------------------------------------------


def test_decode_footage_images_and_clips(clip):
    frame = wave_frame(40, 56)
    upload = decode_footage("me.png", _png(frame))
    assert upload.name == "me.png" and len(upload.frames) == 1
    np.testing.assert_array_equal(upload.frames[0], frame)
    video = decode_footage("call.mp4", clip.read_bytes(), FootageLimits(max_frames=5))
    assert len(video.frames) == 5 and video.notes == ("5 frames sampled evenly from the clip",)


@pytest.mark.parametrize(
    ("name", "data", "limits", "match"),
    [
        ("call.mp4", b"\x00" * 64, FootageLimits(), "call.mp4"),
        ("me.jpg", b"not a jpeg", FootageLimits(), "me.jpg"),
        ("notes.txt", b"hello", FootageLimits(), "neither an image nor a video"),
        (
            "long.mp4",
            None,
            FootageLimits(clip=ClipLimits(max_seconds=1.0)),
            r"long.mp4 is 1.7 s long; the limit is 1 s",
        ),
        ("big.mp4", None, FootageLimits(clip=ClipLimits(max_bytes=100)), r"big.mp4 is 0 MB; the limit is 0 MB"),
    ],
)
def test_decode_footage_bad_uploads_name_the_file(name, data, limits, match, clip):
    with pytest.raises(UnreadableFootageError, match=match) as info:
        decode_footage(name, clip.read_bytes() if data is None else data, limits)
    assert "upload." not in str(info.value)  # the user's name, not the temporary file's


def test_footage_from_uploads_limits():
    uploads = [FootageUpload(f"f{i}.png", [wave_frame(40, 56, seed=i)]) for i in range(3)]
    footage = footage_from_uploads(uploads, 16, FootageLimits(max_frames=2))
    assert footage.names == ["f0.png", "f2.png"]
    with pytest.raises(FootageError, match="3 files; the limit is 2"):
        footage_from_uploads(uploads, 16, FootageLimits(max_files=2))
    with pytest.raises(NoUsableFramesError):
        footage_from_uploads(uploads, 64)
    with pytest.raises(NoFootageError):
        footage_from_uploads([], 16)


def _tiny_footage_cfg(**kw):
    tiny = dict(init=None, student="rt", overrides={"width": 4}, steps=4, batch_size=2, patch_size=16)
    return footage_config(**(tiny | kw))


def test_footage_job_labels_then_fine_tunes(teacher, tmp_path):
    footage = collect_frames([(f"f{i}.png", [wave_frame(40, 48, seed=i)]) for i in range(3)])
    job = FootageJob(_tiny_footage_cfg(val_every=2), teacher, footage, name="mine", checkpoint_dir=tmp_path, crops=8)
    assert job.labelling == (0, 3) and job.data is None  # nothing heavy in the constructor
    initial = {k: v.clone() for k, v in job.student.state_dict().items()}
    assert job.start().wait(WAIT_S) and job.status == "done", job.error
    assert job.labelling is None and job.footage is None and job.data is None  # dropped once finished
    snap = job.snapshot()
    assert [v["step"] for v in snap.val] == [0, 2, 4] and snap.val[0]["input_psnr"] > 0
    model, meta = load_checkpoint(job.checkpoint_path)
    assert meta["degradation"].startswith("none") and meta["footage"] == ["f0.png", "f1.png", "f2.png"]
    assert meta["held_back"] is False and meta["losses"] == "psnr=1"
    assert any(not torch.equal(initial[k], v) for k, v in model.state_dict().items())
    assert job.sharpener().sharpen(wave_frame(20, 24)).shape == (20, 24, 3)


def test_footage_job_rejects_bad_settings_up_front(teacher):
    footage = collect_frames([("f.png", [wave_frame(40, 48)])])
    with pytest.raises(ValueError, match="needs a teacher"):
        FootageJob(_tiny_footage_cfg(), None, footage)
    with pytest.raises(ValueError, match="without 'feat'"):
        FootageJob(_tiny_footage_cfg(losses="l1=1,feat=0.1"), teacher, footage)
    with pytest.raises(ValueError, match="at least the batch size"):
        FootageJob(_tiny_footage_cfg(), teacher, footage, crops=1)
    with pytest.raises(NoUsableFramesError, match="smaller than the 64 px"):
        FootageJob(_tiny_footage_cfg(patch_size=64), teacher, footage)


def test_footage_job_labelling_failure_is_a_message(tmp_path):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("teacher on strike")

    footage = collect_frames([("f.png", [wave_frame(40, 48)])])
    job = FootageJob(_tiny_footage_cfg(), Broken(), footage, checkpoint_dir=tmp_path, crops=4).start()
    assert job.wait(WAIT_S) and job.status == "failed"
    assert job.error == "RuntimeError: teacher on strike" and job.checkpoint_path is None and job.footage is None


def test_footage_job_cancelled_while_labelling_keeps_no_student(teacher, tmp_path):
    import threading

    labelling, release = threading.Event(), threading.Event()

    class Slow(nn.Module):  # the teacher, held on its first frame until the test has pressed Cancel
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            labelling.set()
            release.wait(WAIT_S)
            return self.inner(x)

    footage = collect_frames([(f"f{i}.png", [wave_frame(40, 48, seed=i)]) for i in range(3)])
    job = FootageJob(_tiny_footage_cfg(), Slow(teacher), footage, checkpoint_dir=tmp_path, crops=8).start()
    assert labelling.wait(WAIT_S)
    job.cancel()
    release.set()
    assert job.wait(WAIT_S) and job.status == "cancelled", job.error
    assert job.checkpoint_path is None and job.snapshot().val == []  # no training step, no 1-step student


# -- the Train page's footage mode -------------------------------------------------------------------------------------


@pytest.fixture
def app(tiny_models_dir, monkeypatch, photo):
    monkeypatch.setattr(sharpkd.app.jobs, "sample_images", lambda names=("a",): {n: photo for n in names})
    monkeypatch.setattr(sharpkd.app.jobs, "JOBS", sharpkd.app.jobs.JobRegistry())  # runs numbered from 1
    with fresh_app(120, WAIT_S) as at:
        yield at


def test_train_page_fine_tunes_on_uploaded_footage(app, clip):
    at = app.switch_page("pages/train.py").run()
    at.radio(key="tr_source").set_value("My soft footage (the teacher labels it)").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Upload up to 16 files" in c.value for c in at.caption)  # the limits, before any upload
    assert at.button(key="tr_start").disabled
    uploader = at.file_uploader(key="tr_footage")
    uploader.upload("frame.png", _png(wave_frame(40, 56)), "image/png")
    uploader.upload("call.mp4", clip.read_bytes(), "video/mp4")
    uploader.upload("broken.webm", b"garbage", "video/webm")
    at.number_input(key="tr_ft_steps").set_value(3)
    at.select_slider(key="tr_ft_patch").set_value(32)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value.split(":")[0] for e in at.error] == ["Could not use broken.webm"]
    assert any("16 frames to fine-tune on" in c.value for c in at.caption)  # 1 frame + 15 of the clip (capped)
    at.button(key="tr_start").click().run()
    job = at.session_state["train_job"]
    assert isinstance(job, FootageJob) and job.name == "my-student-footage-1" and job.cfg.init == "student"
    assert job.wait(WAIT_S) and job.status == "done", job.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(job.name in s.value for s in at.success)
    assert [d.proto.label for d in at.get("download_button")] == ["Download checkpoint (.pt)"]
    assert any("agreement with the teacher" in c.value for c in at.caption)


def test_train_page_offers_footage_only_with_a_teacher(app, tiny_models_dir):
    (tiny_models_dir / "teacher.pt").unlink()
    at = app.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.radio(key="tr_source").options == ["Built-in sample photos", "My photos"]
