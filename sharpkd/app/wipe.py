"""A before/after wipe slider as one self-contained HTML page: inline CSS and JS, images as base64 data URIs.

Nothing is fetched from the network, so it works offline and inside a sandboxed iframe (the app shows it with
``st.iframe``). Drag anywhere on the image, or use the range input (keyboard accessible), to move the divider; its
position (percent of the width) is also kept in the ``data-pos`` attribute of ``#wipe``, for tests.
"""

from __future__ import annotations

import base64
import html
from typing import NamedTuple

import numpy as np
from PIL import Image

from sharpkd.images import encode_image

LABEL_BAR_PX = 28  # height of the row of labels above the image
MAX_HEIGHT = 640  # CSS px: a tall image is shown narrower, so the whole wipe fits on a laptop screen


class WipeView(NamedTuple):
    """The page and the iframe height (CSS px) that shows all of it at its full width."""

    html: str
    height: int


def _data_uri(pixels: np.ndarray, width: int) -> str:
    if pixels.shape[1] > width:
        height = max(1, round(pixels.shape[0] * width / pixels.shape[1]))
        pixels = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))
    return "data:image/png;base64," + base64.b64encode(encode_image(pixels, "PNG")).decode("ascii")


def _check(before: np.ndarray, after: np.ndarray, start: float) -> None:
    for name, img in (("before", before), ("after", after)):
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            got = f"{getattr(img, 'shape', None)} {getattr(img, 'dtype', type(img).__name__)}"
            raise ValueError(f"{name} must be an (H, W, 3) uint8 array, got {got}")
    if before.shape != after.shape:
        raise ValueError(f"before and after must have the same shape, got {before.shape} and {after.shape}")
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"start must be in [0, 1], got {start}")


def wipe_view(
    before: np.ndarray,
    after: np.ndarray,
    *,
    before_label: str = "before",
    after_label: str = "after",
    max_width: int = 720,
    display_width: int | None = None,
    start: float = 0.5,
) -> WipeView:
    """Build the wipe page: ``before`` on the left of the divider, ``after`` on the right.

    Args:
        before, after: ``(H, W, 3)`` uint8 images of the same shape.
        before_label, after_label: captions shown above each side (HTML-escaped).
        max_width: wider images are downscaled to this width (Lanczos) before they are embedded, which bounds the
            page size; so are images wider than they are shown.
        display_width: CSS width to show the images at, when the iframe is that wide (it shrinks with a narrower
            one). Larger than the image enlarges it with square nearest-neighbour pixels, so a zoomed region shows
            real pixels, not browser smoothing. ``None`` shows the (downscaled) image at its own width. Either way
            the height stays under :data:`MAX_HEIGHT`.
        start: initial divider position as a fraction of the width.

    Returns:
        A :class:`WipeView` with the HTML and the height it needs at ``display_width``.

    Raises:
        ValueError: the images differ in shape, are not ``(H, W, 3)`` uint8, or ``start`` is outside ``[0, 1]``.
    """
    _check(before, after, start)
    H, W = before.shape[:2]
    shown = display_width if display_width is not None else min(W, max_width)
    shown = max(1, min(shown, round(MAX_HEIGHT * W / H)))  # CSS px
    width = min(W, max_width, shown)  # of the embedded pixels: never more than are shown
    page = _TEMPLATE.format(
        width=shown,
        pct=f"{100 * start:.1f}",
        rendering="pixelated" if shown > width else "auto",
        before=_data_uri(before, width),
        after=_data_uri(after, width),
        before_label=html.escape(before_label),
        after_label=html.escape(after_label),
    )
    return WipeView(page, round(H * shown / W) + LABEL_BAR_PX + 8)


# Doubled braces are literal braces for str.format.
# Dragging: Chromium starts its own image drag (dragstart, then pointercancel) on a press over an <img>, which stopped
# the divider after a few pixels. So the images are draggable=false under user-select:none and touch-action:none, the
# press is preventDefault-ed and the pointer is captured, so every move reaches the wipe until the button is released.
_TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
  body {{ margin: 0; font: 13px sans-serif; color: #31333f; }}
  .labels {{ display: flex; justify-content: space-between; height: {label_bar}px; align-items: center;
            max-width: {width}px; }}
  .wipe {{ position: relative; max-width: {width}px; line-height: 0; user-select: none; -webkit-user-select: none;
          cursor: ew-resize; touch-action: none; }}
  .wipe img {{ width: 100%; height: auto; display: block; image-rendering: {rendering}; pointer-events: none;
              -webkit-user-drag: none; user-select: none; }}
  .wipe .top {{ position: absolute; top: 0; left: 0; clip-path: inset(0 calc(100% - {pct}%) 0 0); }}
  .wipe .bar {{ position: absolute; top: 0; bottom: 0; left: {pct}%; width: 2px; margin-left: -1px;
               background: #fff; box-shadow: 0 0 3px rgba(0,0,0,.6); pointer-events: none; }}
  .wipe input {{ position: absolute; left: 0; bottom: 4px; width: 100%; margin: 0; opacity: .6; }}
</style></head><body>
<div class="labels"><span>&#9664; {before_label}</span><span>{after_label} &#9654;</span></div>
<div class="wipe" id="wipe" data-pos="{pct}">
  <img class="under" src="{after}" alt="{after_label}" draggable="false">
  <img class="top" id="top" src="{before}" alt="{before_label}" draggable="false">
  <div class="bar" id="bar"></div>
  <input type="range" id="pos" min="0" max="100" step="0.1" value="{pct}" aria-label="wipe position">
</div>
<script>
(function () {{
  var wipe = document.getElementById("wipe"), top = document.getElementById("top"),
      bar = document.getElementById("bar"), pos = document.getElementById("pos");
  function set(p) {{
    p = Math.max(0, Math.min(100, p));
    top.style.clipPath = "inset(0 " + (100 - p) + "% 0 0)";
    bar.style.left = p + "%";
    pos.value = p;
    wipe.dataset.pos = p.toFixed(1);
  }}
  function fromPointer(e) {{
    var r = wipe.getBoundingClientRect();
    set(100 * (e.clientX - r.left) / r.width);
  }}
  var dragging = null;
  wipe.addEventListener("dragstart", function (e) {{ e.preventDefault(); }});
  wipe.addEventListener("pointerdown", function (e) {{
    if (e.target === pos || e.button !== 0) return;
    e.preventDefault();
    dragging = e.pointerId;
    wipe.setPointerCapture(e.pointerId);
    fromPointer(e);
  }});
  wipe.addEventListener("pointermove", function (e) {{
    if (dragging === e.pointerId) {{ e.preventDefault(); fromPointer(e); }}
  }});
  function stop(e) {{
    if (dragging !== e.pointerId) return;
    dragging = null;
    if (wipe.hasPointerCapture(e.pointerId)) wipe.releasePointerCapture(e.pointerId);
  }}
  wipe.addEventListener("pointerup", stop);
  wipe.addEventListener("pointercancel", stop);
  wipe.addEventListener("lostpointercapture", function () {{ dragging = null; }});
  pos.addEventListener("input", function () {{ set(parseFloat(pos.value)); }});
}})();
</script>
</body></html>
""".replace("{label_bar}", str(LABEL_BAR_PX))
