"""Kubernetes resource quantities ("500m", "2Gi", "1e3") as exact decimals.

The kubelet needs them for `resourceFieldRef` env values (a container's cpu or memory limit
divided by a divisor, rounded up, as the Downward API does).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_BINARY = {'Ki': 2**10, 'Mi': 2**20, 'Gi': 2**30, 'Ti': 2**40, 'Pi': 2**50, 'Ei': 2**60}
_DECIMAL = {'n': Decimal('1e-9'), 'u': Decimal('1e-6'), 'm': Decimal('1e-3'), '': Decimal(1),
            'k': Decimal('1e3'), 'M': Decimal('1e6'), 'G': Decimal('1e9'), 'T': Decimal('1e12'),
            'P': Decimal('1e15'), 'E': Decimal('1e18')}
_QUANTITY = re.compile(r'^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$')


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity's value in base units (cores, bytes)."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError(f'quantities must match the regular expression '
                            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise QuantityError(f'not a number: {value!r}') from exc
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    if suffix[:1] in ('e', 'E'):
        return base * Decimal(10) ** int(suffix[1:])
    return base * _DECIMAL[suffix]


def divided_rounding_up(value: str | int | float, divisor: str | int | float = '1') -> str:
    """`value / divisor` rounded up to an integer, as the Downward API writes resource values."""
    amount, unit = parse_quantity(value), parse_quantity(divisor)
    if unit <= 0:
        raise QuantityError(f'the divisor must be positive: {divisor!r}')
    return str(math.ceil(amount / unit))
