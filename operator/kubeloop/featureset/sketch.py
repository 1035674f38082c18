"""Mergeable summaries that let the materializer fit transforms and profile features over data
larger than memory: each one is updated chunk by chunk, two of them merge into the summary of
the concatenated data, and memory stays bounded however many rows pass through.

- `Moments`: count, mean, M2 (Chan et al.'s parallel update), min and max of finite values.
  Mean and variance are exact up to floating-point rounding (chunked and whole agree to about
  1e-15 relative), count/min/max exactly.
- `QuantileSketch`: a deterministic, mergeable quantile sketch with a hard (worst-case, not
  probabilistic) rank-error bound that it reports itself; exact while it has seen at most `k`
  values.
- `ValueCounter`: value counts capped at `capacity` distinct values (Misra-Gries), exact while a
  column has at most `capacity` distinct values, with a reported error bound beyond.

Determinism matters more here than the last bit of accuracy: fitted parameters are stored in a
content-addressed version, so fitting the same chunks twice must give the same bytes. None of
these summaries uses randomness (a KLL sketch would need a seeded coin per compaction), and the
quantile sketch's bound holds for every input order, adversarial ones included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_SKETCH_K = 2048
"""Items a level of `QuantileSketch` holds before it is compacted. With k = 2048 the worst-case
normalized rank error is (floor(log2(N / k)) + 1) / k: 0.39% at 1M values, 0.59% at 100M, and
memory is about k * log2(N / k) * 8 bytes (under 200 KiB at 100M values)."""

DEFAULT_CATEGORY_CAPACITY = 1_000_000
"""Distinct values a `ValueCounter` tracks before Misra-Gries reduction starts."""


@dataclass
class Moments:
    """Count, mean, sum of squared deviations (M2), min and max of the finite values seen.

    Chan, Golub & LeVeque's pairwise update merges (count, mean, M2) of two parts without the
    cancellation a raw sum of squares suffers (a feature around 1e9 with unit variance keeps its
    variance), and it is what makes the accumulator mergeable across chunks and workers.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")

    def update(self, values: np.ndarray) -> None:
        """Adds finite float64 values (the caller drops nulls, NaN and infinities)."""
        if values.size == 0:
            return
        lo, hi = float(values.min()), float(values.max())
        # Scaling by a power of two is exact and keeps the sum of values near 1e308 finite.
        scale = 2.0**64 if max(abs(lo), abs(hi)) > 1e280 else 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(np.mean(values / scale)) * scale
            m2 = float(np.sum(np.square(values - mean)))
        self._combine(values.size, mean, m2, lo, hi)

    def merge(self, other: Moments) -> None:
        """Adds what another accumulator has seen."""
        if other.count:
            self._combine(other.count, other.mean, other.m2, other.min, other.max)

    def _combine(self, count: int, mean: float, m2: float, lo: float, hi: float) -> None:
        if self.count == 0:
            self.count, self.mean, self.m2, self.min, self.max = count, mean, m2, lo, hi
            return
        total = self.count + count
        with np.errstate(over="ignore", invalid="ignore"):
            delta = mean - self.mean
            self.m2 += m2 + delta * delta * (self.count * count / total)
        if np.isfinite(delta):
            self.mean += delta * (count / total)
        else:
            # Means of opposite signs near 1e308: their difference overflows, a weighted mean cannot.
            self.mean = self.mean * (self.count / total) + mean * (count / total)
        self.count = total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    @property
    def variance(self) -> float:
        """Population variance (ddof 0, as scikit-learn's StandardScaler); 0 when empty."""
        return self.m2 / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        """Population standard deviation."""
        return float(np.sqrt(self.variance))


class QuantileSketch:
    """A deterministic mergeable quantile sketch (Manku-Rajagopalan-Lindsay style compactors).

    Level h holds items of weight 2**h. When a level holds more than `k` items it is sorted and
    an even number of them is compacted: every other item (starting at offset 0 or 1, alternating
    per level) moves up one level with double weight. One compaction at level h changes the
    estimated rank of any value by at most 2**h, so the sketch knows a hard bound on its own
    error, `rank_error_bound` = sum over levels of compactions * 2**h, which is at most
    (floor(log2(N / k)) + 1) * N / k because each compaction at level h consumes at least k items
    of weight 2**h. Merging concatenates levels and compacts again; bounds add up.

    The retained items are actual input values, so a quantile of integers is an integer. The
    exact minimum and maximum are kept beside the levels. Total weight always equals `count`.
    """

    def __init__(self, k: int = DEFAULT_SKETCH_K) -> None:
        if k < 2:
            raise ValueError("k must be at least 2")
        self.k = k
        self.count = 0
        self.min = float("inf")
        self.max = float("-inf")
        self._levels: list[np.ndarray] = []
        self._parity: list[int] = []
        self._compactions: list[int] = []
        self._view: tuple[np.ndarray, np.ndarray] | None = None

    # -- building -------------------------------------------------------------------------------

    def update(self, values: np.ndarray) -> None:
        """Adds finite float64 values (the caller drops nulls, NaN and infinities)."""
        if values.size == 0:
            return
        values = np.asarray(values, dtype=np.float64)
        self.count += int(values.size)
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self._push(0, values)
        self._compress()

    def merge(self, other: QuantileSketch) -> None:
        """Adds what another sketch has seen (its k may differ; this sketch's k is kept)."""
        if other.count == 0:
            return
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        for level, items in enumerate(other._levels):
            self._push(level, items)
        for level, done in enumerate(other._compactions):
            self._grow(level)
            self._compactions[level] += done
        self._compress()

    def _grow(self, level: int) -> None:
        while len(self._levels) <= level:
            self._levels.append(np.empty(0, dtype=np.float64))
            self._parity.append(0)
            self._compactions.append(0)

    def _push(self, level: int, items: np.ndarray) -> None:
        self._grow(level)
        if items.size:
            current = self._levels[level]
            self._levels[level] = np.concatenate((current, items)) if current.size else items.copy()
        self._view = None

    def _compress(self) -> None:
        level = 0
        while level < len(self._levels):
            items = self._levels[level]
            if items.size > self.k:
                items = np.sort(items)
                even = items.size - items.size % 2
                # The odd item left out (the largest) keeps its weight: leaving it costs no error.
                offset = self._parity[level]
                self._parity[level] ^= 1
                self._compactions[level] += 1
                self._levels[level] = items[even:]
                self._push(level + 1, items[offset:even:2])
            level += 1

    # -- queries --------------------------------------------------------------------------------

    @property
    def rank_error_bound(self) -> int:
        """Largest possible difference, in items, between an estimated and a true rank."""
        return sum(done << level for level, done in enumerate(self._compactions))

    @property
    def exact(self) -> bool:
        """True while nothing was compacted: every query answers exactly."""
        return self.rank_error_bound == 0

    def sorted_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Retained items in increasing order and their cumulative weights (last == count)."""
        if self._view is None:
            if self.count == 0:
                self._view = (np.empty(0), np.empty(0, dtype=np.int64))
            else:
                items = np.concatenate(self._levels)
                weights = np.concatenate(
                    [np.full(level.size, 1 << h, dtype=np.int64) for h, level in enumerate(self._levels)]
                )
                order = np.argsort(items, kind="stable")
                self._view = (items[order], np.cumsum(weights[order]))
        return self._view

    def count_below(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Estimated number of items strictly less than each value (exact when `exact`)."""
        items, cumulative = self.sorted_view()
        index = np.searchsorted(items, np.asarray(values, dtype=np.float64), side="left")
        padded = np.concatenate(([0], cumulative))
        return padded[index]

    def quantiles(self, probabilities: Sequence[float] | np.ndarray) -> np.ndarray:
        """The inverted-CDF quantile for each probability: the smallest retained item whose
        estimated rank (items <= it) reaches probability * count. 0 and 1 give the exact min and
        max. When `exact`, this equals numpy's `quantile(method="inverted_cdf")`; otherwise the
        true normalized rank of the answer is within rank_error_bound / count of the target."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.count == 0:
            return np.full(probabilities.shape, np.nan)
        items, cumulative = self.sorted_view()
        targets = probabilities * self.count
        index = np.clip(np.searchsorted(cumulative, targets, side="left"), 0, items.size - 1)
        result = items[index]
        result = np.where(probabilities <= 0, self.min, result)
        return np.where(probabilities >= 1, self.max, result)

    def split_points(self, probabilities: Sequence[float] | np.ndarray) -> np.ndarray:
        """For each probability p, the item at position floor(p * count) of the weighted sorted
        items: the smallest retained item with more than p * count items at or below it. Bucket
        and histogram edges use these because then about p * count items fall strictly below the
        edge (exactly so for distinct values and an exact sketch), which is what the
        [edge, next edge) bucket rule needs for equal-mass buckets. 0 and 1 give min and max."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.count == 0:
            return np.full(probabilities.shape, np.nan)
        items, cumulative = self.sorted_view()
        index = np.clip(np.searchsorted(cumulative, probabilities * self.count, side="right"), 0, items.size - 1)
        result = np.where(probabilities <= 0, self.min, items[index])
        return np.where(probabilities >= 1, self.max, result)

    def equal_mass_edges(self, buckets: int) -> np.ndarray:
        """Inner edges of at most `buckets` equal-mass buckets under the [edge, next edge) rule:
        the distinct split points at 1/buckets, ..., (buckets-1)/buckets, strictly above the
        minimum (an edge at the minimum would make a bucket that no fitted value falls into).
        Ties make fewer edges. The rule bucketize (numBuckets) and the profile histogram share."""
        if self.count == 0 or buckets < 2:
            return np.empty(0, dtype=np.float64)
        points = np.unique(self.split_points(np.arange(1, buckets) / buckets))
        return points[points > self.min]

    def distinct_items(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct retained values and their weights; the full sample when `exact`."""
        items, cumulative = self.sorted_view()
        if items.size == 0:
            return items, cumulative
        last = np.flatnonzero(np.append(items[1:] != items[:-1], True))
        totals = cumulative[last]
        return items[last], np.diff(np.concatenate(([0], totals)))


class ValueCounter:
    """Counts of distinct non-null values with at most `capacity` counters (Misra-Gries).

    Exact while at most `capacity` distinct values were seen. Beyond, the counters are reduced
    the mergeable Misra-Gries way (Agarwal et al., "Mergeable summaries"): subtract the
    (capacity+1)-th largest count from every counter and drop those that reach zero. Every
    reported count then undercounts by at most `error_bound`, a value not reported occurs at
    most `error_bound` times, and error_bound <= total / (capacity + 1).
    """

    def __init__(self, value_type: pa.DataType, capacity: int = DEFAULT_CATEGORY_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.value_type = value_type
        self.capacity = capacity
        self.total = 0
        self.error_bound = 0
        self._values: pa.Array = pa.array([], type=value_type)
        self._counts = np.empty(0, dtype=np.int64)

    @property
    def exact(self) -> bool:
        """True while no reduction happened: counts and the distinct count are exact."""
        return self.error_bound == 0

    @property
    def tracked(self) -> int:
        """Number of values with a counter (the distinct count when `exact`)."""
        return len(self._values)

    def update(self, values: pa.Array) -> None:
        """Counts the non-null values of an Arrow array of `value_type`."""
        values = values.drop_null()
        if len(values) == 0:
            return
        counted = pc.value_counts(values)
        counts = counted.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)
        self.total += int(counts.sum())
        self._absorb(counted.field("values"), counts)

    def merge(self, other: ValueCounter) -> None:
        """Adds what another counter has seen."""
        self.total += other.total
        self.error_bound += other.error_bound
        if other.tracked:
            self._absorb(other._values, other._counts)

    def _absorb(self, values: pa.Array, counts: np.ndarray) -> None:
        if self.tracked:
            grouped = (
                pa.table(
                    {
                        "v": pa.concat_arrays([self._values, values.cast(self.value_type)]),
                        "c": np.concatenate((self._counts, counts)),
                    }
                )
                .group_by("v", use_threads=False)
                .aggregate([("c", "sum")])
            )
            values = grouped.column("v").combine_chunks()
            counts = grouped.column("c_sum").to_numpy().astype(np.int64)
        self._values, self._counts = values.cast(self.value_type), counts
        if self.tracked > self.capacity:
            # The (capacity+1)-th largest count: subtracting it leaves at most capacity positive.
            threshold = int(np.partition(counts, counts.size - self.capacity - 1)[counts.size - self.capacity - 1])
            remaining = counts - threshold
            keep = remaining > 0
            self._values = self._values.filter(pa.array(keep))
            self._counts = remaining[keep]
            self.error_bound += threshold

    def most_common(self, limit: int | None = None, min_count: int = 1) -> tuple[pa.Array, np.ndarray]:
        """Values with at least `min_count` counts, by decreasing count, ties by increasing
        value (the order scikit-learn's most_frequent imputer breaks ties in), at most `limit`."""
        table = pa.table({"v": self._values, "c": self._counts})
        table = table.filter(pc.greater_equal(table.column("c"), min_count))
        table = table.sort_by([("c", "descending"), ("v", "ascending")])
        if limit is not None:
            table = table.slice(0, limit)
        return table.column("v").combine_chunks(), table.column("c").to_numpy().astype(np.int64)
