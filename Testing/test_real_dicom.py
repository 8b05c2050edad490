"""The DICOM reader on files made by real modalities (not by our writer): pydicom's test data
(package pydicom-data: Philips and Fuji CR, MONOCHROME1, 15- and 10-bit in 16-bit words,
PixelSpacing 0\\0, no spacing, JPEG 2000) and deid-data's Agfa DX. Skipped where absent."""

import numpy as np
import pydicom
import pytest

from jsnreg.cli import main
from jsnreg.errors import InputError
from jsnreg.images import read_radiograph


def real_file(name: str):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)  # never from the network
    if path is None:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return path


@pytest.fixture(scope="module")
def agfa_dx():
    deid_data = pytest.importorskip("deid_data", reason="deid-data not installed")
    from pathlib import Path

    path = Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm"
    if not path.is_file():
        pytest.skip("deid-data without its DX file")
    return path


def stored(path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array.astype(np.float64)


@pytest.mark.parametrize("name, bits, problem", [
    ("RG1_UNCR.dcm", 15, "PixelSpacing is 0\\0"),  # Philips CR, MONOCHROME1, 15 bits in 16
    ("RG3_UNCR.dcm", 10, "has no pixel spacing"),  # Fuji CR, MONOCHROME1, 10 bits in 16
])
def test_real_cr_monochrome1_in_its_stored_bit_range(name, bits, problem):
    path = real_file(name)
    with pytest.raises(InputError, match=problem.replace("\\", "\\\\")):
        read_radiograph(path)
    image = read_radiograph(path, spacing_mm=0.1)
    assert image.meta["photometric"] == "MONOCHROME1" and image.meta["bits_stored"] == bits
    # Inverted over the stored range (not the 16-bit word): bone bright, the full range used.
    np.testing.assert_allclose(image.pixels, 1.0 - stored(path) / (2 ** bits - 1), atol=1e-6)
    assert 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0


def test_real_cr_without_spacing_stops_the_command_line(capsys):
    path = real_file("RG1_UNCR.dcm")
    code = main(["quantify", path, path, "--joint", "A=900,900", "--out", "unused-out"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "PixelSpacing is 0\\0" in err and "--spacing-mm" in err


@pytest.mark.parametrize("compressed, plain", [("RG1_J2KR.dcm", "RG1_UNCR.dcm"), ("RG3_J2KR.dcm", "RG3_UNCR.dcm")])
def test_real_jpeg2000_decodes_through_pylibjpeg_or_names_it(compressed, plain):
    path = real_file(compressed)
    try:
        import openjpeg  # noqa: F401  (pylibjpeg-openjpeg)
    except ImportError:
        with pytest.raises(InputError, match="pylibjpeg"):
            read_radiograph(path, spacing_mm=0.1)
        return
    lossless = read_radiograph(path, spacing_mm=0.1).pixels
    np.testing.assert_array_equal(lossless, read_radiograph(real_file(plain), spacing_mm=0.1).pixels)


def test_compressed_file_without_a_decoder_gives_one_line_naming_the_plugin(monkeypatch):
    path = real_file("RG3_J2KR.dcm")

    def no_decoder(self):
        raise RuntimeError("Unable to decode the pixel data: no plugins available\nsee the docs")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    with pytest.raises(InputError) as err:
        read_radiograph(path, spacing_mm=0.1)
    assert "\n" not in str(err.value) and "JPEG 2000" in str(err.value) and "pylibjpeg" in str(err.value)


def test_real_cr_with_imager_spacing_only_and_a_rescale(tmp_path):
    ds = pydicom.dcmread(real_file("RG3_UNCR.dcm"))
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.RescaleSlope, ds.RescaleIntercept = 2.0, -100.0
    ds.save_as(tmp_path / "rg3_imager.dcm")
    image = read_radiograph(tmp_path / "rg3_imager.dcm")
    assert image.spacing_mm == pytest.approx(0.15) and image.meta["spacing_source"] == "ImagerPixelSpacing"
    # A positive slope maps the stored range onto itself: the same picture as without the rescale.
    np.testing.assert_allclose(image.pixels, read_radiograph(real_file("RG3_UNCR.dcm"), spacing_mm=0.15).pixels,
                               atol=1e-6)


def test_real_dx_with_pixel_and_imager_spacing(agfa_dx):
    image = read_radiograph(agfa_dx)
    assert image.spacing_mm == pytest.approx(0.14) and image.meta["spacing_source"] == "PixelSpacing"
    assert image.meta["modality"] == "DX" and image.meta["photometric"] == "MONOCHROME2"
    np.testing.assert_allclose(image.pixels, stored(agfa_dx) / (2 ** 12 - 1), atol=1e-6)
