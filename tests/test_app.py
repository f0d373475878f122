"""The Streamlit app, page by page, through streamlit.testing.v1.AppTest (no browser; see test_browser.py for that).

Every test runs app.py (so the navigation is exercised) with tiny models from the ``tiny_models_dir`` fixture and small
built-in photos. The heavy library call of each page is patched where the test is about the page, not the numbers.
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

import sharpkd
import sharpkd.app.compare
import sharpkd.app.jobs
import sharpkd.data

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PEERS = ["unsharp", "cas", "ffmpeg-unsharp"]  # the classical peers, shown and timed by default
TIMEOUT = 120  # seconds per script run; generous for a busy 2-core machine
WAIT_S = 300  # for a training thread to finish


@pytest.fixture
def small_photos(monkeypatch, photo):
    """The built-in photo gallery, shrunk to two small crops so every page runs in a fraction of a second."""
    gallery = {"astronaut": photo, "coffee": np.ascontiguousarray(photo[:, ::-1])}

    def sample_images(names=tuple(gallery)):
        return {n: gallery.get(n, photo) for n in names}

    monkeypatch.setattr(sharpkd.data, "sample_images", sample_images)
    monkeypatch.setattr(sharpkd.app.jobs, "sample_images", sample_images)
    return gallery


@pytest.fixture(autouse=True)
def temporary_folders(monkeypatch, tmp_path):
    """Trained students' checkpoints go to fresh temporary folders: keep those inside pytest's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def app(tiny_models_dir, small_photos):
    """A fresh AppTest on app.py with empty Streamlit caches (they are per process, so tests would share them)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    yield at.run()
    job = at.session_state["train_job"] if "train_job" in at.session_state else None
    if job is not None:
        job.cancel()
        job.wait(WAIT_S)
    st.cache_data.clear()
    st.cache_resource.clear()


class FakeCompare:
    """Stands in for app.compare.compare: the real degradation, but every model's output is a copy of the input."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, image, degradation, strength=1.0, models=None, **kw):
        self.calls.append((image, degradation, strength, list(models or {})))
        result = _real_compare(image, degradation, strength, {})
        for i, name in enumerate(models or {}):
            result.panels[name] = result.panels["input"].copy()
            result.scores[name] = dict(result.scores["input"])
            result.timings_ms[name] = 10.0 * (i + 1)
        return result


_real_compare = sharpkd.app.compare.compare


@pytest.fixture
def fake_compare(monkeypatch) -> FakeCompare:
    fake = FakeCompare()
    monkeypatch.setattr(sharpkd.app.compare, "compare", fake)
    return fake


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header that declares 10 gigapixels (and carries almost no data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def _image_captions(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# -- Home ----------------------------------------------------------------------------------------------------------


def test_home_without_model_cards(app):
    _no_exception(app)
    assert "sharpkd" in app.title[0].value
    assert any("No model cards" in i.value for i in app.info)
    assert len(app.dataframe) == 0


def test_home_shows_model_cards_and_readme(tiny_models_dir, small_photos):
    card = {"name": "student", "kind": "student", "parameters": 1234, "metrics": {"mean": {"psnr": 29.5, "ssim": 0.9}}}
    (tiny_models_dir / "student.json").write_text(json.dumps(card))
    (tiny_models_dir / "README.md").write_text("Trained on the built-in photos for **12k steps**.")
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    _no_exception(at)
    table = at.dataframe[0].value
    assert list(table["model"]) == ["student"] and table["PSNR (mean)"].iloc[0] == 29.5
    assert not any("No model cards" in i.value for i in at.info)
    assert any("12k steps" in m.value for m in at.markdown)


# -- Compare -------------------------------------------------------------------------------------------------------


def _to_compare(at: AppTest) -> AppTest:
    return at.switch_page("pages/compare.py").run()


def test_compare_gallery_renders_every_panel_and_metric(app, fake_compare, small_photos):
    at = _to_compare(app)
    _no_exception(at)
    assert len(fake_compare.calls) == 1
    image, degradation, strength, names = fake_compare.calls[0]
    np.testing.assert_array_equal(image, small_photos["astronaut"])
    assert (degradation, strength, names) == ("vc", 1.0, ["teacher", "student", *PEERS])

    # the peers are captioned with their setting (no cards in the tiny models folder: the registered defaults)
    peer_labels = ["unsharp (sigma 2, amount 1)", "cas (strength 0.5)", "ffmpeg-unsharp (amount 1)"]
    panels = ["original (sharp)", "degraded: vc x1", "teacher", "student", *peer_labels]
    captions = _image_captions(at)
    for label in panels:
        assert captions.count(label) == 2, label  # the panel and its zoomed crop
    assert sum(c.startswith("PSNR ") and " dB · SSIM " in c for c in _captions(at)) == 6  # input and 5 outputs
    assert [d.label for d in at.get("download_button")] == ["Download PNG"] * 6
    assert list(at.dataframe[0].value["image"]) == ["original", "input", "teacher", "student", *PEERS]
    assert len(at.get("plotly_chart")) == 1  # inference time per model
    wipe = at.get("iframe")
    assert len(wipe) == 1 and "data:image/png;base64," in wipe[0].proto.srcdoc


def test_compare_with_real_tiny_models(app):
    at = _to_compare(app)
    _no_exception(at)
    table = at.dataframe[0].value
    assert list(table["image"]) == ["original", "input", "teacher", "student", *PEERS]
    assert table["PSNR (dB)"].iloc[1:].notna().all() and table["SSIM"].iloc[1:].between(0, 1).all()


def test_compare_peers_use_their_tuned_card_and_can_be_dropped(app, fake_compare, tiny_models_dir):
    (tiny_models_dir / "cas.json").write_text(json.dumps({"name": "cas", "classical": {"setting": {"strength": 0.9}}}))
    st.cache_resource.clear()  # models are cached per process: load the peer again with its card
    at = _to_compare(app)
    _no_exception(at)
    assert "cas (strength 0.9)" in _image_captions(at)
    peers = at.multiselect(key="cmp_peers")
    assert peers.options == PEERS and peers.value == PEERS
    peers.set_value(["cas"]).run()
    _no_exception(at)
    assert fake_compare.calls[-1][3] == ["teacher", "student", "cas"]


def test_compare_offers_the_six_presets(app, fake_compare):
    at = _to_compare(app)
    assert at.selectbox(key="cmp_degr").options == [*sharpkd.PRESETS, "already blurry (no sharp original)"]
    at.selectbox(key="cmp_degr").set_value("h264").run()
    _no_exception(at)
    assert fake_compare.calls[-1][1] == "h264" and "degraded: h264 x1" in _image_captions(at)


def test_compare_other_degradations_and_zoom(app, fake_compare):
    at = _to_compare(app)
    at.selectbox(key="cmp_degr").set_value("gauss1.5")
    at.slider(key="cmp_strength").set_value(1.5)
    at.select_slider(key="cmp_zoom").set_value(8)
    at.selectbox(key="cmp_sample").set_value("coffee")
    at.run()
    _no_exception(at)
    _, degradation, strength, _ = fake_compare.calls[-1]
    assert (degradation, strength) == ("gauss1.5", 1.5)
    assert "degraded: gauss1.5 x1.5" in _image_captions(at)


def test_compare_already_blurry_explains_missing_reference(app, fake_compare):
    at = _to_compare(app)
    at.selectbox(key="cmp_degr").set_value("already blurry (no sharp original)")
    at.run()
    _no_exception(at)
    assert fake_compare.calls[-1][1] is None
    assert any("SSIM and PSNR need a sharp reference" in i.value for i in at.info)
    assert not any("PSNR" in c for c in _captions(at))
    assert sum(c.startswith("sharpness ") for c in _captions(at)) == 6  # input and five outputs
    assert "original (sharp)" not in _image_captions(at)
    assert "PSNR (dB)" not in at.dataframe[0].value.columns


def test_compare_lists_other_shipped_students(app, fake_compare):
    at = _to_compare(app)
    extra = at.multiselect(key="cmp_extra")
    assert set(extra.options) == {"conv4", "resattn", "sepunet", "student-nokd"}
    extra.set_value(["sepunet"]).run()
    _no_exception(at)
    assert fake_compare.calls[-1][3] == ["teacher", "student", *PEERS, "sepunet"]


def test_compare_without_models_still_runs_unsharp(app, fake_compare, tiny_models_dir):
    for checkpoint in tiny_models_dir.glob("*.pt"):
        checkpoint.unlink()
    at = _to_compare(app)
    _no_exception(at)
    assert any("No trained models found" in i.value for i in at.info)
    assert fake_compare.calls[-1][3] == PEERS


def _upload(at: AppTest, name: str, data: bytes, mime: str) -> AppTest:
    at = _to_compare(at)
    at.radio(key="cmp_source").set_value("Upload").run()
    at.file_uploader(key="cmp_upload").upload(name, data, mime)
    return at.run()


def test_compare_upload_is_downscaled_with_a_note(app, fake_compare):
    yy, xx = np.mgrid[0:1200, 0:1800]
    big = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)  # 2.16 MP
    at = _upload(app, "big.png", _png(big), "image/png")
    _no_exception(at)
    assert not at.error
    assert any("downscaled" in i.value for i in at.info)
    image = fake_compare.calls[-1][0]
    assert image.shape[0] * image.shape[1] <= 2_000_000 and image.shape[1] > image.shape[0]


BAD_UPLOADS = {
    "zero-byte": ("empty.png", b"", "image/png"),
    "text as jpg": ("notes.jpg", b"these are my meeting notes, not a photo\n" * 20, "image/jpeg"),
    "truncated": ("cut.png", None, "image/png"),  # filled in below from a real PNG
    "bomb": ("bomb.png", _bomb_png(), "image/png"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_compare_bad_upload_is_an_error_message(app, fake_compare, photo, case):
    name, data, mime = BAD_UPLOADS[case]
    if data is None:
        data = _png(photo)[: len(_png(photo)) // 2]
    at = _upload(app, name, data, mime)
    _no_exception(at)
    assert len(at.error) == 1 and at.error[0].value.startswith("Could not use this image.")
    # Only the sample photo shown on the first visit was compared, never the bad upload.
    assert [call[0].shape for call in fake_compare.calls] == [photo.shape]
    assert any("Pick a sample photo" in i.value for i in at.info)  # the page keeps working
    at.radio(key="cmp_source").set_value("Sample photo").run()
    _no_exception(at)
    assert not at.error and list(at.dataframe[0].value["image"])[:2] == ["original", "input"]


def test_compare_webcam_snapshot(app, fake_compare, photo):
    at = _to_compare(app)
    at.radio(key="cmp_source").set_value("Webcam snapshot").run()
    at.camera_input(key="cmp_camera").upload("snapshot.jpg", _jpeg(photo))
    at.run()
    _no_exception(at)
    assert fake_compare.calls[-1][0].shape == photo.shape


def test_compare_too_small_image_is_an_error_message(app):
    at = _upload(app, "tiny.png", _png(np.zeros((4, 4, 3), np.uint8)), "image/png")
    _no_exception(at)
    assert len(at.error) == 1 and "at least 16 px" in at.error[0].value


# -- Train ---------------------------------------------------------------------------------------------------------


def _start_training(at: AppTest, steps: int = 3) -> sharpkd.app.jobs.TrainingJob:
    at.switch_page("pages/train.py").run()
    at.number_input(key="tr_steps").set_value(steps)
    at.select_slider(key="tr_patch").set_value(32)
    at.button(key="tr_start").click().run()
    _no_exception(at)
    job = at.session_state["train_job"]
    assert job.wait(WAIT_S), "the tiny training run did not finish"
    return job


def test_train_run_completes_and_its_student_appears_on_compare(app):
    job = _start_training(app)
    assert job.status == "done", job.error
    assert job.cfg.steps == 3 and job.cfg.patch_size == 32 and job.cfg.losses == "l1=1,kd=0.5"
    at = app.run()
    _no_exception(at)
    assert any(job.name in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 3  # loss, validation PSNR, validation SSIM
    assert [m.label for m in at.metric][:2] == ["Validation PSNR", "Validation SSIM"]
    download = at.get("download_button")
    assert len(download) == 1 and download[0].proto.label == "Download checkpoint (.pt)"
    assert at.session_state["trained_models"][job.name].name == job.name

    at = _to_compare(at)
    _no_exception(at)
    extra = at.multiselect(key="cmp_extra")
    assert job.name in extra.options and extra.value == [job.name]
    assert job.name in list(at.dataframe[0].value["image"])
    assert job.name in _image_captions(at)


def test_train_on_uploaded_photos_skips_bad_files(app, photo):
    at = app.switch_page("pages/train.py").run()
    at.radio(key="tr_source").set_value("My photos").run()
    assert at.button(key="tr_start").disabled  # nothing to train on yet
    uploader = at.file_uploader(key="tr_upload")
    uploader.upload("good.png", _png(photo), "image/png")
    uploader.upload("bad.jpg", b"not a photo", "image/jpeg")
    at.number_input(key="tr_steps").set_value(2)
    at.select_slider(key="tr_patch").set_value(32)
    at.run()
    _no_exception(at)
    assert len(at.error) == 1 and at.error[0].value.startswith("Could not use this image.")
    at.button(key="tr_start").click().run()
    job = at.session_state["train_job"]
    assert len(job.data.images) == 1
    np.testing.assert_array_equal(job.data.images[0], photo)
    assert job.wait(WAIT_S) and job.status == "done"


def test_train_cancel_button_stops_the_run(app):
    at = app.switch_page("pages/train.py").run()
    at.number_input(key="tr_steps").set_value(5000)
    at.button(key="tr_start").click().run()
    job = at.session_state["train_job"]
    at.button(key="tr_cancel").click().run()
    assert job.wait(WAIT_S)
    at.run()
    _no_exception(at)
    assert job.status == "cancelled" and job.snapshot().step < 5000
    assert any("Cancelled at step" in w.value for w in at.warning)
    assert [d.proto.label for d in at.get("download_button")] == ["Download checkpoint (.pt)"]


def test_train_failure_is_shown_as_a_message(app, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise RuntimeError("out of patience")

    monkeypatch.setattr(sharpkd.app.jobs, "fit", broken_fit)
    job = _start_training(app)
    assert job.status == "failed"
    at = app.run()
    _no_exception(at)
    assert [e.value for e in at.error] == ["Training failed: RuntimeError: out of patience"]
    assert not at.get("download_button")


def test_train_without_teacher_turns_distillation_off(app, tiny_models_dir):
    (tiny_models_dir / "teacher.pt").unlink()
    at = app.switch_page("pages/train.py").run()
    _no_exception(at)
    assert any("No shipped teacher" in i.value for i in at.info)
    assert at.slider(key="tr_w_kd").disabled and at.slider(key="tr_w_feat").disabled
    assert any("`l1=1`" in c for c in _captions(at))


def test_train_rejects_all_zero_loss_weights(app):
    at = app.switch_page("pages/train.py").run()
    at.slider(key="tr_w_l1").set_value(0.0)
    at.slider(key="tr_w_kd").set_value(0.0)
    at.run()
    _no_exception(at)
    assert any("at least one loss weight" in e.value for e in at.error)
    assert at.button(key="tr_start").disabled


# -- Benchmark -----------------------------------------------------------------------------------------------------


def test_benchmark_measures_and_plots(app, monkeypatch):
    calls = []

    def fake_measure(models, sizes, repeats):
        calls.append((dict(models), list(sizes), repeats))
        return [
            {"model": m, "resolution": s, "width": 320, "height": 180, "megapixels": 0.058, "ms": 5.0, "fps": 200.0}
            for m in models
            for s in sizes
        ]

    monkeypatch.setattr(sharpkd.app.compare, "measure_latency", fake_measure)
    at = app.switch_page("pages/benchmark.py").run()
    _no_exception(at)
    assert not at.get("plotly_chart")
    assert any("press **Measure**" in i.value for i in at.info)
    assert any("No model cards" in i.value for i in at.info)

    at.button(key="bench_run").click().run()
    _no_exception(at)
    models, sizes, repeats = calls[0]
    assert models == {"teacher": "teacher", "student": "student"} | {p: p for p in PEERS}
    assert sizes == ["320x180", "360p", "720p"] and repeats == 3
    assert len(at.get("plotly_chart")) == 2  # latency and FPS against resolution
    assert len(at.dataframe[0].value) == 15  # 5 models x 3 sizes
    assert any("No classical peer cards" in i.value for i in at.info)


def test_benchmark_quality_speed_scatter_from_cards(tiny_models_dir, app):
    for name, psnr, fps in (("teacher", 31.0, 2.0), ("student", 29.0, 60.0)):
        card = {"name": name, "kind": name, "metrics": {"mean": {"psnr": psnr, "ssim": 0.9}}, "speed": {"fps": fps}}
        (tiny_models_dir / f"{name}.json").write_text(json.dumps(card))
    at = app.switch_page("pages/benchmark.py").run()
    _no_exception(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    assert sorted(t["text"][0] for t in figure["data"]) == ["student", "teacher"]


def test_benchmark_lists_the_peers_from_their_cards(tiny_models_dir, app):
    card = {
        "name": "cas",
        "kind": "classical",
        "metrics": {"mean": {"psnr": 26.0, "ssim": 0.8, "gain": 0.09}},
        "classical": {"description": "FFmpeg CAS", "engine": "ffmpeg", "setting": {"strength": 0.75}},
        "speed": {"fps": 90.0},
    }
    (tiny_models_dir / "cas.json").write_text(json.dumps(card))
    at = app.switch_page("pages/benchmark.py").run()
    _no_exception(at)
    (peers,) = at.dataframe  # no latency table before Measure is pressed
    table = peers.value
    assert list(table["peer"]) == ["cas"] and table["tuned setting"].iloc[0] == "strength 0.75"
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)  # the peer is on the quality-speed scatter too
    assert [t["text"] for t in figure["data"]] == [["cas"]] and figure["data"][0]["name"] == "classical"
