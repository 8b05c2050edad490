import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from jsnreg.errors import InputError
from jsnreg.images import (Radiograph, match_spacing, read_mask, read_radiograph, save_dicom_dataset,
                           write_dicom, write_png)

# Run again by `make test` in Python 3.9 with pydicom 2.4, as 3D Slicer 5.6-5.8 ship them.
pytestmark = pytest.mark.slicer_python

RNG = np.random.default_rng(7)
PIXELS = RNG.random((24, 32))
META = {"patient_id": "P001", "patient_name": "Doe^Jane", "patient_birth_date": "19600102",
        "study_date": "20210315", "laterality": "L"}


def pydicom_file(path, stored, photometric="MONOCHROME2", bits_stored=16, **tags):
    """A DX file written with pydicom alone (not with write_dicom)."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.astype("<u2").tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    save_dicom_dataset(ds, path)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_both_photometrics_give_the_same_bright_bone_pixels(tmp_path, bits):
    write_dicom(tmp_path / "m1.dcm", PIXELS, 0.2, photometric="MONOCHROME1", bits_stored=bits)
    write_dicom(tmp_path / "m2.dcm", PIXELS, 0.2, photometric="MONOCHROME2", bits_stored=bits)
    m1 = read_radiograph(tmp_path / "m1.dcm")
    m2 = read_radiograph(tmp_path / "m2.dcm")
    assert m1.pixels.dtype == np.float32 and m1.pixels.shape == PIXELS.shape
    np.testing.assert_allclose(m1.pixels, m2.pixels, atol=1e-6)
    np.testing.assert_allclose(m2.pixels, PIXELS, atol=0.5 / (2 ** bits - 1) + 1e-6)
    # The MONOCHROME1 file really stores bone dark: its raw values are the other one's inverted.
    raw1 = pydicom.dcmread(tmp_path / "m1.dcm").pixel_array.astype(int)
    raw2 = pydicom.dcmread(tmp_path / "m2.dcm").pixel_array.astype(int)
    np.testing.assert_array_equal(raw1, 2 ** bits - 1 - raw2)
    assert (m1.meta["photometric"], m2.meta["photometric"]) == ("MONOCHROME1", "MONOCHROME2")


def test_monochrome1_written_by_pydicom_is_inverted_by_its_bits_stored(tmp_path):
    stored = np.array([[0, 1023], [256, 512]])
    pydicom_file(tmp_path / "a.dcm", stored, "MONOCHROME1", bits_stored=10, PixelSpacing=[0.1, 0.1])
    image = read_radiograph(tmp_path / "a.dcm")
    np.testing.assert_allclose(image.pixels, 1.0 - stored / 1023.0, atol=1e-6)
    assert image.meta["bits_stored"] == 10


def test_pixel_spacing_and_patient_fields(tmp_path):
    write_dicom(tmp_path / "a.dcm", PIXELS, 0.175, META, modality="CR")
    image = read_radiograph(tmp_path / "a.dcm")
    assert image.spacing_mm == pytest.approx(0.175, abs=1e-12)
    assert image.meta["spacing_source"] == "PixelSpacing"
    assert image.meta["format"] == "DICOM" and image.meta["modality"] == "CR"
    for key, value in META.items():
        assert image.meta[key] == value


def test_imager_pixel_spacing_with_and_without_magnification(tmp_path):
    write_dicom(tmp_path / "m.dcm", PIXELS, 0.15, spacing_tag="ImagerPixelSpacing",
                magnification=1.08)
    assert float(pydicom.dcmread(tmp_path / "m.dcm").ImagerPixelSpacing[0]) == \
        pytest.approx(0.162)
    image = read_radiograph(tmp_path / "m.dcm")
    assert image.spacing_mm == pytest.approx(0.15, rel=1e-9)
    assert image.meta["spacing_source"] == \
        "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor"
    write_dicom(tmp_path / "d.dcm", PIXELS, 0.15, spacing_tag="ImagerPixelSpacing")
    image = read_radiograph(tmp_path / "d.dcm")
    assert image.spacing_mm == pytest.approx(0.15)
    assert image.meta["spacing_source"] == "ImagerPixelSpacing"


def test_pixel_spacing_wins_over_imager_pixel_spacing(tmp_path):
    pydicom_file(tmp_path / "a.dcm", np.zeros((4, 4)), PixelSpacing=[0.1, 0.1],
                 ImagerPixelSpacing=[0.2, 0.2], EstimatedRadiographicMagnificationFactor=1.5)
    assert read_radiograph(tmp_path / "a.dcm").spacing_mm == pytest.approx(0.1)


def test_missing_spacing_raises_and_user_spacing_overrides(tmp_path):
    write_dicom(tmp_path / "a.dcm", PIXELS, 0.2, spacing_tag=None)
    with pytest.raises(InputError, match="has no pixel spacing.*--spacing-mm"):
        read_radiograph(tmp_path / "a.dcm")
    assert read_radiograph(tmp_path / "a.dcm", require_spacing=False).spacing_mm is None
    image = read_radiograph(tmp_path / "a.dcm", spacing_mm=0.3)
    assert (image.spacing_mm, image.meta["spacing_source"]) == (0.3, "user")
    write_dicom(tmp_path / "b.dcm", PIXELS, 0.2)
    assert read_radiograph(tmp_path / "b.dcm", spacing_mm=0.25).spacing_mm == 0.25
    with pytest.raises(InputError, match="within 0.01-5 mm"):
        read_radiograph(tmp_path / "b.dcm", spacing_mm=0.0)


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    stored = np.array([[0, 100], [2000, 4095]])
    # Negative slope: a high stored value is a low output value, so it is dark.
    pydicom_file(tmp_path / "neg.dcm", stored, bits_stored=12, PixelSpacing=[0.1, 0.1],
                 RescaleSlope=-2.0, RescaleIntercept=5000.0)
    np.testing.assert_allclose(read_radiograph(tmp_path / "neg.dcm").pixels,
                               1.0 - stored / 4095.0, atol=1e-6)
    pydicom_file(tmp_path / "pos.dcm", stored, bits_stored=12, PixelSpacing=[0.1, 0.1],
                 RescaleSlope=0.5, RescaleIntercept=-1024.0)
    np.testing.assert_allclose(read_radiograph(tmp_path / "pos.dcm").pixels, stored / 4095.0,
                               atol=1e-6)
    # write_dicom stores what a negative slope needs to read back as the same pixels.
    write_dicom(tmp_path / "w.dcm", PIXELS, 0.1, rescale=(-1.0, 4095.0),
                photometric="MONOCHROME1")
    np.testing.assert_allclose(read_radiograph(tmp_path / "w.dcm").pixels, PIXELS, atol=2e-4)


def test_anisotropic_spacing_is_resampled_to_the_finer_one(tmp_path):
    stored = np.tile(np.arange(8) * 100, (5, 1))  # a ramp along the columns
    pydicom_file(tmp_path / "a.dcm", stored, bits_stored=12, PixelSpacing=[0.2, 0.1])
    image = read_radiograph(tmp_path / "a.dcm")
    assert image.spacing_mm == pytest.approx(0.1)
    assert image.pixels.shape == (10, 8)
    np.testing.assert_allclose(image.pixels[:, 2:-2], stored[:2, 2:-2].repeat(5, 0) / 4095.0,
                               atol=1e-5)
    assert "anisotropic" in image.meta["notes"][0]


def write_sitk(path, array, spacing=None):
    image = sitk.GetImageFromArray(array)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


@pytest.mark.parametrize("suffix, dtype", [(".png", np.uint8), (".png", np.uint16),
                                           (".tif", np.uint8), (".tif", np.uint16),
                                           (".bmp", np.uint8)])
def test_raster_files_scale_by_bit_depth_and_have_no_spacing(tmp_path, suffix, dtype):
    top = np.iinfo(dtype).max
    array = np.array([[0, top // 5], [top // 2, top]], dtype=dtype)
    write_sitk(tmp_path / f"a{suffix}", array)
    image = read_radiograph(tmp_path / f"a{suffix}", require_spacing=False)
    np.testing.assert_allclose(image.pixels, array / top, atol=1e-6)
    assert image.spacing_mm is None and image.meta["bits_stored"] == 8 * array.itemsize
    with pytest.raises(InputError, match="no pixel spacing"):
        read_radiograph(tmp_path / f"a{suffix}")


def test_colour_png_is_read_as_luminance(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[1, :] = 255
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "c.png"))
    image = read_radiograph(tmp_path / "c.png", spacing_mm=0.1)
    np.testing.assert_allclose(image.pixels, [[0.299, 0.587, 0.0], [1.0, 1.0, 1.0]], atol=1e-6)
    assert image.meta["photometric"] == "RGB"


def test_grey_and_alpha_png_is_read_as_its_grey(tmp_path):
    """A grey + alpha PNG (which ITK cannot read) is its grey channel; the alpha says nothing of the film."""
    from PIL import Image

    grey = np.array([[0, 64, 255], [10, 200, 128]], dtype=np.uint8)
    alpha = np.array([[255, 0, 255], [3, 255, 90]], dtype=np.uint8)
    Image.fromarray(np.dstack([grey, alpha])).save(tmp_path / "ga.png")  # two 8-bit channels: mode LA
    image = read_radiograph(tmp_path / "ga.png", spacing_mm=0.1)
    np.testing.assert_allclose(image.pixels, grey / 255.0, atol=1e-6)
    assert image.meta["photometric"] == "MONOCHROME2" and image.spacing_mm == 0.1


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_nrrd_and_metaimage_spacing_from_the_header(tmp_path, suffix):
    write_sitk(tmp_path / f"a{suffix}", PIXELS.astype(np.float32), spacing=(0.16, 0.16))
    image = read_radiograph(tmp_path / f"a{suffix}")
    assert image.spacing_mm == pytest.approx(0.16)
    assert image.meta["spacing_source"] == "file header"
    np.testing.assert_allclose(image.pixels, PIXELS, atol=1e-6)
    assert image.meta["intensity_scaling"] == "float as-is"


def test_float_image_outside_unit_range_is_min_max_scaled(tmp_path):
    write_sitk(tmp_path / "a.mha", np.array([[-100.0, 0.0], [100.0, 300.0]], np.float32),
               spacing=(0.2, 0.1))
    image = read_radiograph(tmp_path / "a.mha")
    assert image.meta["intensity_scaling"].startswith("float min-max")
    # SimpleITK spacing is (x, y): columns at 0.2 mm are doubled.
    assert image.pixels.shape == (2, 4) and image.spacing_mm == pytest.approx(0.1)
    assert image.pixels.min() == pytest.approx(0.0) and image.pixels.max() == pytest.approx(1.0)


def test_match_spacing_halves_and_doubles_the_size_keeping_positions():
    rows, cols = 30, 40
    x_mm = (np.arange(cols) + 0.5) * 0.1  # pixel centres of a 0.1 mm grid
    ramp = np.tile(x_mm / x_mm.max() * 0.9, (rows, 1)).astype(np.float32)
    image = Radiograph(ramp, 0.1, {"path": "x"})
    assert match_spacing(image, 0.1 + 1e-8) is image
    for spacing, shape in [(0.2, (15, 20)), (0.05, (60, 80))]:
        out = match_spacing(image, spacing)
        assert out.pixels.shape == shape and out.spacing_mm == spacing
        centres = (np.arange(shape[1]) + 0.5) * spacing
        expected = centres / x_mm.max() * 0.9
        inner = (centres > 0.4) & (centres < cols * 0.1 - 0.4)  # away from the padded edges
        np.testing.assert_allclose(out.pixels[shape[0] // 2, inner], expected[inner], atol=1e-4)


def test_match_spacing_needs_a_spacing():
    with pytest.raises(InputError, match="no pixel spacing"):
        match_spacing(Radiograph(np.zeros((4, 4), np.float32), None, {"path": "a.png"}), 0.1)


def test_unreadable_or_missing_files_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_radiograph(tmp_path / "missing.dcm")
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="junk.png"):
        read_radiograph(tmp_path / "junk.png", spacing_mm=0.1)
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 40)
    with pytest.raises(InputError, match="junk.dcm"):
        read_radiograph(tmp_path / "junk.dcm")


def test_read_mask_checks_the_shape(tmp_path):
    mask = np.zeros((6, 5), dtype=np.uint8)
    mask[:3] = 255
    write_sitk(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", (6, 5)), mask != 0)
    with pytest.raises(InputError, match="does not match"):
        read_mask(tmp_path / "m.png", (5, 6))
    with pytest.raises(InputError, match="cannot read"):
        read_mask(tmp_path / "none.png", (6, 5))


@pytest.mark.parametrize("bits", [8, 16])
def test_write_png_round_trip_leaves_no_temporary_file(tmp_path, bits):
    write_png(tmp_path / "roi.png", PIXELS, bits=bits)
    image = read_radiograph(tmp_path / "roi.png", require_spacing=False)
    np.testing.assert_allclose(image.pixels, PIXELS, atol=0.5 / (2 ** bits - 1) + 1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["roi.png"]


@pytest.mark.parametrize("shape, dtype", [((3, 5, 3), np.uint8), ((7, 4), np.uint8), ((5, 9), np.uint16)])
def test_write_png_is_read_back_exactly_by_another_decoder(tmp_path, shape, dtype):
    # RGB review panels, 8-bit grey panels, 16-bit ROIs (big-endian in the file): SimpleITK's
    # libpng reads back every value; odd shapes catch a row or byte-order slip.
    pixels = RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    path = tmp_path / "panel.png"
    if dtype == np.uint16:
        write_png(path, pixels / 65535.0, bits=16)
    else:
        write_png(path, pixels)
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, pixels)


def test_write_dicom_refuses_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="within"):
        write_dicom(tmp_path / "a.dcm", PIXELS * 2, 0.1)
    with pytest.raises(InputError, match="magnification"):
        write_dicom(tmp_path / "a.dcm", PIXELS, 0.1, magnification=1.1)
    assert not list(tmp_path.iterdir())
