"""Exceptions raised by sharpkd's public API.

Every error a user can cause (a bad file, a bad checkpoint, a bad argument) raises a subclass of
:class:`SharpkdError`, so callers can catch one type. Each subclass also derives from the built-in
exception that fits (``ValueError``, ``OSError`` or ``RuntimeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class SharpkdError(Exception):
    """Base class of every error sharpkd raises on purpose."""


class ImageDecodeError(SharpkdError, ValueError):
    """A file or buffer is not a readable image (empty, truncated, not an image, unsupported mode)."""


class ImageTooLargeError(SharpkdError, ValueError):
    """An image declares more pixels than the configured limit (a decompression bomb or a huge photo)."""


class CheckpointError(SharpkdError, ValueError):
    """A checkpoint is unreadable, unsafe (pickled code), mismatched to its architecture, or holds NaN/Inf."""


class DatasetError(SharpkdError, ValueError):
    """A dataset root is missing, empty, or holds no usable (paired) images."""


class VideoError(SharpkdError, OSError):
    """A video file or camera cannot be opened, decoded or written."""


class CardError(SharpkdError, ValueError):
    """A model card (``models/<name>.json``) is unreadable, not a JSON object, or has a field of the wrong type."""


class CodecError(SharpkdError, RuntimeError):
    """An FFmpeg encoder, decoder or filter (run through PyAV) is missing, or PyAV is, or FFmpeg fails on an input."""


class VideoDecodeError(VideoError):
    """A video file is empty (zero bytes), corrupt or truncated, or holds no frame FFmpeg can decode."""


class NoVideoStreamError(VideoError):
    """A media file FFmpeg can open holds no video stream (an audio file, a subtitle file)."""


class VideoTooLargeError(VideoError):
    """A video is over the caller's limits: more pixels per frame (a 4K clip where the app takes 1080p), or too long."""


class FootageError(DatasetError):
    """Unlabeled footage (soft frames or clips with no sharp originals, for ``distill --unlabeled``) is unusable."""


class NoFootageError(FootageError):
    """A footage folder (or a set of uploads) holds no image or video file at all."""


class UnreadableFootageError(FootageError):
    """Footage files cannot be decoded: the one asked for, or every file given."""


class NoUsableFramesError(FootageError):
    """Footage was decoded, but no frame is large enough to take a training crop from."""
