"""How sure is a held-out accuracy? Wilson intervals, and McNemar's exact test for two arms on the same items."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
ALPHA = 0.05


def wilson(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default).

    Unlike "p ± z·se" it stays inside [0, 1] and is honest for small samples and for 0% or 100%.

    Args:
        correct: successes (held-out items classified correctly).
        total: trials (held-out items); 0 gives (0, 1).
        z: the normal quantile of the confidence level.

    Returns:
        (low, high).
    """
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    low = 0.0 if correct <= 0 else max(0.0, centre - half)
    high = 1.0 if correct >= total else min(1.0, centre + half)  # exact ends, free of rounding
    return low, high


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided p-value of McNemar's exact test (a binomial test on the discordant pairs).

    Args:
        only_first: items the first classifier got right and the second wrong.
        only_second: items the second got right and the first wrong.

    Returns:
        The p-value; 1.0 when the two never disagree.
    """
    from scipy.stats import binom

    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(only_first, only_second), discordant, 0.5)))


@dataclass(frozen=True)
class Difference:
    """Whether two accuracies on one held-out split tell the arms apart.

    Attributes:
        distinguishable: the difference is unlikely to be chance at level :data:`ALPHA`.
        p_value: McNemar's exact p-value, None when the intervals were compared instead.
        method: how it was decided, for people.
    """

    distinguishable: bool
    p_value: float | None
    method: str


MCNEMAR = "McNemar's exact test on the same held-out items"
OVERLAP = "overlap of the 95% Wilson intervals"


def compare(first_correct: Sequence[bool] | None, second_correct: Sequence[bool] | None,
            first: tuple[int, int], second: tuple[int, int]) -> Difference:
    """Tell two arms apart: McNemar's exact test when both have per-item outcomes on the same items,
    otherwise whether their Wilson intervals overlap (a cruder, more cautious check).

    Args:
        first_correct: per held-out item, whether the first arm was right (None if unknown).
        second_correct: the same for the second arm, on the same items in the same order.
        first: (correct, total) of the first arm.
        second: (correct, total) of the second arm.

    Returns:
        A Difference.
    """
    if first_correct is not None and second_correct is not None and len(first_correct) == len(second_correct) > 0:
        only_first = sum(a and not b for a, b in zip(first_correct, second_correct))
        only_second = sum(b and not a for a, b in zip(first_correct, second_correct))
        p = mcnemar_exact(only_first, only_second)
        return Difference(p < ALPHA, p, MCNEMAR)
    (low_a, high_a), (low_b, high_b) = wilson(*first), wilson(*second)
    return Difference(high_a < low_b or high_b < low_a, None, OVERLAP)


def interval_text(correct: int, total: int) -> str:
    """'49%–94% (8/10)': the 95% Wilson interval with the counts it comes from."""
    low, high = wilson(correct, total)
    return f"{low:.0%}–{high:.0%} ({correct}/{total})"
