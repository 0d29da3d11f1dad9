"""Refit a saved model per fold with the settings its checkpoint records (honest CV of a file).

Kept apart from :mod:`miso_xr.training.provenance` (what a model was trained on) because it calls
the trainers, and the MISO trainer records its provenance there.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..exceptions import InputError

__all__ = ["refit_factory"]


def refit_factory(model: Any) -> Any:
    """A factory ``(cube, train_obs) -> model`` that retrains ``model`` with the settings its
    checkpoint records, for :func:`~miso_xr.training.evaluate.evaluate`'s per-fold refitting.

    Random Forests keep their constructor settings; MISO models their configuration, window,
    modalities, location branch and the training run's epochs, batch size, learning rate,
    weight decay, shift and seed.

    >>> report = evaluate([refit_factory(miso_xr.load("rf.safetensors"))], cube, obs,
    ...                   folds=spatial_folds(obs))  # doctest: +SKIP
    """
    spec = getattr(model, "spec", None)
    kind = getattr(spec, "kind", None)
    if kind == "random_forest" and hasattr(model, "_config"):
        settings = model._config()
        cls = type(model)

        def refit_rf(cube: Any, train_obs: pd.DataFrame) -> Any:
            return cls(**settings).fit(cube, train_obs)

        refit_rf.__name__ = getattr(model, "name", None) or type(model).__name__
        return refit_rf
    if kind == "miso":
        training = dict(getattr(model, "training", {}) or {})
        kw = {
            k: training[k]
            for k in ("batch_size", "lr", "weight_decay", "max_shift", "seed")
            if training.get(k) is not None
        }
        epochs = training.get("epochs_asked") or training.get("epochs")

        def refit_miso(cube: Any, train_obs: pd.DataFrame) -> Any:
            from .loop import train

            return train(
                cube,
                train_obs,
                task=spec.task,
                config=model.config,
                modalities=[m for m, _ in spec.modalities],
                # checkpoints before location became a mode: True meant the additive prior
                location=training.get("location", "prior" if spec.location else "contrastive"),
                window=spec.window,
                epochs=epochs,
                progress=False,
                **kw,
            )

        refit_miso.__name__ = getattr(model, "name", None) or type(model).__name__
        return refit_miso
    raise InputError(
        f"cannot refit a {type(model).__name__} (kind {kind!r}): refit_factory knows MISO "
        "models and Random Forests; write a factory (cube, train_obs) -> fitted model instead"
    )
