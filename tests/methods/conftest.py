import pytest

from tests.methods.region_net import region_classifier, region_images


@pytest.fixture(scope="module")
def region():
    """The quadrant classifier and two textured images (tests/methods/region_net.py)."""
    return region_classifier(), region_images()
