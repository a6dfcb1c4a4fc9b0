"""The one sampling engine (actfusion_ros.sampling) and decoding after the decision (push_encoded)."""
from __future__ import annotations

import numpy as np
import pytest

from actfusion_model.features.base import FeatureExtractor
from actfusion_ros.frames import ImageConversionError, inspect_image
from actfusion_ros.sampling import FRAME_SHAPE, FeatureSampling
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import EncodedFrame, StreamConfig
from tests.test_stream import FPS30, FakeForecaster, TagExtractor, tag

S = 1_000_000_000


class PerFrame(TagExtractor):
    """TagExtractor without context: a feature depends on its own frame only."""

    dim = 1
    context_frames = 1

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        return frames[:, 0, 0, :1].astype(np.float32)


class Counted:
    """An encoded frame that records whether it was decoded."""

    def __init__(self, value: int, decoded: list[int], fail: bool = False) -> None:
        self.shape, self.value, self.decoded, self.fail = (2, 2, 3), value, decoded, fail

    def decode(self) -> np.ndarray:
        self.decoded.append(self.value)
        if self.fail:
            raise ImageConversionError("cannot decode jpeg data (9 bytes): corrupt stream", kind="corrupt")
        return tag(self.value)


def _anticipator(extractor: FeatureExtractor) -> StreamingAnticipator:
    return StreamingAnticipator(StreamConfig(feature_rate_hz=2.0), extractor, FakeForecaster(), ["a", "b", "c"])


def test_the_engine_decides_by_stamp_and_shape_and_clears_the_context_on_a_new_episode() -> None:
    sampling = FeatureSampling(TagExtractor(), S // 2)
    assert sampling.decide(0, (2, 2, 3)).take
    sampling.feature(tag(1))
    d = sampling.decide(S // 30, (2, 2, 3))
    assert d.kind == "not_due" and sampling.needs_pixels(d)       # context frame of a 2-frame extractor
    assert sampling.decide(S // 30, (2, 2, 3)).kind == "duplicate"
    changed = sampling.decide(2 * S // 30, (4, 4, 3))
    assert changed.take and changed.reset_reason == FRAME_SHAPE and len(sampling.context) == 0
    no_context = FeatureSampling(PerFrame(), S // 2)
    no_context.decide(0, (2, 2, 3))
    assert not no_context.needs_pixels(no_context.decide(S // 30, (2, 2, 3)))   # not due: never looked at


@pytest.mark.parametrize("extractor, decoded_frames", [(PerFrame(), [0, 15, 30]),
                                                       (TagExtractor(), list(range(31)))])
def test_only_the_frames_the_sampler_uses_are_decoded(extractor, decoded_frames) -> None:
    ant, decoded = _anticipator(extractor), []
    for k in range(31):
        ant.push_encoded(FPS30[k], Counted(k, decoded))
        ant.push_encoded(FPS30[k], Counted(k, decoded))           # a duplicate: never decoded
    assert decoded == decoded_frames
    st = ant.stats
    assert (st.frames_accepted, st.duplicates, st.frames_received) == (3, 31, 62)


def test_encoded_and_decoded_frames_give_the_same_features() -> None:
    lazy, eager = _anticipator(TagExtractor()), _anticipator(TagExtractor())
    for k in range(61):
        lazy.push_encoded(FPS30[k], Counted(k, []))
        eager.push_frame(FPS30[k], tag(k))
    np.testing.assert_array_equal(lazy.snapshot()[0], eager.snapshot()[0])
    np.testing.assert_array_equal(lazy.snapshot()[1], eager.snapshot()[1])


def test_a_taken_frame_that_does_not_decode_is_an_extract_error_and_the_counters_add_up() -> None:
    ant, decoded = _anticipator(PerFrame()), []
    ant.push_encoded(FPS30[0], Counted(0, decoded))
    with pytest.raises(ImageConversionError, match="corrupt"):
        ant.push_encoded(FPS30[15], Counted(15, decoded, fail=True))
    ant.push_encoded(FPS30[30], Counted(30, decoded))
    st = ant.stats
    assert (st.frames_accepted, st.extract_errors) == (2, 1)
    assert st.frames_received == (st.frames_accepted + st.frames_not_due + st.duplicates + st.out_of_order
                                  + st.invalid_frames + st.extract_errors + st.future_frames)


def test_a_frame_whose_decoded_size_differs_from_its_header_is_refused() -> None:
    ant = _anticipator(PerFrame())
    with pytest.raises(ValueError, match="its header said"):
        ant.push_encoded(0, EncodedFrame((4, 4, 3), lambda: tag(1)))


def test_raw_images_are_checked_from_the_header_and_converted_on_decode() -> None:
    from types import SimpleNamespace

    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = SimpleNamespace(encoding="bgr8", height=2, width=3, step=9, is_bigendian=0,
                          data=rgb[:, :, ::-1].tobytes())
    image = inspect_image(msg)
    assert image.shape == (2, 3, 3)
    np.testing.assert_array_equal(image.decode(), rgb)
    with pytest.raises(ImageConversionError) as info:
        inspect_image(SimpleNamespace(**{**vars(msg), "data": b"\x00" * 5}))
    assert info.value.kind == "truncated"
