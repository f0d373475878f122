"""The Streamlit app, page by page, through streamlit.testing.v1.AppTest (no browser; see test_browser.py for that).

Every test runs app.py (so the navigation is exercised) with tiny models from the ``tiny_models_dir`` fixture and small
built-in photos. The heavy library call of each page is patched where the test is about the page, not the numbers.
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from appserver import APP, fresh_app
from PIL import Image
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

import sharpkd
import sharpkd.app.compare
import sharpkd.app.gate
import sharpkd.app.jobs
import sharpkd.app.viewer
import sharpkd.data

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
    with fresh_app(TIMEOUT, WAIT_S) as at:
        yield at


class FakeCompare:
    """Stands in for app.compare.compare: the real degradation, but every model's output is a copy of the input."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, image, degradation, strength=1.0, models=None, *, precomputed=None, calls=3, **kw):
        self.calls.append((image, degradation, strength, [*(precomputed or {}), *(models or {})]))
        result = _real_compare(image, degradation, strength, {}, precomputed=precomputed)
        for i, name in enumerate(models or {}):
            result.panels[name] = result.panels["input"].copy()
            result.scores[name] = dict(result.scores["input"])
            result.timings_ms[name] = 10.0 * (i + 1)
            result.timing_calls[name] = calls
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


def test_home_links_every_other_page(app):
    linked = {e.proto.page for e in app.get("page_link")}
    pages = {p.stem for p in (Path(APP).parent / "pages").glob("*.py") if not p.stem.startswith("_")}
    # compare_video is the Compare page's Video tab, not a page of its own
    assert linked == pages - {"home", "compare_video"}


# -- Compare -------------------------------------------------------------------------------------------------------


def _to_compare(at: AppTest) -> AppTest:
    return at.switch_page("pages/compare.py").run()


def test_compare_gallery_renders_every_panel_and_metric(app, fake_compare, small_photos):
    at = _to_compare(app)
    _no_exception(at)
    assert len(fake_compare.calls) == 1
    image, degradation, strength, names = fake_compare.calls[0]
    np.testing.assert_array_equal(image, small_photos["astronaut"])
    assert (degradation, strength, names) == ("vc", 1.0, ["student", *PEERS])  # the slow teacher is opt-in

    # the peers are captioned with their setting (no cards in the tiny models folder: the registered defaults)
    peer_labels = ["unsharp (sigma 2, amount 1)", "cas (strength 0.5)", "ffmpeg-unsharp (amount 1)"]
    outputs = ["student", *peer_labels]
    captions = _image_captions(at)
    for label in ["original (sharp)", "degraded: vc x1", *outputs]:
        assert captions.count(label) == 1, label  # the whole-photo thumbnail
    for label in outputs:  # what each model changed, captioned with its gain (the fake outputs copy the input)
        assert captions.count(f"{label} · +0.00 dB over the input") == 1, label
    scores = [c for c in _captions(at) if "PSNR " in c and " dB · SSIM " in c]
    assert len(scores) == 5  # the input and 4 outputs
    assert sum(c.startswith("+0.00 dB over the input · PSNR") for c in scores) == 4
    assert any("amplified 1x" in c for c in _captions(at))  # nothing changed: the gain stated is 1
    assert [d.label for d in at.get("download_button")] == ["Download PNG"] * 5
    table = at.dataframe[0].value
    assert list(table["image"]) == ["original", "input", "student", *PEERS]
    assert not table.isna().any().any() and "None" not in table.to_numpy()  # "—" where a cell does not apply
    assert list(table.iloc[0])[1:3] == ["—", "—"] and table["time (ms)"].iloc[1] == "—"
    assert len(at.get("plotly_chart")) == 1  # inference time per model
    wipe = at.get("iframe")
    assert len(wipe) == 1 and "data:image/png;base64," in wipe[0].proto.srcdoc
    assert "degraded: vc x1" in wipe[0].proto.srcdoc and "student +0.00 dB over the input" in wipe[0].proto.srcdoc


def test_compare_with_real_tiny_models(app):
    at = _to_compare(app)
    _no_exception(at)
    table = at.dataframe[0].value
    assert list(table["image"]) == ["original", "input", "student", *PEERS]
    assert table["PSNR (dB)"].iloc[1:].astype(float).gt(0).all()
    assert table["SSIM"].iloc[1:].astype(float).between(0, 1).all()


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
    assert fake_compare.calls[-1][3] == ["student", "cas"]


def test_compare_offers_the_six_presets(app, fake_compare):
    at = _to_compare(app)
    assert at.selectbox(key="cmp_degr").options == [*sharpkd.PRESETS, "already blurry"]  # short enough to read
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
    at.selectbox(key="cmp_degr").set_value("already blurry")
    at.run()
    _no_exception(at)
    assert fake_compare.calls[-1][1] is None
    assert any("SSIM and PSNR need a sharp reference" in i.value for i in at.info)
    assert not any("PSNR" in c for c in _captions(at))
    assert sum(c.startswith("sharpness ") for c in _captions(at)) == 5  # input and four outputs
    assert not any("dB over the input" in c for c in _captions(at) + _image_captions(at))
    assert "original (sharp)" not in _image_captions(at)
    assert "PSNR (dB)" not in at.dataframe[0].value.columns


def test_compare_lists_other_shipped_students(app, fake_compare):
    at = _to_compare(app)
    extra = at.multiselect(key="cmp_extra")
    assert set(extra.options) == {"conv4", "resattn", "sepunet", "student-nokd"}
    extra.set_value(["sepunet"]).run()
    _no_exception(at)
    assert fake_compare.calls[-1][3] == ["student", *PEERS, "sepunet"]


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


def test_compare_refuses_huge_uploads_before_decoding_and_says_the_limit_once(app, fake_compare):
    at = _upload(app, "huge.png", _bomb_png(9000, 8000), "image/png")  # 72 MP declared: over the app's limit
    _no_exception(at)
    assert len(at.error) == 1
    message = at.error[0].value
    assert "72,000,000 pixels" in message and "more than the limit of 40,000,000 pixels" in message
    assert message.count("limit") == 1


def test_compare_webcam_snapshot(app, fake_compare, photo):
    at = _to_compare(app)
    at.radio(key="cmp_source").set_value("Webcam snapshot").run()
    at.camera_input(key="cmp_camera").upload("snapshot.jpg", _jpeg(photo))
    at.run()
    _no_exception(at)
    assert fake_compare.calls[-1][0].shape == photo.shape
    # a webcam frame has no sharp original: it is compared as it is, not degraded with a preset
    assert at.selectbox(key="cmp_degr").value == "already blurry" and fake_compare.calls[-1][1] is None
    assert "your photo (input)" in _image_captions(at)
    at.radio(key="cmp_source").set_value("Sample photo").run()
    _no_exception(at)
    assert at.selectbox(key="cmp_degr").value == "vc"  # a sharp sample again: degraded by the default preset
    assert list(at.dataframe[0].value["image"])[:2] == ["original", "input"]


def test_compare_too_small_image_is_an_error_message(app):
    at = _upload(app, "tiny.png", _png(np.zeros((4, 4, 3), np.uint8)), "image/png")
    _no_exception(at)
    assert len(at.error) == 1 and "at least 16 px" in at.error[0].value
    at.checkbox(key="cmp_teacher").check().run()  # the teacher's own cached run checks the image the same way
    _no_exception(at)
    assert len(at.error) == 1 and "at least 16 px" in at.error[0].value


def test_compare_teacher_is_opt_in_and_cached_per_image_preset_and_strength(app, fake_compare, monkeypatch):
    teacher_runs = []
    real_run_timed = sharpkd.app.compare.run_timed

    def counting_run_timed(model, lq, calls=3):
        teacher_runs.append((model.name, calls))
        return real_run_timed(model, lq, calls)

    monkeypatch.setattr(sharpkd.app.compare, "run_timed", counting_run_timed)
    at = _to_compare(app)
    teacher = at.checkbox(key="cmp_teacher")
    assert teacher.value is False and not teacher_runs and "teacher" not in fake_compare.calls[-1][3]
    teacher.check().run()
    _no_exception(at)
    assert teacher_runs == [("teacher", 1)]  # one call, through the teacher's own cached run
    assert fake_compare.calls[-1][3] == ["teacher", "student", *PEERS]
    assert sum("ms (1 call)" in c for c in _captions(at)) == 1 and "teacher" in _image_captions(at)
    # peers, zoom and the wipe do not rerun it; a new strength or photo does
    at.multiselect(key="cmp_peers").set_value(["cas"]).run()
    at.select_slider(key="cmp_zoom").set_value(2).run()
    at.selectbox(key="cmp_wipe_right").set_value("teacher").run()
    _no_exception(at)
    assert teacher_runs == [("teacher", 1)] and fake_compare.calls[-1][3] == ["teacher", "student", "cas"]
    at.slider(key="cmp_strength").set_value(1.5).run()
    at.selectbox(key="cmp_sample").set_value("coffee").run()
    _no_exception(at)
    assert teacher_runs == [("teacher", 1)] * 3
    at.slider(key="cmp_strength").set_value(1.0).run()  # back to a combination it has seen for this photo
    at.selectbox(key="cmp_sample").set_value("astronaut").run()
    assert len(teacher_runs) == 4  # coffee x1 is new; astronaut x1 came from the cache
    assert "ms (1 call)" in " ".join(_captions(at))
    chart = at.get("plotly_chart")[0].proto.spec
    assert "median of 3 calls; teacher: 1 call" in chart


def test_compare_zoom_starts_on_the_most_detailed_region_and_keeps_user_control(app, fake_compare, small_photos):
    at = _to_compare(app)
    photo = small_photos["astronaut"]
    H, W = photo.shape[:2]
    expected = sharpkd.app.viewer.detail_center(photo, (W // 4, round(W / 4 * 9 / 16)))  # a 16:9 strip at 4x
    x, y = at.slider(key="cmp_zoom_x"), at.slider(key="cmp_zoom_y")
    assert (x.value, y.value) == (round(100 * expected[0]), round(100 * expected[1]))
    at.select_slider(key="cmp_zoom").set_value(2).run()  # not moved by hand yet: follows the detail at 2x
    expected2 = sharpkd.app.viewer.detail_center(photo, (W // 2, round(W / 2 * 9 / 16)))
    assert at.slider(key="cmp_zoom_x").value == round(100 * expected2[0])
    at.slider(key="cmp_zoom_x").set_value(10).run()
    at.select_slider(key="cmp_zoom").set_value(3).run()
    _no_exception(at)
    assert at.slider(key="cmp_zoom_x").value == 10  # the user's choice stays
    wipe = at.get("iframe")[0].proto.srcdoc
    assert "image-rendering: pixelated" in wipe  # the zoomed region is enlarged with square pixels
    assert any("centred at 10%" in c for c in _captions(at))


def test_compare_says_when_it_waits_for_another_visitors_run(app, fake_compare, monkeypatch):
    shown: list[str] = []
    real_info = DeltaGenerator.info

    def recording_info(self, body, *args, **kwargs):
        shown.append(str(body))
        return real_info(self, body, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "info", recording_info)
    entered, release = threading.Event(), threading.Event()

    def other_visitor() -> None:
        with sharpkd.app.gate.HEAVY.hold():
            entered.set()
            release.wait(60)

    visitor = threading.Thread(target=other_visitor)
    visitor.start()
    assert entered.wait(10)
    timer = threading.Timer(1.0, release.set)  # the page must queue until then, whatever the machine's speed
    timer.start()
    try:
        at = _to_compare(app)
    finally:
        release.set()
        visitor.join(10)
    _no_exception(at)
    assert sharpkd.app.gate.WAITING in shown
    assert not any(sharpkd.app.gate.WAITING in i.value for i in at.info)  # gone once the run went through
    assert len(at.dataframe) == 1 and len(fake_compare.calls) == 1


def test_compare_decodes_an_upload_once(app, fake_compare, photo, monkeypatch):
    decoded = []
    real_load_image = sharpkd.load_image

    def counting_load_image(*args, **kwargs):
        decoded.append(1)
        return real_load_image(*args, **kwargs)

    monkeypatch.setattr(sharpkd, "load_image", counting_load_image)
    at = _upload(app, "photo.png", _png(photo), "image/png")
    at.select_slider(key="cmp_zoom").set_value(2).run()
    at.slider(key="cmp_strength").set_value(1.5).run()
    _no_exception(at)
    assert len(decoded) == 1 and fake_compare.calls[-1][0].shape == photo.shape


# -- Train ---------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_jobs(monkeypatch):
    """Each test gets an empty server-wide job registry (it lives as long as the process)."""
    monkeypatch.setattr(sharpkd.app.jobs, "JOBS", sharpkd.app.jobs.JobRegistry())


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


def test_train_fine_tunes_the_shipped_student_by_default(app, tiny_models_dir):
    job = _start_training(app)
    assert job.status == "done", job.error
    assert job.cfg.init == "student" and job.train_cfg.lr == sharpkd.app.jobs.FINE_TUNE_LR
    assert job.train_cfg.meta["init"] == "student" and job.name == "my-student-1"
    assert app.session_state["train_job"] is job and app.query_params["job"] == job.id
    # from scratch: the architecture choice is enabled again
    at = app.run()
    shipped = at.selectbox(key="tr_student_shipped")
    assert shipped.disabled and shipped.value == "rt (the shipped student's)"  # the tiny student's preset
    at.radio(key="tr_init").set_value("Train from scratch").run()
    assert not at.selectbox(key="tr_student").disabled
    at.button(key="tr_start").click().run()
    scratch = at.session_state["train_job"]
    assert scratch.cfg.init is None and scratch.train_cfg.lr == sharpkd.app.jobs.SCRATCH_LR
    assert scratch.wait(WAIT_S) and scratch.status == "done"


def test_train_reloaded_page_reattaches_to_its_run(app):
    job = _start_training(app)
    # a browser reload is a new session: only the URL's job id is left
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)
    fresh.query_params["job"] = job.id
    at = fresh.run().switch_page("pages/train.py").run()
    _no_exception(at)
    assert at.session_state["train_job"] is job
    assert any(job.name in s.value for s in at.success)
    assert [d.proto.label for d in at.get("download_button")] == ["Download checkpoint (.pt)"]


def test_train_unknown_job_in_the_url_is_a_warning(app):
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)
    fresh.query_params["job"] = "gone"
    at = fresh.run().switch_page("pages/train.py").run()
    _no_exception(at)
    assert any("no longer on this server" in w.value for w in at.warning)
    assert "job" not in at.query_params


def test_train_lists_the_runs_on_this_server(app):
    first = _start_training(app)
    at = app.run()
    at.button(key="tr_start").click().run()
    second = at.session_state["train_job"]
    assert second is not first and second.wait(WAIT_S)
    assert (first.name, second.name) == ("my-student-1", "my-student-2")  # numbered per server
    at.run()
    _no_exception(at)
    assert at.expander[0].label == "Training runs on this server (2)"
    at.button(key=f"tr_open_{first.id}").click().run()
    assert at.session_state["train_job"] is first and at.query_params["job"] == first.id


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
    assert sizes == ["320x180", "360p", "720p"] and repeats == 10  # at least 10 repeats by default
    assert at.number_input(key="bench_repeats").min == 10
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


def test_the_apps_models_run_without_onnx_spinning(tiny_models_dir: Path) -> None:
    """The app's shared models are loaded with ``spin=False``: the server's other threads (web server, WebRTC's decoder
    and encoder, other sessions) share the cores, and spinning idle ONNX Runtime threads would hold them."""
    pytest.importorskip("onnxruntime")
    import pages

    st.cache_resource.clear()
    student = pages.load_sharpener("student")
    assert student.backend.startswith("onnx") and student.spin is False
    options = student._runner.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    st.cache_resource.clear()
