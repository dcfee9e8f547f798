"""Best-model selection: which epoch record field (train.select_metric) picks the best epoch, and which way."""

from __future__ import annotations

from twostream.trainer.config import ConfigError

MINIMISED = ("loss", "eer", "error", "mae", "mse")  # names ending so are best when lowest; any other when highest


def is_better(name: str, record: dict, best: float | None) -> bool:
    """Whether `record` (an epoch record) beats `best` on field `name`. "" means no selection, and so does a
    record without validation fields (a task with no evaluation); a missing field is a ConfigError."""
    if not name or not any(key.startswith("val_") for key in record):
        return False
    if name not in record:
        numbers = sorted(key for key, value in record.items() if is_number(value))
        raise ConfigError(
            f"train.select_metric={name!r} is not in the epoch record; choose one of "
            f"{', '.join(numbers)}, or '' for no selection"
        )
    value = record[name]
    if not is_number(value):  # e.g. ROC-AUC of a held-out set with one class only
        return False
    if best is None:
        return True
    return value < best if name.endswith(MINIMISED) else value > best


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
