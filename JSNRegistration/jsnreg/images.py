"""Reading and writing radiographs: DICOM (CR, DX), PNG, BMP, TIFF, NRRD and MetaImage.

Every image in the package is a float32 array (rows, cols) with intensities in [0, 1] and bone
BRIGHT (MONOCHROME1 DICOM is inverted on reading). Pixel spacing is isotropic, in mm per pixel,
and never guessed: it comes from the file header or from the user.
"""

from __future__ import annotations

import datetime
import inspect
import os
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from . import validate
from .errors import InputError

SOP_CLASS = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
}
PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2")
SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing")


@dataclass
class Radiograph:
    """A radiograph: float32 pixels (rows, cols) in [0, 1], bone bright; isotropic spacing in mm.

    meta keys: path, format, patient_id, patient_name, patient_birth_date, study_date (YYYYMMDD or
    ""), laterality, modality, photometric, bits_stored, spacing_source, intensity_scaling, notes.
    """

    pixels: np.ndarray
    spacing_mm: float | None
    meta: dict = field(default_factory=dict)


def _atomic_write(path, write) -> None:
    """Call write(tmp_path) on a temporary file next to `path`, then rename it over `path`.

    The temporary name keeps the suffix of `path` so that format-by-extension writers work; the
    file gets the mode the umask gives new files (the temporary file itself is owner-only).
    """
    from .outputs import file_mode

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _ds(value: float) -> DSfloat:
    """A decimal string value within DICOM's 16-character limit."""
    return DSfloat(float(value), auto_format=True)


def _check_pixels01(pixels01: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels01, dtype=np.float64)
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise InputError(f"pixels must be a 2-D (rows, cols) array, got shape {pixels.shape}")
    if not np.all(np.isfinite(pixels)) or pixels.min() < 0.0 or pixels.max() > 1.0:
        raise InputError("pixels must be finite and within [0, 1]")
    return pixels


def write_dicom(path, pixels01: np.ndarray, spacing_mm: float, meta: dict | None = None,
                photometric: str = "MONOCHROME2", bits_stored: int = 12, modality: str = "DX",
                spacing_tag: str | None = "PixelSpacing", magnification: float | None = None,
                rescale: tuple[float, float] | None = None) -> None:
    """Write a single-frame DX or CR DICOM file (explicit VR little endian) atomically.

    Parameters
    ----------
    path : str or Path
        Output file.
    pixels01 : ndarray (rows, cols)
        Intensities in [0, 1], bone bright. Stored as integers 0 .. 2**bits_stored - 1, inverted for
        MONOCHROME1 (and for a negative rescale slope) so that `read_radiograph` gives them back.
    spacing_mm : float
        Isotropic pixel spacing at the patient, mm per pixel.
    meta : dict, optional
        patient_id, patient_name, patient_birth_date, study_date (YYYYMMDD), laterality (R, L).
    spacing_tag : {"PixelSpacing", "ImagerPixelSpacing", None}
        Which tag carries the spacing; None writes a file without any spacing.
    magnification : float, optional
        With ImagerPixelSpacing: writes ImagerPixelSpacing = spacing_mm * magnification and
        EstimatedRadiographicMagnificationFactor = magnification (detector vs patient spacing).
    rescale : (slope, intercept), optional
        RescaleSlope and RescaleIntercept written in the file.
    """
    pixels = _check_pixels01(pixels01)
    meta = meta or {}
    if photometric not in PHOTOMETRICS:
        raise InputError(f"photometric must be one of {PHOTOMETRICS}, got {photometric!r}")
    if modality not in SOP_CLASS:
        raise InputError(f"modality must be one of {tuple(SOP_CLASS)}, got {modality!r}")
    if not 8 <= bits_stored <= 16:
        raise InputError(f"bits_stored must be 8 to 16, got {bits_stored}")
    if spacing_tag not in SPACING_TAGS + (None,):
        raise InputError(f"spacing_tag must be one of {SPACING_TAGS} or None, got {spacing_tag!r}")
    if not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise InputError(f"spacing_mm must be a positive number, got {spacing_mm}")
    if magnification is not None and (spacing_tag != "ImagerPixelSpacing" or not magnification > 0):
        raise InputError("magnification needs spacing_tag='ImagerPixelSpacing' and a value > 0")
    slope, intercept = rescale if rescale is not None else (1.0, 0.0)
    if slope == 0:
        raise InputError("rescale slope must not be 0")

    # Reading maps rescaled values onto [0, 1] over the stored range and inverts MONOCHROME1, so
    # the stored values are inverted when exactly one of those two flips applies.
    inverted = (photometric == "MONOCHROME1") != (slope < 0)
    values = 1.0 - pixels if inverted else pixels
    max_value = 2 ** bits_stored - 1
    dtype = np.uint8 if bits_stored == 8 else np.uint16
    stored = np.rint(values * max_value).astype(dtype)

    sop_uid = generate_uid()
    now = datetime.datetime.now()
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientID = str(meta.get("patient_id", ""))
    ds.PatientName = str(meta.get("patient_name", ""))
    ds.PatientBirthDate = str(meta.get("patient_birth_date", ""))
    ds.PatientSex = ""
    ds.StudyDate = str(meta.get("study_date", ""))
    ds.StudyTime = ""
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "HAND"
    ds.ViewPosition = "PA"
    if meta.get("laterality"):
        ds.ImageLaterality = str(meta["laterality"])
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PixelIntensityRelationship = "LIN"
    # +1: low stored values = low X-ray intensity at the detector (bone stored dark).
    ds.PixelIntensityRelationshipSign = 1 if inverted else -1
    ds.RescaleSlope = _ds(slope)
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleType = "US"
    if spacing_tag == "PixelSpacing":
        ds.PixelSpacing = [_ds(spacing_mm)] * 2
    elif spacing_tag == "ImagerPixelSpacing":
        m = 1.0 if magnification is None else float(magnification)
        ds.ImagerPixelSpacing = [_ds(spacing_mm * m)] * 2
        if magnification is not None:
            ds.EstimatedRadiographicMagnificationFactor = _ds(m)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()

    _atomic_write(path, lambda tmp: save_dicom_dataset(ds, tmp))


def save_dicom_dataset(ds, path) -> None:
    """Save as a DICOM file (preamble, file meta) with pydicom 3 and with pydicom 2.4 (Slicer 5.6-5.8).

    pydicom 3 names this enforce_file_format=True and deprecates write_like_original; 2.4 only
    knows write_like_original=False.
    """
    if "enforce_file_format" in inspect.signature(ds.save_as).parameters:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, write_like_original=False)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG file of a 2-D grey or (rows, cols, 3) RGB array of uint8 or uint16 (big-endian in the
    file, as PNG wants): signature, IHDR, one IDAT, IEND. Rows go unfiltered into zlib at level 1:
    on a hand's 84 review panels that was the fastest encoding and no larger than filtered rows
    at level 3 (4.08 vs 4.69 MB), and zlib releases the GIL, so threads encode in parallel."""
    pixels = np.asarray(pixels)
    rows, cols = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    stored = np.ascontiguousarray(pixels, dtype=">u2" if pixels.dtype == np.uint16 else np.uint8)
    scanlines = np.zeros((rows, 1 + stored[0].nbytes), np.uint8)  # each row: filter byte 0, then the row
    scanlines[:, 1:] = stored.view(np.uint8).reshape(rows, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", cols, rows, 8 * stored.itemsize, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 1))
            + chunk(b"IEND", b""))


def write_png(path, pixels: np.ndarray, bits: int = 8) -> None:
    """Write a PNG atomically: [0, 1] intensities as 8- or 16-bit grey, a 2-D uint8 array as 8-bit
    grey, or (rows, cols, 3) uint8 RGB (bits ignored for uint8)."""
    if Path(path).suffix.lower() != ".png":
        raise InputError(f"{path}: a PNG file name must end in .png")
    pixels = np.asarray(pixels)
    rgb = pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
    if not (rgb or (pixels.ndim == 2 and pixels.dtype == np.uint8)):
        if bits not in (8, 16):
            raise InputError(f"PNG bits must be 8 or 16, got {bits}")
        dtype = np.uint8 if bits == 8 else np.uint16
        pixels = np.rint(_check_pixels01(pixels) * (2 ** bits - 1)).astype(dtype)
    data = png_bytes(pixels)
    _atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _is_dicom(path: Path) -> bool:
    """DICOM by content (the 'DICM' marker after the 128-byte preamble) or by the .dcm suffix."""
    if path.suffix.lower() == ".dcm":
        return True
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


def _positive_spacing(values, what: str, path) -> tuple[float, float]:
    """(row, col) spacing in mm from a header value; InputError when it is not two numbers in the
    physical range."""
    try:
        row, col = (float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{path}: {what} is not two numbers: {validate.one_line(repr(values))[:80]}") from None
    return (validate.spacing_mm(row, f"{path}: {what} (row)"), validate.spacing_mm(col, f"{path}: {what} (column)"))


def _is_zero_spacing(values) -> bool:
    """PixelSpacing 0\\0: how some modalities say 'not calibrated' (taken as no spacing)."""
    try:
        return all(float(v) == 0.0 for v in values)
    except (TypeError, ValueError, OverflowError):
        return False


def _dicom_spacing(ds, path) -> tuple[tuple[float, float] | None, str]:
    """(row, col) spacing at the patient in mm and the tag it came from, or (None, "")."""
    pixel_spacing = ds.get("PixelSpacing")
    if pixel_spacing and not _is_zero_spacing(pixel_spacing):
        return _positive_spacing(pixel_spacing, "PixelSpacing", path), "PixelSpacing"
    imager = ds.get("ImagerPixelSpacing")
    if imager and not _is_zero_spacing(imager):
        spacing = _positive_spacing(imager, "ImagerPixelSpacing", path)
        factor = ds.get("EstimatedRadiographicMagnificationFactor")
        if factor is None or factor == "":
            return spacing, "ImagerPixelSpacing"
        factor = validate.number(_single(factor, "EstimatedRadiographicMagnificationFactor", path),
                                 f"{path}: EstimatedRadiographicMagnificationFactor", 0.5, 5.0)
        return (((validate.spacing_mm(spacing[0] / factor, f"{path}: spacing at the patient"),
                  validate.spacing_mm(spacing[1] / factor, f"{path}: spacing at the patient"))),
                "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor")
    return None, ""


def _single(value, what: str, path):
    """A header value that must hold one number (pydicom gives a list for a multi-valued one)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        raise InputError(f"{path}: {what} must be one number, got {len(value)} values")
    return value


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Grey luminance (ITU-R BT.601 weights) of an (..., 3 or 4) colour array; alpha is ignored."""
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


# Transfer syntaxes pydicom decodes with numpy alone; the others need a plugin.
NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
                   "1.2.840.10008.1.2.5"}
PLUGIN_HINT = ("install pylibjpeg with pylibjpeg-openjpeg (JPEG 2000) and pylibjpeg-libjpeg (JPEG), "
               "e.g. pip install 'jsnregistration[dicom-compressed]'")


def _read_dicom(path: Path, max_pixels: int | None = validate.MAX_IMAGE_PIXELS
                ) -> tuple[np.ndarray, tuple[float, float] | None, dict]:
    # pydicom parses elements lazily, so a damaged element raises wherever it is first read: every
    # header access happens inside this try, and whatever a damaged file raises becomes InputError.
    try:
        with warnings.catch_warnings():  # a damaged file is read or refused, not half-warned about
            warnings.simplefilter("ignore")
            return _decode_dicom(path, max_pixels)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: the image does not fit in memory") from None
    except Exception as exc:  # pydicom, numpy and the plugins raise many types for damaged files
        raise InputError(f"{path}: cannot read the DICOM image: "
                         f"{validate.one_line(f'{type(exc).__name__}: {exc}')}") from None


def _decode_dicom(path: Path, max_pixels: int | None) -> tuple[np.ndarray, tuple[float, float] | None, dict]:
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds:
        raise InputError(f"{path}: the DICOM file holds no image (no PixelData)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    validate.image_size(rows, cols, str(path), max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{path}: has {ds.NumberOfFrames} frames; a single radiograph is needed")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples not in (1, 3) or (samples == 1 and photometric not in PHOTOMETRICS):
        raise InputError(f"{path}: unsupported image type ({samples} samples per pixel, "
                         f"PhotometricInterpretation {photometric})")
    syntax = str(getattr(getattr(ds, "file_meta", None), "get", lambda *_: None)("TransferSyntaxUID") or "")
    try:
        stored = ds.pixel_array
    except Exception as exc:
        if syntax and syntax not in NATIVE_SYNTAXES:
            name = getattr(pydicom.uid.UID(syntax), "name", syntax)
            raise InputError(f"{path}: compressed DICOM ({name}) could not be decoded: {PLUGIN_HINT}") from None
        raise InputError(f"{path}: cannot read the DICOM pixel data: "
                         f"{validate.one_line(f'{type(exc).__name__}: {exc}')}") from None
    stored = np.asarray(stored)
    if stored.ndim == 3 and samples == 3 and stored.shape[-1] == 3:  # colour, already RGB by pydicom
        stored = _luminance(stored)
    if stored.ndim != 2 or stored.shape != (rows, cols):
        raise InputError(f"{path}: pixel data of shape {stored.shape} do not match the header "
                         f"({rows} x {cols} px, {samples} samples per pixel)")
    bits = validate.integer(int(ds.get("BitsStored", stored.dtype.itemsize * 8)), f"{path}: BitsStored", 1, 32)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    slope = ds.get("RescaleSlope", 1.0)
    slope = validate.number(_single(slope if slope not in (None, "") else 1.0, "RescaleSlope", path),
                            f"{path}: RescaleSlope")
    if slope == 0:
        raise InputError(f"{path}: RescaleSlope is 0, so every pixel has one value")
    intercept = ds.get("RescaleIntercept", 0.0)
    intercept = validate.number(_single(intercept if intercept not in (None, "") else 0.0, "RescaleIntercept",
                                        path), f"{path}: RescaleIntercept")
    # Rescaled values mapped onto [0, 1] over the range the stored bits can hold.
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    values = np.clip(stored.astype(np.float64), low, high) * slope + intercept
    ends = np.array([low, high], dtype=np.float64) * slope + intercept
    with np.errstate(all="ignore"):
        pixels = (values - ends.min()) / (ends.max() - ends.min())
    if not (np.all(np.isfinite(ends)) and ends.max() > ends.min() and np.all(np.isfinite(pixels))):
        raise InputError(f"{path}: RescaleSlope {slope:g} and RescaleIntercept {intercept:g} give "
                         "non-finite intensities")
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    try:
        spacing, source = _dicom_spacing(ds, path)
        problem = "PixelSpacing is 0\\0 (not calibrated)" if spacing is None and _is_zero_spacing(
            ds.get("PixelSpacing") or ()) and ds.get("PixelSpacing") else ""
    except InputError as exc:  # matters only when the user gives no spacing
        spacing, source, problem = None, "", str(exc)
    laterality = ds.get("ImageLaterality", "") or ds.get("Laterality", "")
    meta = {
        "format": "DICOM",
        "patient_id": str(ds.get("PatientID", "")),
        "patient_name": str(ds.get("PatientName", "")),
        "patient_birth_date": str(ds.get("PatientBirthDate", "")),
        "study_date": str(ds.get("StudyDate", "")),
        "laterality": str(laterality),
        "modality": str(ds.get("Modality", "")),
        "photometric": photometric,
        "bits_stored": bits,
        "spacing_source": source,
        "intensity_scaling": f"rescaled, {'signed ' if signed else ''}{bits}-bit range",
        "spacing_problem": problem,
    }
    return pixels, spacing, meta


# SimpleITK readers whose header carries a real pixel spacing (PNG, BMP and TIFF report 1.0).
HEADER_SPACING_IO = {"NrrdImageIO": "NRRD", "MetaImageIO": "MetaImage", "NiftiImageIO": "NIfTI"}


def _scale_to_01(values: np.ndarray) -> tuple[np.ndarray, str]:
    """Intensities in [0, 1]: integers by their dtype's range, floats as-is or min-max."""
    if np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(values.dtype)
        scaled = (values.astype(np.float64) - info.min) / (float(info.max) - info.min)
        return scaled, f"{values.dtype} range"
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError("image has NaN or infinite intensities")
    low, high = values.min(), values.max()
    if low >= 0.0 and high <= 1.0:
        return values, "float as-is"
    if high == low:
        raise InputError("float image is constant outside [0, 1]; it cannot be scaled")
    return (values - low) / (high - low), f"float min-max [{low:g}, {high:g}]"


def _read_sitk(path: Path, max_pixels: int | None = validate.MAX_IMAGE_PIXELS
               ) -> tuple[np.ndarray, tuple[float, float] | None, dict]:
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        io_name = reader.GetImageIOFromFileName(str(path))
        if io_name == "GDCMImageIO":  # DICOM without the 'DICM' marker or the .dcm suffix
            return _read_dicom(path, max_pixels)
        reader.SetFileName(str(path))
        reader.ReadImageInformation()  # the size, before any pixel is read
        size = reader.GetSize()
        validate.image_size(size[1] if len(size) > 1 else 1, size[0] * int(np.prod(size[2:], dtype=np.int64)),
                            str(path), max_pixels)
        image = reader.Execute()
    except RuntimeError as exc:
        grey = _grey_of_grey_alpha_png(path) if io_name == "PNGImageIO" else None
        if grey is not None:
            return _read_sitk_array(sitk.GetImageFromArray(grey), io_name, path)
        raise InputError(f"{path}: cannot read the image: "
                         f"{validate.one_line(str(exc).strip().splitlines()[-1] if str(exc).strip() else exc)}") \
            from None
    except MemoryError:
        raise InputError(f"{path}: the image does not fit in memory") from None
    return _read_sitk_array(image, io_name, path)


def _grey_of_grey_alpha_png(path: Path) -> np.ndarray | None:
    """The grey channel of a grey + alpha PNG (ITK reads no two-channel PNG; Pillow, matplotlib's own
    dependency, does), or None for any other file."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.getchannel(0)) if im.mode == "LA" else None
    except (ImportError, OSError, ValueError):
        return None


def _read_sitk_array(image, io_name: str, path: Path) -> tuple[np.ndarray, tuple[float, float] | None, dict]:
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    components = image.GetNumberOfComponentsPerPixel()
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        array = array[0]
    if array.ndim != (3 if components > 1 else 2):
        raise InputError(f"{path}: a 2-D radiograph is needed, got size {image.GetSize()}")
    if components not in (1, 3, 4):
        raise InputError(f"{path}: {components} channels per pixel; grey or RGB(A) is needed")
    pixels, scaling = _scale_to_01(array)
    if components > 1:
        pixels = _luminance(pixels)
    spacing = None
    problem = ""
    if io_name in HEADER_SPACING_IO:
        col, row = image.GetSpacing()[:2]
        try:
            spacing = _positive_spacing((row, col), "header spacing", path)
        except InputError as exc:  # matters only when the user gives no spacing
            problem = str(exc)
    meta = {
        "format": HEADER_SPACING_IO.get(io_name, io_name.replace("ImageIO", "")),
        "patient_id": "", "patient_name": "", "patient_birth_date": "", "study_date": "",
        "laterality": "", "modality": "",
        "photometric": "RGB" if components > 1 else "MONOCHROME2",
        "bits_stored": array.dtype.itemsize * 8,
        "spacing_source": "file header" if spacing else "",
        "intensity_scaling": scaling,
        "spacing_problem": problem,
    }
    return pixels, spacing, meta


def _resample(pixels: np.ndarray, zoom_rc: tuple[float, float]) -> np.ndarray:
    """Resample by (row, col) zoom factors (>1 = more pixels), cubic B-spline, same field of view.

    Pixel edges stay aligned (output pixel i covers input [i / zoom, (i + 1) / zoom)), so the
    new spacing is exactly old spacing / zoom. Values are clipped back to [0, 1].
    """
    from scipy import ndimage

    zoom_rc = np.asarray(zoom_rc, dtype=np.float64)
    shape = tuple(max(1, int(round(n * z))) for n, z in zip(pixels.shape, zoom_rc))
    step = 1.0 / zoom_rc
    out = ndimage.affine_transform(pixels.astype(np.float64), step, offset=0.5 * step - 0.5,
                                   output_shape=shape, order=3, mode="nearest")
    return np.clip(out, 0.0, 1.0)


def read_radiograph(path, spacing_mm: float | None = None,
                    require_spacing: bool = True, max_pixels: int | None = validate.MAX_IMAGE_PIXELS
                    ) -> Radiograph:
    """Read a radiograph as float32 intensities in [0, 1], bone bright, with isotropic spacing.

    Parameters
    ----------
    path : str or Path
        DICOM (CR/DX, MONOCHROME1 or 2, 8-16 bit; found by the 'DICM' marker or a .dcm suffix),
        PNG, BMP, TIFF (8 or 16 bit, grey or colour), NRRD or MetaImage (.mha/.mhd).
    spacing_mm : float, optional
        Pixel spacing in mm given by the user; overrides any spacing in the file.
    require_spacing : bool
        Raise InputError when neither the file nor the user gives a spacing.
    max_pixels : int or None
        Refuse larger images (also after resampling) before reading them; None = no limit.

    Returns
    -------
    Radiograph
        DICOM spacing is PixelSpacing, else ImagerPixelSpacing divided by
        EstimatedRadiographicMagnificationFactor when present, else ImagerPixelSpacing. An
        anisotropic spacing is resampled to the finer of the two (noted in meta["notes"]).
        Every spacing is checked to lie within validate.SPACING_RANGE_MM; PixelSpacing 0\\0
        counts as none.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if spacing_mm is not None:
        spacing_mm = validate.spacing_mm(spacing_mm, "spacing_mm (mm per pixel)")
    try:
        dicom = _is_dicom(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    if dicom:
        pixels, spacing_rc, meta = _read_dicom(path, max_pixels)
    else:
        pixels, spacing_rc, meta = _read_sitk(path, max_pixels)
    problem = meta.pop("spacing_problem", "")
    meta = {"path": str(path), **meta, "notes": []}
    if spacing_mm is not None:
        spacing, meta["spacing_source"] = float(spacing_mm), "user"
    elif spacing_rc is None:
        if problem and require_spacing:
            raise InputError(f"{problem}; give the spacing with --spacing-mm (mm per pixel at the patient)"
                             if problem.startswith(str(path)) else
                             f"{path} has no usable pixel spacing ({problem}); give it with --spacing-mm "
                             "(mm per pixel at the patient)")
        if require_spacing:
            raise InputError(f"{path} has no pixel spacing; give it with --spacing-mm "
                             "(mm per pixel at the patient)")
        spacing = None
    else:
        spacing = min(spacing_rc)
        if abs(spacing_rc[0] - spacing_rc[1]) > 1e-6 * spacing:
            zoom = (spacing_rc[0] / spacing, spacing_rc[1] / spacing)
            validate.image_size(int(round(pixels.shape[0] * zoom[0])), int(round(pixels.shape[1] * zoom[1])),
                                f"{path}: resampled to its finer spacing ({spacing_rc[0]:g} x {spacing_rc[1]:g} mm)",
                                max_pixels)
            pixels = _resample(pixels, zoom)
            meta["notes"].append(f"anisotropic spacing {spacing_rc[0]:g} x {spacing_rc[1]:g} mm "
                                 f"(row x column) resampled to {spacing:g} mm")
    return Radiograph(np.asarray(pixels, dtype=np.float32), spacing, meta)


def match_spacing(image: Radiograph, spacing_mm: float) -> Radiograph:
    """Resample `image` (cubic B-spline) to `spacing_mm`, e.g. a follow-up to the baseline's.

    The field of view is kept: the new size is round(size * old spacing / spacing_mm). Returns
    the image unchanged when the spacings agree within 1e-6 mm.
    """
    if image.spacing_mm is None:
        raise InputError(f"{image.meta.get('path', 'image')} has no pixel spacing to match from")
    if not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise InputError(f"spacing_mm must be a positive number, got {spacing_mm}")
    if abs(image.spacing_mm - spacing_mm) <= 1e-6:
        return image
    zoom = image.spacing_mm / spacing_mm
    validate.image_size(int(round(image.pixels.shape[0] * zoom)), int(round(image.pixels.shape[1] * zoom)),
                        f"{image.meta.get('path', 'image')} resampled from {image.spacing_mm:g} to "
                        f"{spacing_mm:g} mm", max(validate.MAX_IMAGE_PIXELS, image.pixels.size))
    pixels = _resample(image.pixels, (zoom, zoom)).astype(np.float32)
    notes = image.meta.get("notes", []) + [
        f"resampled from {image.spacing_mm:g} to {spacing_mm:g} mm per pixel"]
    return Radiograph(pixels, float(spacing_mm), {**image.meta, "notes": notes})


def read_mask(path, shape: tuple[int, int]) -> np.ndarray:
    """Read an upper-region mask (non-zero = upper bone region) of the given (rows, cols) shape."""
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        if int(np.prod(reader.GetSize(), dtype=np.int64)) > 4 * shape[0] * shape[1] * 4:
            raise InputError(f"{path}: mask size {reader.GetSize()} does not match the ROI {tuple(shape)}")
        array = sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read the mask: "
                         f"{validate.one_line(str(exc).strip().splitlines()[-1] if str(exc).strip() else exc)}") \
            from None
    if array.ndim == 3 and array.shape[-1] in (3, 4):  # colour-saved mask: any channel counts
        array = array[..., :3].max(axis=-1)
    if array.shape != tuple(shape[:2]):
        raise InputError(f"{path}: mask shape {array.shape} does not match the ROI {tuple(shape)}")
    return array != 0
