"""Number formats the matrix and vector units work in, and their storage size."""

from __future__ import annotations

from typing import Literal, get_args

DType = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]
DTYPES: tuple[str, ...] = get_args(DType)

# bytes per element in memory (tf32 is stored as fp32; fp4/int4 pack two per byte)
BYTES: dict[str, float] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
    "fp4": 0.5,
    "int4": 0.5,
    "int32": 4,  # partial sums of int8 products, never an op's input
}


def check_dtype(dtype: str, field: str = "dtype") -> str:
    """`dtype` if it is a known number format; otherwise a one-line error naming `field`."""
    if dtype not in DTYPES:
        from chipforge.errors import WorkloadError, did_you_mean

        raise WorkloadError(
            f"`{field}` must be one of {', '.join(DTYPES)}, not {dtype!r}"
            f"{did_you_mean(str(dtype), DTYPES)}"
        )
    return dtype


def nbytes(dtype: str) -> float:
    """Bytes per element of `dtype`."""
    return BYTES[dtype]
