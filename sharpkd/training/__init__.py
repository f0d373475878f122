"""Training: :func:`~sharpkd.training.loop.fit` and what it is made of, one module per concern.

``loop``          ``TrainConfig`` (the one home of the training defaults), ``fit``, ``FitResult``
``state``         ``TrainState`` and the resumable ``last.pt``
``callbacks``     the ``Callback`` hooks; best tracking, early stopping, plateau, ``best.pt``/``last.pt``/metrics log
``ema``           the exponential moving average of the weights (``TrainConfig.ema_decay``)
``distributed``   torchrun: process group, rank agreement, the per-rank batch stream
``cache``         ``TeacherCache``: teacher outputs computed once for distillation
``validation``    ``evaluate_tensor_fn``: PSNR/SSIM per degradation on tensors
"""
