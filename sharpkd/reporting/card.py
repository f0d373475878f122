"""The model card, ``models/<name>.json``: one dataclass, :class:`ModelCard`, that both writes and reads it.

:func:`sharpkd.reporting.cards.write_cards` fills one card per checkpoint and writes it with :meth:`ModelCard.write`;
the app and notebooks read cards back with :meth:`ModelCard.read` or :func:`read_cards`. On disk a card is::

    {"name", "preset", "kind", "config", "parameters", "macs_1080p",
     "metrics": {degradation: {"psnr", "ssim", "worst_gain", "worst_image"}, ...,
                 "synthetic": {"psnr", "ssim", "gain"},          # mean over the four synthetic presets, when scored
                 "mean": {"psnr", "ssim", "gain"}},              # mean over every scored degradation
     "baselines": {"input": {...}, "unsharp": {...}, "cas": {...}, "ffmpeg-unsharp": {...},
                   "best-classical": {...}},                     # same layout, same images
     "validation": {"data", "images", "max_side", "degradation_seed"},
     "classical": {"description", "engine", "setting", "objective",          # only the cards of classical peers
                   "best_for": {degradation: setting},           # where this peer is the best classical
                   "grid": [{"setting", "metrics": {...as metrics...}}, ...]},
     "speed": {"backend", "1080p_p50_ms", "1080p_p95_ms", "fps", "ratio_to_unsharp", "unsharp_ms", "peak_mb",
               "threads", "cpu", "repeats"},                     # only with a benchmark
     "speed_by_backend": {backend: {...as speed...}},             # only with a benchmark
     "video_1080p": [{"model", "backend", "width", "height", "frames",
                      "processing_fps", "end_to_end_fps", "flicker_ratio"}, ...],   # only the default student
     "training": checkpoint meta (data, degradation, steps, wall_seconds, hardware, command, ...),
     "generated": {"command", "date"}}

Reading is tolerant: a missing field reads as ``None`` (or empty), so partial or hand-written cards still show, and
unknown keys are ignored. A field of the wrong type raises :class:`~sharpkd.errors.CardError`. Numbers are kept as
written. Writing writes every key above, except the three benchmark sections, which are written only when present;
non-finite numbers become ``null`` (strict JSON has no NaN), so a card read from a file writes back the same JSON.
A classical peer's card (``kind`` ``"classical"``, no checkpoint) has the ``"classical"`` section, also written only
when present: :func:`sharpkd.runtime.sharpener.tuned_setting` reads its ``"setting"``, which ``sharpkd.load(peer)``
runs.

Example:
    >>> card = ModelCard.read("models/student.json")  # doctest: +SKIP
    >>> card.metrics.score("mean").psnr, card.speed.fps  # doctest: +SKIP
    (26.9, 19.9)
"""

from __future__ import annotations

import json
import logging
import math
import os
import reprlib
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sharpkd.errors import CardError
from sharpkd.runtime.classical import CARD_SECTION

if TYPE_CHECKING:
    from sharpkd.reporting.benchmark import BenchmarkReport, BenchmarkResult

log = logging.getLogger(__name__)

CARD_RESOLUTION = (1920, 1080)  # (width, height) at which cards report MACs and speed: the "1080p" in their keys
MEAN = "mean"  # key of the mean over degradations in a card's "metrics" and "baselines"
SYNTHETIC = "synthetic"  # key of the mean over the synthetic presets (sharpkd.degrade.SYNTHETIC_PRESETS) beside it

# (accepted Python types, what the error message calls them); bools are never numbers here
_NUMBER = ((int, float), "a number")
_INT = ((int,), "an integer")
_TEXT = ((str,), "a string")
_OBJECT = ((dict,), "a JSON object")
_ARRAY = ((list,), "a JSON array")


def _check(value: Any, kind: tuple[tuple[type, ...], str], label: str) -> Any:
    """``value`` when it has the ``kind`` of type or is ``None`` (missing or null); ``label`` names it in errors."""
    types, name = kind
    if value is None or (isinstance(value, types) and not isinstance(value, bool)):
        return value
    raise CardError(f"model card field {label} must be {name}, got {reprlib.repr(value)}")


def _get(obj: Mapping[str, Any], key: str, kind: tuple[tuple[type, ...], str], where: str) -> Any:
    """``obj[key]`` checked by :func:`_check`; ``where`` is the path of ``obj`` in the card, such as ``"speed."``."""
    return _check(obj.get(key), kind, f"{where}{key}")


def _objects(obj: Mapping[str, Any], key: str, where: str) -> dict[str, dict[str, Any]]:
    """``obj[key]`` as ``{name: JSON object}`` (``{}`` when missing); a null entry reads as an empty object."""
    inner = _get(obj, key, _OBJECT, where) or {}
    return {name: _get(inner, name, _OBJECT, f"{where}{key}.") or {} for name in inner}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN or Infinity
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _field(kind: tuple[tuple[type, ...], str], key: str | None = None, optional: bool = False) -> Any:
    """A dataclass field of a :class:`_Record`: default ``None``, read as ``kind``, on disk as ``key`` (or its name);
    an ``optional`` field is left out on disk while it is ``None`` (cards written before it existed stay unchanged)."""
    return field(default=None, metadata={"kind": kind, "key": key, "optional": optional})


def _key(f: Field[Any]) -> str:
    return f.metadata["key"] or f.name


class _Record:
    """Base of the flat JSON objects: dataclasses whose fields all come from :func:`_field`, read and written by it."""

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "") -> Any:
        """Read the object; a missing key gives ``None``, and ``where`` prefixes field names in errors."""
        return cls(**{f.name: _get(obj, _key(f), f.metadata["kind"], where) for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        """The object as on disk, keys in field order."""
        values = {f: getattr(self, f.name) for f in fields(self)}
        return {_key(f): v for f, v in values.items() if v is not None or not f.metadata["optional"]}


@dataclass
class Score(_Record):
    """A method's PSNR and SSIM under one degradation, averaged over the validation images."""

    psnr: float | None = _field(_NUMBER)  # dB against the clean image; None when missing or not finite
    ssim: float | None = _field(_NUMBER)  # Gaussian-window SSIM on [0, 1]
    # lowest per-image PSNR gain over the degraded input (dB) and that image ("image/degradation" in the means);
    # None for the input itself and for the classical grid points, which keep only means
    worst_gain: float | None = _field(_NUMBER, optional=True)
    worst_image: str | None = _field(_TEXT, optional=True)


@dataclass
class MeanScore(Score):
    """:class:`Score` averaged over the degradations, plus the gain over the degraded input."""

    gain: float | None = _field(_NUMBER)  # mean PSNR minus the degraded input's mean PSNR, dB


@dataclass
class Quality:
    """One method's scores on the card's validation images: one per degradation, and their means.

    On disk (and in :func:`sharpkd.reporting.evaluate.evaluate_models`'s rows) this is
    ``{degradation: {"psnr", "ssim"}, ..., "synthetic": {"psnr", "ssim", "gain"}, "mean": {"psnr", "ssim", "gain"}}``.
    """

    degradations: dict[str, Score] = field(default_factory=dict)  # in evaluation order
    mean: MeanScore | None = None  # None only when a card lacks it; write_cards always writes it
    synthetic: MeanScore | None = None  # mean over the four synthetic presets; None unless all four were scored

    def score(self, degradation: str) -> Score:
        """The score under ``degradation``, or a mean for ``"mean"`` / ``"synthetic"``; empty when the card has none."""
        if degradation in (MEAN, SYNTHETIC):
            mean = self.mean if degradation == MEAN else self.synthetic
            return mean if mean is not None else MeanScore()
        return self.degradations.get(degradation, Score())

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "") -> Quality:
        """Read ``{degradation: {...}, ..., "synthetic": {...}, "mean": {...}}``."""
        scores = {d: _get(obj, d, _OBJECT, where) or {} for d in obj if d not in (MEAN, SYNTHETIC)}
        means = {key: _get(obj, key, _OBJECT, where) for key in (MEAN, SYNTHETIC)}
        mean, synthetic = (MeanScore.from_json(m, f"{where}{k}.") if m is not None else None for k, m in means.items())
        return cls({d: Score.from_json(s, f"{where}{d}.") for d, s in scores.items()}, mean, synthetic)

    def to_json(self) -> dict[str, Any]:
        """The on-disk layout, the synthetic mean and then the mean last (each left out when absent)."""
        out: dict[str, Any] = {d: s.to_json() for d, s in self.degradations.items()}
        if self.synthetic is not None:
            out[SYNTHETIC] = self.synthetic.to_json()
        if self.mean is not None:
            out[MEAN] = self.mean.to_json()
        return out


@dataclass
class GridPoint:
    """A classical peer at one setting of its search grid, and its scores on the card's validation images."""

    setting: dict[str, Any] = field(default_factory=dict)  # keyword -> value, as the peer's function takes them
    metrics: Quality = field(default_factory=Quality)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "") -> GridPoint:
        """Read ``{"setting": {...}, "metrics": {...}}``."""
        return cls(
            setting=_get(obj, "setting", _OBJECT, where) or {},
            metrics=Quality.from_json(_get(obj, "metrics", _OBJECT, where) or {}, f"{where}metrics."),
        )

    def to_json(self) -> dict[str, Any]:
        """The on-disk layout."""
        return {"setting": self.setting, "metrics": self.metrics.to_json()}


@dataclass
class Classical:
    """A classical peer's card section: what it is, the setting tuned on the validation images, and the grid."""

    description: str | None = None  # what it is, without the setting ("FFmpeg contrast adaptive sharpening")
    engine: str | None = None  # what does the work: "opencv" or "ffmpeg"
    setting: dict[str, Any] = field(default_factory=dict)  # the tuned setting: sharpkd.load(name) runs it
    objective: str | None = None  # how the setting was picked from the grid
    best_for: dict[str, dict[str, Any]] = field(default_factory=dict)  # degradation -> setting, where it is the best
    grid: list[GridPoint] = field(default_factory=list)  # every setting tried, in grid order

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "") -> Classical:
        """Read the section (see the module docstring)."""
        grid = _get(obj, "grid", _ARRAY, where) or []
        return cls(
            description=_get(obj, "description", _TEXT, where),
            engine=_get(obj, "engine", _TEXT, where),
            setting=_get(obj, "setting", _OBJECT, where) or {},
            objective=_get(obj, "objective", _TEXT, where),
            best_for=_objects(obj, "best_for", where),
            grid=[
                GridPoint.from_json(_check(g, _OBJECT, f"{where}grid[{i}]") or {}, f"{where}grid[{i}].")
                for i, g in enumerate(grid)
            ],
        )

    def to_json(self) -> dict[str, Any]:
        """The on-disk layout, keys in field order (the grid last)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"grid": [g.to_json() for g in self.grid]}


@dataclass
class Validation:
    """Which images a card's scores were measured on."""

    data: str | None = None  # the folder of sharp images, or "samples" (scikit-image photos)
    images: list[str] = field(default_factory=list)  # image names, in evaluation order
    max_side: int | None = None  # longer side the images were downscaled to; None = full size
    degradation_seed: str | None = None  # how each image's degradation was seeded ("image index")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "") -> Validation:
        """Read ``{"data", "images", "max_side", "degradation_seed"}``."""
        images = _get(obj, "images", _ARRAY, where) or []
        return cls(
            data=_get(obj, "data", _TEXT, where),
            images=[_check(name, _TEXT, f"{where}images[{i}]") for i, name in enumerate(images)],
            max_side=_get(obj, "max_side", _INT, where),
            degradation_seed=_get(obj, "degradation_seed", _TEXT, where),
        )


@dataclass
class Speed(_Record):
    """One backend's timing of the full ``sharpen()`` call on a 1080p frame (:mod:`sharpkd.reporting.benchmark`)."""

    backend: str | None = _field(_TEXT)  # "torch" or "onnx"
    p50_ms: float | None = _field(_NUMBER, "1080p_p50_ms")  # median ms per frame
    p95_ms: float | None = _field(_NUMBER, "1080p_p95_ms")
    fps: float | None = _field(_NUMBER)  # 1000 / p50_ms
    ratio_to_unsharp: float | None = _field(_NUMBER)  # p50_ms / unsharp_ms
    unsharp_ms: float | None = _field(_NUMBER)  # p50 of the OpenCV unsharp mask timed in the same process
    peak_mb: float | None = _field(_NUMBER)  # peak extra resident MB; None when it could not be measured
    threads: int | None = _field(_INT)  # intra-op threads
    cpu: str | None = _field(_TEXT)  # CPU model name
    repeats: int | None = _field(_INT)  # timed calls behind p50 and p95

    @classmethod
    def from_result(cls, result: BenchmarkResult, report: BenchmarkReport) -> Speed:
        """The card's view of one benchmark measurement (``result`` must be at 1080p to match the card's keys)."""
        return cls(
            backend=result.backend,
            p50_ms=result.p50_ms,
            p95_ms=result.p95_ms,
            fps=result.fps,
            ratio_to_unsharp=result.ratio_to_unsharp,
            unsharp_ms=result.unsharp_ms,
            peak_mb=result.peak_mb,
            threads=result.threads,
            cpu=report.cpu,
            repeats=report.repeats,
        )


@dataclass
class VideoRun(_Record):
    """A model on a whole synthesized clip, decode and encode included (``benchmark.benchmark_video``)."""

    model: str | None = _field(_TEXT)  # what was loaded (the checkpoint path)
    backend: str | None = _field(_TEXT)
    width: int | None = _field(_INT)
    height: int | None = _field(_INT)
    frames: int | None = _field(_INT)
    processing_fps: float | None = _field(_NUMBER)  # sharpen() calls only
    end_to_end_fps: float | None = _field(_NUMBER)  # decode, sharpen and encode
    flicker_ratio: float | None = _field(_NUMBER)  # output frame-to-frame change over the input's; 1 = no added shimmer


@dataclass
class Generated(_Record):
    """Provenance of the card itself: the command that regenerated it, and when."""

    command: str | None = _field(_TEXT)  # the exact `sharpkd cards ...` command line ("" when not given)
    date: str | None = _field(_TEXT)  # ISO date


@dataclass
class ModelCard:
    """Everything published about one shipped checkpoint ``models/<name>.pt``, or one classical peer (see the module
    docstring)."""

    name: str  # the checkpoint's stem, or the classical peer's name
    preset: str | None = None  # registry preset the model was built from
    kind: str | None = None  # "teacher", "student" or "classical"
    config: dict[str, Any] = field(default_factory=dict)  # the model config (sharpkd.models.model_config)
    parameters: int | None = None
    macs_1080p: float | None = None  # conv MACs of one forward pass at CARD_RESOLUTION (an int when written)
    metrics: Quality = field(default_factory=Quality)  # scored on what sharpkd.load(name) runs (see backend)
    # that default backend: "onnx" (float), or "onnx-int8" when an int8 graph ships beside the weights; None: unknown
    backend: str | None = None
    # the same scores on other backends whose outputs differ (e.g. "onnx-int8", a quantized graph, or float "onnx"
    # for a model whose default is int8); torch and float onnx agree within 1/255
    metrics_by_backend: dict[str, Quality] = field(default_factory=dict)
    baselines: dict[str, Quality] = field(default_factory=dict)  # input, the classical peers, best-classical
    validation: Validation = field(default_factory=Validation)
    classical: Classical | None = None  # only a classical peer's card: its tuned setting and the grid
    speed: Speed | None = None  # the first benchmarked backend; None without a benchmark
    speed_by_backend: dict[str, Speed] = field(default_factory=dict)  # every benchmarked backend, in order
    video_1080p: list[VideoRun] = field(default_factory=list)  # one per backend; only the default student has it
    training: dict[str, Any] = field(default_factory=dict)  # checkpoint meta: data, degradation, steps, hardware...
    generated: Generated = field(default_factory=Generated)

    @classmethod
    def from_json(cls, obj: Any, *, default_name: str | None = None) -> ModelCard:
        """A card from parsed JSON.

        Args:
            obj: the parsed JSON object.
            default_name: the name when ``obj`` has none (a file's stem).

        Raises:
            CardError: ``obj`` is not an object, has no name and no ``default_name`` is given, or a field has the
                wrong type.
        """
        if not isinstance(obj, Mapping):
            raise CardError(f"a model card must be a JSON object, got {type(obj).__name__}")
        name = _get(obj, "name", _TEXT, "")
        if name is None and default_name is None:
            raise CardError("the model card has no name")
        speed = _get(obj, "speed", _OBJECT, "")
        classical = _get(obj, CARD_SECTION, _OBJECT, "")
        videos = _get(obj, "video_1080p", _ARRAY, "") or []
        return cls(
            name=name if name is not None else str(default_name),
            preset=_get(obj, "preset", _TEXT, ""),
            kind=_get(obj, "kind", _TEXT, ""),
            config=_get(obj, "config", _OBJECT, "") or {},
            parameters=_get(obj, "parameters", _INT, ""),
            macs_1080p=_get(obj, "macs_1080p", _NUMBER, ""),
            metrics=Quality.from_json(_get(obj, "metrics", _OBJECT, "") or {}, "metrics."),
            backend=_get(obj, "backend", _TEXT, ""),
            metrics_by_backend={
                b: Quality.from_json(q, f"metrics_by_backend.{b}.")
                for b, q in _objects(obj, "metrics_by_backend", "").items()
            },
            baselines={m: Quality.from_json(q, f"baselines.{m}.") for m, q in _objects(obj, "baselines", "").items()},
            validation=Validation.from_json(_get(obj, "validation", _OBJECT, "") or {}, "validation."),
            classical=Classical.from_json(classical, f"{CARD_SECTION}.") if classical is not None else None,
            speed=Speed.from_json(speed, "speed.") if speed is not None else None,
            speed_by_backend={
                b: Speed.from_json(s, f"speed_by_backend.{b}.")
                for b, s in _objects(obj, "speed_by_backend", "").items()
            },
            video_1080p=[
                VideoRun.from_json(_check(v, _OBJECT, f"video_1080p[{i}]") or {}, f"video_1080p[{i}].")
                for i, v in enumerate(videos)
            ],
            training=_get(obj, "training", _OBJECT, "") or {},
            generated=Generated.from_json(_get(obj, "generated", _OBJECT, "") or {}, "generated."),
        )

    def to_json(self) -> dict[str, Any]:
        """The card as a strict-JSON-ready dict, keys in the on-disk order (provenance last, after the numbers)."""
        card: dict[str, Any] = {
            "name": self.name,
            "preset": self.preset,
            "kind": self.kind,
            "config": self.config,
            "parameters": self.parameters,
            "macs_1080p": self.macs_1080p,
            "metrics": self.metrics.to_json(),
            **({"backend": self.backend} if self.backend is not None else {}),
            **(
                {"metrics_by_backend": {b: q.to_json() for b, q in self.metrics_by_backend.items()}}
                if self.metrics_by_backend
                else {}
            ),
            "baselines": {method: quality.to_json() for method, quality in self.baselines.items()},
            "validation": asdict(self.validation),
        }
        if self.classical is not None:
            card[CARD_SECTION] = self.classical.to_json()
        if self.speed is not None:
            card["speed"] = self.speed.to_json()
        if self.speed_by_backend:
            card["speed_by_backend"] = {backend: s.to_json() for backend, s in self.speed_by_backend.items()}
        if self.video_1080p:
            card["video_1080p"] = [v.to_json() for v in self.video_1080p]
        card["training"] = self.training
        card["generated"] = self.generated.to_json()
        return _jsonable(card)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ModelCard:
        """Read ``path``; a card without a ``"name"`` is named after the file.

        Raises:
            CardError: the file cannot be read, is not JSON, is not an object, or has a field of the wrong type.
        """
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CardError(f"cannot read model card {path}: {err}") from err
        try:
            return cls.from_json(obj, default_name=path.stem)
        except CardError as err:
            raise CardError(f"{path}: {err}") from err

    def write(self, path: str | os.PathLike) -> Path:
        """Write the card to ``path`` as indented JSON and return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def read_cards(directory: str | os.PathLike | None = None) -> list[ModelCard]:
    """Every card ``<directory>/*.json`` (default: the shipped ``models/``), sorted by file name.

    Unreadable files are skipped with a logged warning, so one broken card does not hide the others; a missing
    folder gives ``[]``.
    """
    from sharpkd.runtime.sharpener import models_dir

    d = Path(directory) if directory is not None else models_dir()
    cards = []
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            cards.append(ModelCard.read(path))
        except CardError as err:
            log.warning("skipping model card %s: %s", path, err)
    return cards
