"""Issue 13: the data and weights errors share gfi's base and keep the built-in class they had."""

from gfi.data import ImageLoadError as ExportedImageLoadError
from gfi.data.imagenet import DataError as ImageNetDataError
from gfi.data.images import ImageLoadError
from gfi.data.samples import DataError
from gfi.errors import GFIError
from gfi.models.weights import WeightsError


def test_error_bases():
    assert ExportedImageLoadError is ImageLoadError and ImageNetDataError is DataError
    for cls in (ImageLoadError, DataError):
        assert issubclass(cls, GFIError) and issubclass(cls, ValueError)
    assert issubclass(WeightsError, GFIError) and issubclass(WeightsError, RuntimeError)
    assert not issubclass(WeightsError, ValueError)
