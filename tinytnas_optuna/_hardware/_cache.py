"""The per-process cache of hardware profiles, and its statistics.

One :class:`ProfileCache`, :data:`PROFILE_CACHE`, serves ``profile_model`` and
``profile_architecture``; :func:`profile_cache_info` and :func:`clear_profile_cache` are the
public view of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tinytnas_optuna._hardware._convert import CONVERSIONS
from tinytnas_optuna._hardware._types import HardwareProfile

#: ``(Architecture or structural signature, method, int8_io)``.
Key = tuple[Any, str, bool]


class ProfileCache:
    """Profiles keyed by network structure, method and I/O type, with hit and miss counts.

    Figures depend on the network's structure only, not on representative data values (they
    change quantisation scales, never sizes) nor on weight values (zero biases are made
    non-zero before conversion), so keys ignore both.

    Attributes:
        hits: Lookups answered from the cache since the last :meth:`clear`.
        misses: Lookups that computed a profile since the last :meth:`clear`.

    Examples:
        >>> cache = ProfileCache()
        >>> profile = HardwareProfile(4096, 9000, 38509, "analytic", "example")
        >>> cache.get(("net", "analytic", False), lambda: profile) is profile
        True
        >>> cache.get(("net", "analytic", False), lambda: None) is profile
        True
        >>> cache.info()
        {'hits': 1, 'misses': 1, 'size': 1}
    """

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self._profiles: dict[Key, HardwareProfile] = {}
        # Held while computing a miss, so a network is never measured twice at once.
        self._lock = threading.RLock()

    def get(self, key: Key, compute: Callable[[], HardwareProfile]) -> HardwareProfile:
        """The cached profile of ``key``, computed and stored on a miss.

        Args:
            key: ``(Architecture or structural signature, method, int8_io)``.
            compute: Makes the profile; called only on a miss. Its errors propagate and
                nothing is stored.

        Returns:
            The profile.
        """
        with self._lock:
            if key in self._profiles:
                self.hits += 1
                return self._profiles[key]
            self.misses += 1
            profile = compute()
            self._profiles[key] = profile
            return profile

    def info(self) -> dict[str, int]:
        """The cache's statistics.

        Returns:
            ``hits``, ``misses`` and ``size`` (profiles stored).
        """
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "size": len(self._profiles)}

    def clear(self) -> None:
        """Forget every profile and reset the hit and miss counts."""
        with self._lock:
            self._profiles.clear()
            self.hits = 0
            self.misses = 0


#: The process's profile cache.
PROFILE_CACHE = ProfileCache()


def profile_cache_info() -> dict[str, int]:
    """Statistics of the profile cache.

    Returns:
        ``hits``, ``misses``, ``size`` and ``conversions`` (TF conversions done in this
        process by any function of this package).
    """
    return {**PROFILE_CACHE.info(), "conversions": CONVERSIONS.value}


def clear_profile_cache() -> None:
    """Forget all cached profiles (hit and miss counts are reset too; conversions are not)."""
    PROFILE_CACHE.clear()
