"""The settings of one range test: built once from ``range_test``'s arguments, checked, then read-only.

Every default lives here only (``range_test``'s signature repeats them, a test pins the two together; the
CLI reads :data:`DEFAULTS`), and so do the checks of single values for every caller; those of objects are
in :mod:`lr_finder.validation`. No numpy, no torch: this is the pure layer.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import InputError, InputTypeError
from .schedule import STEP_MODES, lr_at


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name}={value!r} must be a number")
    return float(value)


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name}={value!r} must be an int")
    return int(value)


def check_positive(name: str, value: Any, what: str = "number") -> float:
    """A positive finite number, as a float, or an error naming ``name``."""
    number = _real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise InputError(f"{name}={value!r} must be a positive finite {what}")
    return number


def check_lr(value: Any, name: str = "lr") -> float:
    """A positive finite learning rate, as a float; the core, ``apply`` and compat check LRs here."""
    return check_positive(name, value, "learning rate, e.g. 1e-7")


def check_flag(name: str, value: Any) -> bool:
    """A True/False argument (numpy booleans and 0/1 too); a string such as ``"no"`` is refused, not read as True."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool")  # numpy 1, 2
    if isinstance(value, bool) or numpy_bool or (isinstance(value, numbers.Integral) and int(value) in (0, 1)):
        return bool(value)
    raise InputTypeError(f"{name}={value!r} must be True or False")


def _amp_dtype(value: Any) -> Any:
    # named, not compared, so that this module imports no torch; the dataclass keeps the dtype itself
    if value is None or (not isinstance(value, str) and str(value) in ("torch.float16", "torch.bfloat16")):
        return value
    hint = " (a string: pass torch.bfloat16 itself)" if isinstance(value, str) else ""
    raise InputTypeError(f"amp_dtype={value!r} must be torch.float16, torch.bfloat16 or None{hint}")


@dataclass(frozen=True)
class RangeTestSettings:
    """What one range test does; see :meth:`lr_finder.LRFinder.range_test` for each field."""

    start_lr: float = 1e-7
    end_lr: float = 1.0
    num_iter: int = 100
    step_mode: str = "exp"
    smooth_f: float = 0.05
    diverge_th: float = 5.0
    use_amp: bool = True
    adaptive_stop: bool = True
    accumulation_steps: int = 1
    non_blocking_transfer: bool = True
    amp_dtype: Any = None  # torch.float16, torch.bfloat16 or None (fp16 on CUDA)
    show_progress: bool = True

    def __post_init__(self) -> None:
        fix = object.__setattr__  # normalise once (ints to float, numpy scalars to Python), then frozen
        for name in ("start_lr", "end_lr"):
            fix(self, name, check_lr(getattr(self, name), name))
        if not self.end_lr > self.start_lr:
            raise InputError(
                f"end_lr={self.end_lr!r} must be greater than start_lr={self.start_lr!r}: "
                "the sweep goes from low to high"
            )
        fix(self, "num_iter", _int("num_iter", self.num_iter))
        if self.num_iter < 2:
            raise InputError(f"num_iter={self.num_iter!r} must be at least 2 (100 is a good default)")
        if not isinstance(self.step_mode, str) or self.step_mode not in STEP_MODES:
            raise InputError(f"step_mode={self.step_mode!r} must be one of {STEP_MODES} ('exp' is preferred)")
        fix(self, "smooth_f", _real("smooth_f", self.smooth_f))
        if not 0.0 <= self.smooth_f < 1.0:
            raise InputError(
                f"smooth_f={self.smooth_f!r} must be in [0, 1): the weight of the newest loss in the EMA "
                "(0 disables smoothing)"
            )
        fix(self, "diverge_th", _real("diverge_th", self.diverge_th))
        if not (math.isfinite(self.diverge_th) and self.diverge_th > 1.0):
            raise InputError(
                f"diverge_th={self.diverge_th!r} must be a finite number greater than 1 (5.0 is the default)"
            )
        fix(self, "accumulation_steps", _int("accumulation_steps", self.accumulation_steps))
        if self.accumulation_steps < 1:
            raise InputError(f"accumulation_steps={self.accumulation_steps!r} must be at least 1")
        for name in ("use_amp", "adaptive_stop", "non_blocking_transfer", "show_progress"):
            fix(self, name, check_flag(name, getattr(self, name)))
        fix(self, "amp_dtype", _amp_dtype(self.amp_dtype))

    def lr(self, step: int) -> float:
        """The swept (reference) learning rate of step ``step``."""
        return lr_at(step, self.start_lr, self.end_lr, self.num_iter, self.step_mode)

    @property
    def batches_needed(self) -> int:
        """Training batches the whole sweep draws from the loader."""
        return self.num_iter * self.accumulation_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the history and the JSON summary (``amp_dtype`` as its name)."""
        data = asdict(self)
        data["amp_dtype"] = None if self.amp_dtype is None else str(self.amp_dtype).replace("torch.", "")
        return data


#: Every setting's default, the one list the CLI and the compatibility front read.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RangeTestSettings)}
