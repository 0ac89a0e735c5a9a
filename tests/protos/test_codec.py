from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shoal.protos import codec, replay_pb2


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int32", "int64", "float16", "float32",
                                   "float64", "uint64"])
def test_round_trip_keeps_dtype_shape_and_values(dtype):
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    decoded = codec.decode_tensor(codec.encode_tensor(array), "x")
    assert decoded.dtype == np.dtype(dtype)
    assert decoded.shape == (2, 3, 4)
    np.testing.assert_array_equal(decoded, array)


def test_decoding_reads_the_bytes_without_copying_them():
    tensor = codec.encode_tensor(np.arange(1000, dtype=np.float32))
    decoded = codec.decode_tensor(tensor, "x")
    assert not decoded.flags.owndata  # a view over the message's bytes (np.frombuffer)


def test_scalars_and_empty_arrays():
    for array in (np.float32(3.5), np.zeros((0, 4), np.float32)):
        decoded = codec.decode_tensor(codec.encode_tensor(np.asarray(array)), "x")
        np.testing.assert_array_equal(decoded, array)
        assert decoded.shape == np.asarray(array).shape


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_rows_round_trip_into_a_reused_buffer(compression):
    array = np.zeros((5, 84, 84, 4), np.uint8)
    array[:, 10:20, 30:34] = np.arange(5, dtype=np.uint8)[:, None, None, None] + 1
    tensor = codec.encode_tensor(array, compression)
    assert len(tensor.rows) == 5 and not tensor.data
    assert tensor.ByteSize() < array.nbytes / 20  # flat frames compress well
    out = np.full_like(array, 255)
    decoded = codec.decode_tensor(tensor, "frames", out=out)
    assert decoded is out
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_rows_decompressed_by_threads_are_the_rows_decompressed_by_one(compression):
    rng = np.random.default_rng(0)
    array = (rng.integers(0, 4, (3 * codec.MIN_ROWS_PER_TASK + 5, 4, 21, 21)) * 60).astype(
        np.uint8)
    tensor = codec.encode_tensor(array, compression)
    with ThreadPoolExecutor(3) as pool:
        threaded = codec.decode_tensor(tensor, "obs", pool=pool, workers=3)
        np.testing.assert_array_equal(threaded, array)
        np.testing.assert_array_equal(threaded, codec.decode_tensor(tensor, "obs"))
        # a corrupt row in any thread's share is the field's error, as it is in one thread
        tensor.rows[-2] = tensor.rows[-2][:-3]
        with pytest.raises(codec.CodecError, match="obs: "):
            codec.decode_tensor(tensor, "obs", pool=pool, workers=3)


def test_truncated_bytes_name_the_field():
    tensor = codec.encode_tensor(np.ones((4, 4), np.float32))
    tensor.data = tensor.data[:-3]
    with pytest.raises(codec.CodecError, match="obs: data has 61 bytes, expected 64"):
        codec.decode_tensor(tensor, "obs")


def test_corrupt_compressed_row_is_an_error():
    tensor = codec.encode_tensor(np.ones((2, 64), np.uint8) * 3, "lz4")
    tensor.rows[1] = tensor.rows[1][:-2]
    with pytest.raises(codec.CodecError, match="frames: "):
        codec.decode_tensor(tensor, "frames")


def test_unknown_compression_and_dtype_are_errors():
    tensor = codec.encode_tensor(np.ones(3, np.float32))
    tensor.compression = 9
    with pytest.raises(codec.CodecError, match="obs: unknown compression 9"):
        codec.decode_tensor(tensor, "obs")
    bad_dtype = replay_pb2.Tensor(dtype="object", shape=[1], data=b"x")
    with pytest.raises(codec.CodecError, match="obs: dtype 'object' is not one of"):
        codec.decode_tensor(bad_dtype, "obs")


def test_negative_dimension_is_an_error():
    tensor = replay_pb2.Tensor(dtype="uint8", shape=[-1], data=b"")
    with pytest.raises(codec.CodecError, match="negative dimension"):
        codec.decode_tensor(tensor, "x")
