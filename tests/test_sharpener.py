"""Sharpener: loading by name, input validation, any frame size, tiling against the whole image, the luma fast path,
the backend and classical-method registries, and the classical peers' tuned settings read from their cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from synthetic import wave_frame as _frame

import sharpkd
from sharpkd.checkpoint import save_checkpoint
from sharpkd.data import to_tensor, to_uint8
from sharpkd.errors import CardError, CheckpointError
from sharpkd.models import build_model
from sharpkd.runtime.backends import BACKENDS, Backend, OnnxBackend, TorchBackend, is_luma_student
from sharpkd.runtime.classical import CLASSICAL, register_classical, unsharp_mask
from sharpkd.runtime.sharpener import (
    TILE_MARGIN,
    Sharpener,
    list_pretrained,
    load,
    models_dir,
    restore,
    tuned_setting,
)

cv2 = pytest.importorskip("cv2")

NAMES = ["conv4", "resattn", "sepunet", "student", "student-nokd", "teacher"]
# The shipped roles at tiny width (as in conftest's tiny_models_dir), loaded once per module for the many shape tests.
TINY = {
    "teacher": ("nafnet", dict(width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)),
    "student": ("rt", dict(width=8)),
    "conv4": ("conv4", dict(width=8)),
    "resattn": ("resattn", dict(width=8, num_blocks=2)),
    "sepunet": ("sepunet", dict(width=4)),
}


@pytest.fixture(scope="module")
def sharpeners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sharpener]:
    d = tmp_path_factory.mktemp("infer_models")
    out = {name: load(name, setting={}) for name in ("unsharp", "input")}  # the defaults, whatever cards are shipped
    for name, (preset, kw) in TINY.items():
        torch.manual_seed(0)
        out[name] = load(save_checkpoint(d / f"{name}.pt", build_model(preset, **kw)))
    return out


def _eager(model: nn.Module, frame: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return to_uint8(model(to_tensor(frame)).clamp(0, 1))


def _scaled(model: nn.Module, factor: float) -> nn.Module:
    """Scale every weight so the random network's output (and reach) is large: untrained weights hide seams."""
    with torch.no_grad():
        for p in model.parameters():
            # zero-initialised parameters (NAFNet's beta/gamma, students' residual head) get random values instead
            p.mul_(factor) if p.any() else p.normal_(0.0, 0.5)
    return model.eval()


def test_models_dir_honours_env(tiny_models_dir: Path) -> None:
    assert models_dir() == tiny_models_dir
    assert list_pretrained() == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_load_tiny_models_by_name(tiny_models_dir: Path, name: str) -> None:
    sharpener = sharpkd.load(name)
    assert isinstance(sharpener, Sharpener)
    # no backend given: the fastest one installed, ONNX Runtime here (a dev requirement)
    assert sharpener.name == name and sharpener.backend == "onnx"
    assert sharpkd.load(name, backend="torch").backend == "torch"
    assert sharpener.kind in ("teacher", "student")
    assert sharpener.meta["tiny"] is True
    assert name in repr(sharpener)
    frame = _frame(21, 34)
    out = sharpener.sharpen(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8


def test_load_by_path(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "mine.pt", build_model("conv4", width=4))
    assert sharpkd.load(path).kind == "student"
    assert sharpkd.load(str(path)).kind == "student"
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        sharpkd.load(tmp_path / "other.pt")


def test_a_folder_named_like_a_model_does_not_shadow_it(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "teacher").mkdir()  # e.g. a training run folder in the working directory
    monkeypatch.chdir(tmp_path)
    assert sharpkd.load("teacher").kind == "teacher"


def test_unknown_name_lists_shipped_models(tiny_models_dir: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"unknown model 'studnet'; shipped models: conv4, resattn, .*unsharp, cas, .*input"
    ):
        sharpkd.load("studnet")


def test_unknown_name_with_empty_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path / "none"))
    assert list_pretrained() == []
    with pytest.raises(
        CheckpointError, match="unknown model 'student'; shipped models: unsharp, cas, ffmpeg-unsharp, input"
    ):
        sharpkd.load("student")


def test_bad_backend_and_tile(tiny_models_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; known: torch, onnx"):
        sharpkd.load("student", backend="tensorrt")
    with pytest.raises(ValueError, match="tile must be >= 64 px, got 16"):
        sharpkd.load("teacher", tile=16)


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (2, 5), (37, 51), (64, 64)])
@pytest.mark.parametrize("name", ["student", "teacher", "sepunet", "resattn", "conv4", "unsharp", "input"])
def test_sharpen_keeps_shape_and_dtype(sharpeners: dict[str, Sharpener], name: str, size: tuple[int, int]) -> None:
    frame = _frame(*size)
    out = sharpeners[name].sharpen(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    assert out is not frame


def test_grayscale_and_rgba_are_converted(sharpeners: dict[str, Sharpener]) -> None:
    sharpener = sharpeners["conv4"]
    gray = _frame(20, 30)[..., 0]
    out = sharpener.sharpen(gray)
    assert out.shape == (20, 30, 3)
    assert np.array_equal(out, sharpener.sharpen(np.repeat(gray[..., None], 3, axis=2)))
    rgba = np.dstack([_frame(20, 30), np.full((20, 30), 255, np.uint8)])  # opaque: RGB unchanged
    assert np.array_equal(sharpener.sharpen(rgba), sharpener.sharpen(rgba[..., :3]))
    assert sharpener.sharpen(gray[..., None]).shape == (20, 30, 3)


def test_non_contiguous_frames(sharpeners: dict[str, Sharpener]) -> None:
    sharpener = sharpeners["student"]
    frame = _frame(24, 40)
    flipped = frame[:, ::-1]
    assert np.array_equal(sharpener.sharpen(flipped), sharpener.sharpen(np.ascontiguousarray(flipped)))
    bgr_view = frame[..., ::-1]
    assert sharpener.sharpen(bgr_view).shape == frame.shape


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((8, 8, 3), np.float32), "got dtype float32 and shape (8, 8, 3)"),
        (np.zeros((8, 8, 3), np.float64), "got dtype float64"),
        (np.zeros((8, 8, 3), np.int32), "got dtype int32 and shape (8, 8, 3)"),
        (np.zeros((8, 8, 3), np.uint16), "got dtype uint16"),
        (np.zeros((8, 8, 3), bool), "got dtype bool"),
        (np.zeros((2, 8, 8, 3), np.uint8), "got dtype uint8 and shape (2, 8, 8, 3)"),
        (np.zeros((8,), np.uint8), "shape (8,)"),
        (np.zeros((8, 8, 2), np.uint8), "(8, 8, 2)"),
        (np.zeros((0, 8, 3), np.uint8), "empty image of shape (0, 8, 3)"),
    ],
)
def test_bad_arrays_raise_value_error(sharpeners: dict[str, Sharpener], bad: np.ndarray, message: str) -> None:
    for name in ("student", "teacher", "unsharp"):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            sharpeners[name].sharpen(bad)


@pytest.mark.parametrize("bad", [[[0, 0, 0]], "frame.png", None, torch.zeros(8, 8, 3, dtype=torch.uint8)])
def test_non_arrays_raise_type_error(sharpeners: dict[str, Sharpener], bad: object) -> None:
    with pytest.raises(TypeError, match=r"expects an \(H, W, 3\) uint8 numpy array, got"):
        sharpeners["student"].sharpen(bad)


def test_tiled_equals_untiled_for_the_tiny_teacher(tiny_models_dir: Path) -> None:
    model = _scaled(sharpkd.load("teacher").model, 1.0)  # NAFNet's zero-initialised branch scales made non-zero
    frame = _frame(200, 300)
    whole = Sharpener("whole", model, tile=4096).sharpen(frame)
    tiled = Sharpener("tiled", model, tile=64).sharpen(frame)
    assert np.abs(whole.astype(int) - _eager(model, frame).astype(int)).max() <= 1
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


@pytest.mark.parametrize("tile", [64, 90, 100])
def test_tiles_cover_the_receptive_field_and_the_stride_grid(tile: int) -> None:
    # sepunet (stride 4) reaches 63 px: with a 32 px margin seams differ by up to 220 levels, and tiles that start
    # off the stride grid (tile 90 or 100 minus the margin) down-sample differently
    torch.manual_seed(0)
    model = _scaled(build_model("sepunet", width=4), 2.0)
    frame = _frame(200, 300, seed=1)
    whole = Sharpener("whole", model, tile=4096).sharpen(frame)
    assert np.abs(whole.astype(int) - frame.astype(int)).max() > 20  # the network does change the frame
    tiled = Sharpener("tiled", model, tile=tile).sharpen(frame)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    assert TILE_MARGIN >= 63


def test_instance_norm_models_are_not_tiled(tiny_models_dir: Path) -> None:
    sharpener = sharpkd.load("resattn", tile=64)
    assert not sharpener.tileable and sharpkd.load("conv4").tileable
    frame = _frame(200, 220)
    assert np.array_equal(sharpener.sharpen(frame), _eager(sharpener.model, frame))


def test_restore_and_sharpen_tensor_match_sharpen(sharpeners: dict[str, Sharpener]) -> None:
    sharpener = sharpeners["sepunet"]
    frame = _frame(45, 61)
    x = to_tensor(frame)
    y = restore(sharpener.model, x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert np.array_equal(to_uint8(y), sharpener.sharpen(frame))
    with pytest.raises(ValueError, match=r"restore expects a \(1, 3, H, W\) tensor, got \(3, 45, 61\)"):
        restore(sharpener.model, x[0])


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (37, 51), (64, 80)])
def test_luma_fast_path_matches_eager(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model("rt", width=8).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.tail.weight, std=0.3)  # a visible residual (the head is zero-initialised)
    frame = _frame(*size, seed=2)
    sharpener = Sharpener("rt", model)
    assert sharpener.luma
    out = sharpener.sharpen(frame)
    ref = _eager(model, frame)
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1
    if min(size) > 8:
        assert np.abs(out.astype(int) - frame.astype(int)).max() > 5  # the residual is not trivially zero
    # the same residual goes to R, G and B (up to saturation)
    d = out.astype(int) - frame.astype(int)
    unsaturated = ((out > 0) & (out < 255)).all(axis=2)
    assert np.array_equal(d[..., 0][unsaturated], d[..., 1][unsaturated])
    assert np.array_equal(d[..., 1][unsaturated], d[..., 2][unsaturated])


def test_luma_delta_saturates_like_uint8() -> None:
    torch.manual_seed(0)
    model = build_model("rt", width=8).eval()
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.fill_(0.2)  # +51 levels everywhere
    frame = np.array([[[0, 100, 250]]], np.uint8).repeat(4, 0).repeat(4, 1)
    out = Sharpener("rt", model).sharpen(frame)
    assert out[0, 0].tolist() == [51, 151, 255]
    assert np.array_equal(out, _eager(model, frame))


def test_unsharp_mask_and_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path))  # no cards: the registered default setting
    frame = _frame(30, 40)
    assert np.array_equal(load("input").sharpen(frame), frame)
    sharpened = load("unsharp").sharpen(frame)
    assert np.array_equal(sharpened, unsharp_mask(frame))
    blurred = cv2.GaussianBlur(frame, (0, 0), 2.0)
    ref = np.clip(np.round(2.0 * frame.astype(float) - blurred.astype(float)), 0, 255)
    assert np.abs(sharpened.astype(int) - ref.astype(int)).max() <= 1
    flat = np.full((10, 10, 3), 77, np.uint8)
    assert np.array_equal(unsharp_mask(flat), flat)
    assert load("unsharp").kind == "classical" and load("unsharp").model is None
    assert "unsharp mask" in load("unsharp").meta["description"].lower()


def test_timed_sharpen_returns_output_and_time(sharpeners: dict[str, Sharpener]) -> None:
    sharpener = sharpeners["student"]
    frame = _frame(16, 16)
    out, ms = sharpener.timed_sharpen(frame)
    assert np.array_equal(out, sharpener.sharpen(frame)) and ms >= 0.0


def test_backend_registry_names_its_classes() -> None:
    assert list(BACKENDS) == ["torch", "onnx", "onnx-int8"]
    assert BACKENDS["torch"] is TorchBackend and BACKENDS["onnx"] is OnnxBackend
    assert issubclass(BACKENDS["onnx-int8"], OnnxBackend)  # an ONNX variant: only its graph differs
    for name, cls in BACKENDS.items():
        assert issubclass(cls, Backend) and cls.name == name


def test_a_new_backend_is_one_class_in_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    class Inverted(TorchBackend):
        name = "inverted"

        def run_image(self, x: torch.Tensor) -> torch.Tensor:
            return 1.0 - super().run_image(x)

    monkeypatch.setitem(BACKENDS, "inverted", Inverted)
    torch.manual_seed(0)
    model = build_model("conv4", width=4).eval()
    frame = _frame(19, 23)
    out = Sharpener("conv4", model, backend="inverted").sharpen(frame)
    ref = Sharpener("conv4", model).sharpen(frame)
    assert np.abs(out.astype(int) - (255 - ref.astype(int))).max() <= 1


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_spin_sets_the_onnx_sessions_idle_threads_and_leaves_the_output_alone(backend: str) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model("rt", width=8).eval()
    frame = _frame(40, 56)
    key = "session.intra_op.allow_spinning"
    outs = []
    for spin, want in ((True, "1"), (False, "0")):
        sharpener = Sharpener("rt", model, backend=backend, threads=1, spin=spin)
        assert sharpener.spin is spin and sharpener._runner.spin is spin
        assert sharpener._runner.session.get_session_options().get_session_config_entry(key) == want
        outs.append(sharpener.sharpen(frame))
    assert np.array_equal(*outs)


def test_load_passes_spin_through_and_keeps_it_on_by_default(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "rt.pt", build_model("rt", width=8).eval(), meta={"preset": "rt"})
    key = "session.intra_op.allow_spinning"
    for kwargs, want in (({}, "1"), ({"spin": False}, "0")):
        sharpener = load(path, backend="onnx", **kwargs)
        assert sharpener._runner.session.get_session_options().get_session_config_entry(key) == want


def test_torch_backend_refuses_an_onnx_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="onnx_path is for the ONNX backend"):
        Sharpener("conv4", build_model("conv4", width=4), onnx_path=tmp_path / "x.onnx")


def test_threads_never_change_torch_threads() -> None:
    saved = torch.get_num_threads()
    sharpener = Sharpener("rt", build_model("rt", width=4).eval(), threads=saved + 1)
    sharpener.sharpen(_frame(16, 16))
    assert torch.get_num_threads() == saved and sharpener.threads == saved + 1


def test_is_luma_student() -> None:
    assert is_luma_student(build_model("rt", width=4))
    assert not is_luma_student(build_model("conv4", width=4))
    assert not is_luma_student(build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1))


def test_luma_delta_needs_a_luma_student(sharpeners: dict[str, Sharpener]) -> None:
    delta = sharpeners["student"].luma_delta(np.zeros((16, 16), np.uint8))
    assert delta.shape == (16, 16) and delta.dtype == np.int16
    for name, kind in (("conv4", "student"), ("unsharp", "classical")):
        with pytest.raises(ValueError, match=f"luma_delta needs a luma student; .*{name}.* is a {kind} model"):
            sharpeners[name].luma_delta(np.zeros((16, 16), np.uint8))


def test_classical_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path))
    assert list(CLASSICAL) == ["unsharp", "cas", "ffmpeg-unsharp", "input"]
    unsharp = CLASSICAL["unsharp"]
    assert unsharp.fn is unsharp_mask and unsharp.engine == "opencv"
    assert unsharp.settings == {"sigma": 2.0, "amount": 1.0}  # read from unsharp_mask's own defaults
    assert unsharp.summary == "OpenCV unsharp mask (sigma 2, amount 1)"
    assert CLASSICAL["input"].settings == {} and CLASSICAL["input"].summary == "no processing"
    assert load("unsharp").meta == {
        "description": unsharp.summary,
        "setting": {"sigma": 2.0, "amount": 1.0},
        "setting_source": "default",
    }
    assert load("unsharp").setting == {"sigma": 2.0, "amount": 1.0} and load("input").setting == {}


def _peer_card(directory: Path, name: str, setting: object) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"name": name, "kind": "classical", "classical": {"setting": setting, "grid": []}}))
    return path


def test_load_reads_the_tuned_setting_from_the_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path))
    frame = _frame(21, 27)
    assert load("cas").meta["setting"] == {"strength": 0.5} and tuned_setting("cas") == (None, tmp_path / "cas.json")
    path = _peer_card(tmp_path, "cas", {"strength": 0.9})
    cas = load("cas")
    assert cas.setting == {"strength": 0.9} and tuned_setting("cas") == ({"strength": 0.9}, path)
    assert cas.meta == {
        "description": "FFmpeg contrast adaptive sharpening (strength 0.9)",
        "setting": {"strength": 0.9},
        "setting_source": str(path),
    }
    assert np.array_equal(cas.sharpen(frame), CLASSICAL["cas"].fn(frame, 0.9))
    # a given setting wins over the card; a partial setting keeps the other defaults
    assert load("cas", setting={"strength": 0.2}).meta["setting_source"] == "given"
    _peer_card(tmp_path, "unsharp", {"amount": 0.5})
    unsharp = load("unsharp")
    assert unsharp.setting == {"sigma": 2.0, "amount": 0.5}
    assert np.array_equal(unsharp.sharpen(frame), unsharp_mask(frame, 2.0, 0.5))
    # a card without the classical section (a hand-written one) leaves the default
    (tmp_path / "ffmpeg-unsharp.json").write_text(json.dumps({"name": "ffmpeg-unsharp", "kind": "classical"}))
    assert load("ffmpeg-unsharp").meta["setting_source"] == "default"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "cannot read the card of 'cas'"),
        (json.dumps({"classical": {"setting": [0.9]}}), r"classical.setting must be a JSON object, got \[0.9\]"),
        (json.dumps({"classical": {"setting": {"sigma": 1.0}}}), "cas has no setting sigma; its settings: strength"),
        (json.dumps({"classical": {"setting": {"strength": "max"}}}), "must be a finite number, got 'max'"),
    ],
)
def test_a_bad_peer_card_is_a_card_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, match: str):
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path))
    (tmp_path / "cas.json").write_text(text)
    with pytest.raises(CardError, match=match):
        load("cas")


def test_a_setting_is_only_for_classical_methods(tiny_models_dir: Path) -> None:
    with pytest.raises(ValueError, match="a setting is for classical methods"):
        load("student", setting={"amount": 1.0})
    with pytest.raises(ValueError, match="a setting is for classical methods; 'conv4' is a network"):
        Sharpener("conv4", build_model("conv4", width=4), setting={})


def test_a_classical_method_is_one_registration() -> None:
    @register_classical("invert", "photographic negative")
    def invert(frame: np.ndarray, offset: int = 255) -> np.ndarray:
        return (offset - frame).astype(np.uint8)

    try:
        frame = _frame(12, 20)
        sharpener = load("invert")
        assert sharpener.kind == "classical" and sharpener.model is None
        assert sharpener.meta["description"] == "photographic negative (offset 255)"
        assert np.array_equal(sharpener.sharpen(frame), 255 - frame)
        with pytest.raises(ValueError, match="classical method 'invert' is already registered"):
            register_classical("invert", "again")(invert)
    finally:
        CLASSICAL.pop("invert")


def test_no_model_needs_a_classical_name() -> None:
    with pytest.raises(ValueError, match="no model given and 'sharpest' is no classical method; known: unsharp, cas"):
        Sharpener("sharpest", None)


def test_fastest_backend_falls_back_to_torch_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from sharpkd.runtime.sharpener import fastest_backend

    assert fastest_backend() == "onnx"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    assert fastest_backend() == "torch"


def test_fastest_backend_is_torch_when_onnx_is_missing_for_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime alone cannot run a network: the in-memory export needs the onnx package (a clean install of an
    older requirements.txt had onnxruntime only, and the app failed on its first photo)."""
    import importlib.util

    from sharpkd.runtime.sharpener import fastest_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
    assert fastest_backend() == "torch"
