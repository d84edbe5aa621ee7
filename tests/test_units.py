"""Quantities: decimal prefixes are powers of 10, binary ones powers of 2, and fmt round-trips."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chipforge.errors import UnitError
from chipforge.units import DISPLAY_UNIT, fmt, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.35 TB/s", 3.35e12),
        ("80 GiB", 80 * 2**30),
        ("80 GB", 80e9),
        ("700 W", 700.0),
        ("1.98 GHz", 1.98e9),
        ("814 mm2", 814e-6),  # an area prefix applies to the length: (1e-3 m)^2
        ("400 Gb/s", 400e9 / 8),  # bits
        ("3.9 pJ/bit", 3.9e-12 * 8),
        ("989.4 TFLOP/s", 989.4e12),
        ("2 us", 2e-6),
        ("24 MiB", 24 * 2**20),
    ],
)
def test_parse(text, expected):
    assert parse_quantity(text) == pytest.approx(expected, rel=1e-12)


def test_tera_is_ten_to_the_twelve_not_two_to_the_forty():
    assert parse_quantity("1 TB") == 1e12
    assert parse_quantity("1 TiB") == 2**40


def test_dimension_is_checked():
    with pytest.raises(UnitError) as err:
        parse_quantity("80 GB", "bandwidth", field="hbm.bandwidth")
    assert str(err.value) == "`hbm.bandwidth` must be a bandwidth quantity, not '80 GB' (a bytes)"


def test_unknown_unit_message():
    with pytest.raises(UnitError) as err:
        parse_quantity("1.5 GHzz", field="clock")
    assert str(err.value).startswith("`clock` has unknown unit 'GHzz' in '1.5 GHzz'; use one of")


def test_garbage_message():
    with pytest.raises(UnitError) as err:
        parse_quantity("fast", field="clock")
    assert str(err.value) == "`clock` must be a number with a unit such as '3.35 TB/s', not 'fast'"


@given(
    value=st.floats(min_value=1e-15, max_value=1e24, allow_nan=False),
    dimension=st.sampled_from(sorted(DISPLAY_UNIT)),
)
def test_fmt_parse_round_trip(value, dimension):
    text = fmt(value, dimension, digits=17)
    assert math.isclose(parse_quantity(text, dimension), value, rel_tol=1e-12)


@given(value=st.floats(min_value=1.0, max_value=1e18, allow_nan=False))
def test_binary_round_trip(value):
    assert math.isclose(
        parse_quantity(fmt(value, "bytes", digits=17, binary=True)), value, rel_tol=1e-12
    )


def test_parse_count_suffixes_and_errors():
    from chipforge.units import parse_count

    assert parse_count("15.6T", "--tokens") == pytest.approx(1.56e13)
    assert parse_count("2e12", "--tokens") == 2e12
    assert parse_count("3k", "--n") == 3000
    for bad in ("-1", "0", "12Q", "abc"):
        with pytest.raises(UnitError, match="--tokens"):
            parse_count(bad, "--tokens")


@pytest.mark.parametrize(
    ("dimension", "example"),
    [("time", "100 ms"), ("power", "700 W"), ("frequency", "1.98 GHz"), ("bytes", "80 GiB")],
)
def test_garbage_message_shows_the_fields_own_unit(dimension, example):
    """`serve --tpot-slo nan` read "... such as '3.35 TB/s'": a bandwidth for a time."""
    from chipforge.units import EXAMPLES

    with pytest.raises(UnitError) as err:
        parse_quantity("nan", dimension, field="--tpot-slo")
    assert f"such as '{example}', not 'nan'" in str(err.value)
    assert all(parse_quantity(ex, dim) > 0 for dim, ex in EXAMPLES.items())  # each its own unit
