"""datasets.samples: the .npy members round-trip exactly, fast path or not."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from datasets.samples import npy_bytes, npy_load

DTYPES = st.sampled_from(["<f4", "<f8", "<f2", ">f8", "<i8", "|u1", "|b1", "<c8"])


@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_npy_round_trip_is_exact_and_writable(array):
    loaded = npy_load(npy_bytes(array))
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    assert loaded.flags.writeable and loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, array)
    reference = np.load(io.BytesIO(npy_bytes(array)), allow_pickle=False)
    assert loaded.tobytes() == reference.tobytes()  # bit for bit, NaNs and signed zeros included


def test_other_npy_layouts_load_through_numpy_and_bad_bytes_are_refused():
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    buffer = io.BytesIO()
    np.save(buffer, fortran)
    np.testing.assert_array_equal(npy_load(buffer.getvalue()), fortran)
    data = npy_bytes(np.arange(10, dtype=np.float32))
    with pytest.raises(ValueError, match="holds 36 bytes; its header says"):
        npy_load(data[:-4])
    with pytest.raises(ValueError):
        npy_load(b"not an npy file")
