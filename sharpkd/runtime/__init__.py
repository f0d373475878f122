"""Running trained models on uint8 frames; imports go one way: ``backends -> sharpener -> export``.

* ``backends``: how a network runs (torch, ONNX Runtime), the luma graph ``LumaDelta``, in-memory ONNX export;
* ``classical``: the registry of non-learned sharpeners (``"unsharp"``, ``"input"``);
* ``sharpener``: ``Sharpener`` and ``load`` (uint8 in, uint8 out, any size), checkpoint lookup, tiling;
* ``export``: ONNX and TorchScript files with a parity check;
* ``video`` and ``flicker``: video files and cameras frame by frame, and their temporal stability.
"""
