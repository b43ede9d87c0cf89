"""The statistics of scripts/compare_servers.py: latency quantiles from
histograms, paired ratios and distribution-free confidence intervals."""

import math
import statistics

# The confidence asked of every interval, which the echo-client target
# also asks of its own (bench_report.not_measurably_slower).
CONFIDENCE = 0.95


def histogram_quantile(histogram, q):
    """The q-quantile, in µs, of round trips counted by nanosecond bucket
    (a Counter), picked as the C generator picks it from its samples.

    >>> from collections import Counter
    >>> histogram_quantile(Counter({1000: 98, 5000: 1, 9000: 1}), 0.5)
    1.0
    >>> histogram_quantile(Counter({1000: 98, 5000: 1, 9000: 1}), 0.99)
    5.0
    """
    rank = int(q * (sum(histogram.values()) - 1) + 0.5)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return bucket / 1000
    raise ValueError("an empty histogram has no quantiles")


def median_of(runs, key):
    return statistics.median(run[key] for run in runs)


def paired_ratio(values, reference_values):
    """The median and range of round-by-round ratios of values to the reference's."""
    ratios = [value / base for value, base in zip(values, reference_values)]
    return {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios),
            "rounds": ratios}


def median_confidence_interval(values, confidence=CONFIDENCE):
    """A distribution-free confidence interval for the median of `values`,
    and the confidence it has.

    Sorted, the k-th smallest and k-th largest value bracket the median
    unless fewer than k of the values fall on one side of it, which happens
    with the probability of a binomial(n, 1/2) tail: k is the largest rank
    for which both tails together stay within 1 - confidence (the sign
    test, inverted). Too few values for that give the whole range, with
    less confidence than asked.

    >>> median_confidence_interval([5, 1, 4, 2, 3])
    (1, 5, 0.9375)
    >>> low, high, confidence = median_confidence_interval(list(range(1, 21)))
    >>> (low, high, round(confidence, 3))
    (6, 15, 0.959)
    """
    ordered = sorted(values)
    n = len(ordered)

    # How likely the median lies outside the rank-th values from each end:
    # fewer than `rank` values below it, or above it.
    outside = 2 * math.comb(n, 0) / 2**n
    rank = 1
    while rank < n // 2:
        wider = outside + 2 * math.comb(n, rank) / 2**n
        if wider > 1 - confidence:
            break
        rank, outside = rank + 1, wider
    return ordered[rank - 1], ordered[n - rank], 1 - outside


def pooled_ratio(ratios):
    """The median of paired ratios from many cells, with its confidence interval."""
    low, high, confidence = median_confidence_interval(ratios)
    return {
        "median": statistics.median(ratios),
        "low": low,
        "high": high,
        "confidence": confidence,
        "round_count": len(ratios),
    }
