"""Pack Python values into the flat bit vectors of Amaranth struct/array ports.

Offsets come from the hardware's own layouts, so a layout change in ``hw/``
cannot silently desynchronise the testbench.
"""

from __future__ import annotations

from amaranth.lib import data

__all__ = ["pack_struct", "pack_array", "unpack_unsigned_array"]


def pack_struct(layout: data.StructLayout, **fields: int) -> int:
    """Pack named fields (signed values in two's complement) into one integer."""
    word = 0
    for name, field in layout:
        value = int(fields.get(name, 0))
        mask = (1 << field.width) - 1
        if field.shape.signed:
            if not -(1 << (field.width - 1)) <= value < (1 << (field.width - 1)):
                raise ValueError(f"{name} = {value} does not fit signed {field.width} bits")
        elif not 0 <= value <= mask:
            raise ValueError(f"{name} = {value} does not fit unsigned {field.width} bits")
        word |= (value & mask) << field.offset
    return word


def pack_array(layout: data.ArrayLayout, elements: list[int]) -> int:
    """Concatenate already-packed elements, element 0 in the low bits."""
    if len(elements) > layout.length:
        raise ValueError(f"{len(elements)} elements for an array of {layout.length}")
    size = data.Layout.cast(layout.elem_shape).size
    word = 0
    for i, element in enumerate(elements):
        word |= int(element) << (i * size)
    return word


def unpack_unsigned_array(word: int, width: int, length: int) -> list[int]:
    mask = (1 << width) - 1
    return [(word >> (i * width)) & mask for i in range(length)]
