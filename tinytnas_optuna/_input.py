"""The input a model sees: how long a window and how often the sensor is sampled.

A candidate's cost starts before its first layer: the window length and the sampling rate set
the input buffer, every layer's length, the MACs and the latency. :class:`InputSpace` lists the
input settings a search may choose from; each :class:`InputSetting` turns a recorded series into
what a device running at that setting would hold in its buffer:

- **Window**: the *last* ``window`` samples of each series. A device classifies the samples its
  buffer holds when inference runs, which are the most recent ones; for series cut from a longer
  recording with one label per cut window (HAR's 2.56 s windows, ECG beats), the label covers
  the whole window, so its last part carries the same label. Windows shorter than half the
  recorded length are refused: the label may then describe what the model never sees.
- **Decimation** by an integer factor ``d``: what a sensor sampled ``d`` times less often gives.
  Such a sensor low-pass filters before it samples (its own anti-aliasing filter), so the series
  is first low-pass filtered (a linear-phase windowed-sinc FIR, cut-off at 80 % of the new
  Nyquist frequency, unit gain at 0 Hz), then every ``d``-th sample is kept, aligned to the last
  sample (the newest one, as on the device).

Pure NumPy: planning and profiling never import TensorFlow.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

#: Shortest decimated window a setting may give (the family's first cell halves it).
MIN_LENGTH = 8
#: Anti-aliasing cut-off as a share of the decimated signal's Nyquist frequency.
CUTOFF = 0.8


@dataclass(frozen=True, order=True)
class InputSetting:
    """One input setting: a decimation factor and a window length.

    Attributes:
        decimate: Keep one sample in ``decimate`` (1: the recorded rate).
        window: Samples at the recorded rate the device buffers (None: the whole series).
    """

    decimate: int = 1
    window: int | None = None

    def __post_init__(self) -> None:
        if self.decimate < 1:
            raise ValueError(f"decimate must be >= 1, got {self.decimate}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 sample, got {self.window}")

    def length(self, recorded: int) -> int:
        """Samples the model sees for series of ``recorded`` samples.

        Args:
            recorded: Length of the recorded series.

        Returns:
            ``window // decimate`` (the window defaulting to ``recorded``).

        Example:
            >>> InputSetting(2, 128).length(128)
            64
        """
        return min(self.window or recorded, recorded) // self.decimate

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The series a device at this setting would hold: last window, anti-aliased, decimated.

        Args:
            x: ``(N, L)`` or ``(N, L, C)`` series at the recorded rate.

        Returns:
            ``(N, length(L), C)`` float32 (a copy; ``x`` itself when nothing changes).

        Example:
            >>> x = np.ones((2, 100, 3))
            >>> InputSetting(4, 80).apply(x).shape
            (2, 20, 3)
            >>> float(InputSetting(4, 80).apply(x).mean())  # unit gain at 0 Hz
            1.0
        """
        x = np.asarray(x, dtype="float32")
        if x.ndim == 2:
            x = x[:, :, None]
        if self.window is not None:
            if self.window > x.shape[1]:
                raise ValueError(f"window of {self.window} samples is longer than the series "
                                 f"({x.shape[1]} samples)")
            x = x[:, x.shape[1] - self.window:]
        if self.decimate == 1:
            return x
        n = x.shape[1] // self.decimate
        if n < 1:
            raise ValueError(f"decimating {x.shape[1]} samples by {self.decimate} leaves none")
        filtered = _low_pass(x, self.decimate)
        # The newest sample is kept; then every decimate-th one before it.
        first = x.shape[1] - n * self.decimate + self.decimate - 1
        return np.ascontiguousarray(filtered[:, first::self.decimate][:, :n])

    def describe(self, rate_hz: float | None = None) -> str:
        """A short label, e.g. ``"1/2 rate, 128 samples"`` or ``"25 Hz, 1.92 s"``.

        Args:
            rate_hz: The recorded rate, when known.

        Returns:
            The label.

        Example:
            >>> InputSetting(2, 96).describe(50.0)
            '25 Hz, 1.92 s (48 samples)'
        """
        if rate_hz is None:
            rate = "full rate" if self.decimate == 1 else f"1/{self.decimate} rate"
            return rate + ("" if self.window is None else f", {self.window} samples")
        rate = f"{rate_hz / self.decimate:g} Hz"
        if self.window is None:
            return rate
        return (f"{rate}, {self.window / rate_hz:g} s "
                f"({self.window // self.decimate} samples)")


@dataclass(frozen=True)
class InputSpace:
    """The input settings a search chooses from: every decimation with every window.

    Args:
        decimate: Decimation factors (1: the recorded rate).
        window: Window lengths in samples at the recorded rate (None: the whole series only).

    Example:
        >>> space = InputSpace(decimate=(1, 2), window=(128, 64))
        >>> [(s.decimate, s.window) for s in space.settings(128)]
        [(1, 128), (1, 64), (2, 128), (2, 64)]
    """

    decimate: tuple[int, ...] = (1,)
    window: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.decimate or (self.window is not None and not self.window):
            raise ValueError("an input space needs at least one decimation and one window")
        if min(self.decimate) < 1 or (self.window is not None and min(self.window) < 1):
            raise ValueError("decimation factors and windows must be >= 1")
        object.__setattr__(self, "decimate", tuple(sorted(set(map(int, self.decimate)))))
        if self.window is not None:
            object.__setattr__(self, "window",
                               tuple(sorted(set(map(int, self.window)), reverse=True)))

    @classmethod
    def of(cls, settings: list[list[int]] | None) -> InputSpace | None:
        """The space a search recorded as ``[[decimate, window], ...]`` (None: none).

        Example:
            >>> InputSpace.of([[1, 128], [2, 128]])
            InputSpace(decimate=(1, 2), window=(128,))
        """
        if not settings:
            return None
        return cls(decimate=tuple(d for d, _ in settings), window=tuple(w for _, w in settings))

    @classmethod
    def parse(
        cls, *, decimate: str | None = None, windows: str | None = None,
        rates: str | None = None, rate_hz: str | float | None = None,
    ) -> InputSpace | None:
        """The space of command-line lists (None when none is given).

        Args:
            decimate: Factors, e.g. ``"1,2,4"``.
            windows: Window lengths: samples (``"128,96,64"``) or, with ``rate_hz``, seconds
                (``"2.56s,1.92s"``).
            rates: Instead of ``decimate``, with ``rate_hz``: sampling rates in Hz
                (``"50,25,12.5"``), each the recorded rate divided by a whole number.
            rate_hz: The rate the data was recorded at.

        Returns:
            The :class:`InputSpace`, or None.

        Raises:
            ValueError: One line naming the value that cannot be read.

        Examples:
            >>> InputSpace.parse(rates="50,25,12.5", rate_hz="50", windows="2.56s,1.28s")
            InputSpace(decimate=(1, 2, 4), window=(128, 64))
            >>> InputSpace.parse() is None
            True
        """
        if decimate is None and windows is None and rates is None:
            return None
        rate = None if rate_hz is None else _number(str(rate_hz), "--rate-hz")
        if rate is not None and rate <= 0:
            raise ValueError(f"--rate-hz must be positive, got {rate_hz}")
        if rates is not None and decimate is not None:
            raise ValueError("give --rates or --decimate, not both")
        factors: tuple[int, ...] = (1,)
        if decimate is not None:
            factors = tuple(_whole(v, "--decimate") for v in _items(decimate, "--decimate"))
        elif rates is not None:
            if rate is None:
                raise ValueError("--rates needs --rate-hz (the rate the data was recorded at)")
            factors = tuple(_factor(rate, _number(v, "--rates")) for v in _items(rates, "--rates"))
        window = None
        if windows is not None:
            window = tuple(_window(v, rate) for v in _items(windows, "--windows"))
        return cls(decimate=factors, window=window)

    def to_list(self, recorded: int) -> list[list[int]]:
        """The settings as ``[[decimate, window], ...]`` for series of ``recorded`` samples.

        Example:
            >>> InputSpace(decimate=(2, 1)).to_list(128)
            [[1, 128], [2, 128]]
        """
        return [[s.decimate, int(s.window or recorded)] for s in self.settings(recorded)]

    def settings(self, recorded: int) -> list[InputSetting]:
        """Every setting, checked against series of ``recorded`` samples.

        The recorded rate and the longest window come first: the input a search without an
        input space would use.

        Args:
            recorded: Length of the recorded series.

        Returns:
            The settings, in that order.

        Raises:
            ValueError: A window longer than the series or shorter than half of it, or a
                setting that leaves fewer than :data:`MIN_LENGTH` samples.
        """
        windows = self.window or (recorded,)
        out = []
        for d, w in itertools.product(self.decimate, windows):
            if w is not None and not recorded / 2 <= w <= recorded:
                raise ValueError(
                    f"window of {w} samples: windows must be between half the series' length "
                    f"and its length ({math.ceil(recorded / 2)}..{recorded} samples); a shorter "
                    "one may miss what its label describes")
            setting = InputSetting(d, w)
            if setting.length(recorded) < MIN_LENGTH:
                raise ValueError(f"{setting.describe()} leaves {setting.length(recorded)} "
                                 f"samples of {recorded}: at least {MIN_LENGTH} are needed")
            out.append(setting)
        return out


def _items(text: str, flag: str) -> list[str]:
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise ValueError(f"{flag}: give a comma-separated list, got {text!r}")
    return items


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a number") from None


def _whole(text: str, flag: str) -> int:
    value = _number(text, flag)
    if value != int(value) or value < 1:
        raise ValueError(f"{flag}: {text!r} is not a whole number >= 1")
    return int(value)


def _factor(rate: float, wanted: float) -> int:
    """The decimation factor giving ``wanted`` Hz from ``rate`` Hz (a whole number)."""
    factor = rate / wanted if wanted > 0 else 0.0
    if factor < 1 or abs(factor - round(factor)) > 1e-6:
        raise ValueError(f"--rates: {wanted:g} Hz is not {rate:g} Hz divided by a whole number")
    return round(factor)


def _window(text: str, rate: float | None) -> int:
    """A window in samples: ``"96"``, or ``"1.92s"`` at ``rate`` Hz."""
    if not text.endswith("s"):
        return _whole(text, "--windows")
    if rate is None:
        raise ValueError(f"--windows: {text!r} is in seconds: give --rate-hz too")
    samples = _number(text[:-1], "--windows") * rate
    if abs(samples - round(samples)) > 1e-6 or round(samples) < 1:
        raise ValueError(f"--windows: {text} at {rate:g} Hz is not a whole number of samples")
    return round(samples)


def _low_pass(x: np.ndarray, factor: int) -> np.ndarray:
    """Linear-phase FIR low-pass along time (axis 1), edges extended by reflection."""
    taps = _taps(factor)
    half = len(taps) // 2
    mode = "reflect" if x.shape[1] > half else "edge"
    padded = np.pad(x, ((0, 0), (half, half), (0, 0)), mode=mode)
    # A sliding dot product over time, every series and channel at once.
    windows = np.lib.stride_tricks.sliding_window_view(padded, len(taps), axis=1)
    return np.einsum("nlct,t->nlc", windows, taps[::-1]).astype("float32")


def _taps(factor: int) -> np.ndarray:
    """Hamming-windowed sinc, cut-off ``CUTOFF / (2 * factor)`` cycles per sample, sum 1.

    Example:
        >>> t = _taps(2)
        >>> len(t), round(float(t.sum()), 6)
        (21, 1.0)
    """
    n = 10 * factor + 1
    cutoff = CUTOFF / (2 * factor)
    t = np.arange(n) - n // 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * t) * np.hamming(n)
    return taps / taps.sum()
