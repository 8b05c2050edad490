"""Reading and writing radiographs: DICOM (CR, DX), PNG, BMP, TIFF, NRRD and MetaImage.

Every image in the package is a float32 array (rows, cols) with intensities in [0, 1] and bone
BRIGHT (MONOCHROME1 DICOM is inverted on reading). Pixel spacing is isotropic, in mm per pixel,
and never guessed: it comes from the file header or from the user.
"""

from __future__ import annotations

import datetime
import inspect
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

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

    The temporary name keeps the suffix of `path` so that format-by-extension writers work.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
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


def write_png(path, pixels: np.ndarray, bits: int = 8) -> None:
    """Write a PNG atomically: [0, 1] intensities as 8- or 16-bit grey, or (rows, cols, 3) uint8
    RGB (bits ignored)."""
    import SimpleITK as sitk

    if Path(path).suffix.lower() != ".png":
        raise InputError(f"{path}: a PNG file name must end in .png")
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8:
        image = sitk.GetImageFromArray(pixels, isVector=True)
    else:
        if bits not in (8, 16):
            raise InputError(f"PNG bits must be 8 or 16, got {bits}")
        dtype = np.uint8 if bits == 8 else np.uint16
        stored = np.rint(_check_pixels01(pixels) * (2 ** bits - 1)).astype(dtype)
        image = sitk.GetImageFromArray(stored)
    # zlib level 3: half the time of the default for files ~5 % larger (84 per-joint PNGs of a hand).
    _atomic_write(path, lambda tmp: sitk.WriteImage(image, tmp, useCompression=True, compressionLevel=3))


def _is_dicom(path: Path) -> bool:
    """DICOM by content (the 'DICM' marker after the 128-byte preamble) or by the .dcm suffix."""
    if path.suffix.lower() == ".dcm":
        return True
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


def _positive_spacing(values, what: str, path) -> tuple[float, float]:
    """(row, col) spacing in mm from a header value; raises when it is not two positive numbers."""
    try:
        row, col = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {what} is not two numbers: {values!r}") from None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        raise InputError(f"{path}: {what} must be positive, got {row}, {col}")
    return row, col


def _dicom_spacing(ds, path) -> tuple[tuple[float, float] | None, str]:
    """(row, col) spacing at the patient in mm and the tag it came from, or (None, "")."""
    if "PixelSpacing" in ds and ds.PixelSpacing:
        return _positive_spacing(ds.PixelSpacing, "PixelSpacing", path), "PixelSpacing"
    if "ImagerPixelSpacing" in ds and ds.ImagerPixelSpacing:
        spacing = _positive_spacing(ds.ImagerPixelSpacing, "ImagerPixelSpacing", path)
        factor = ds.get("EstimatedRadiographicMagnificationFactor")
        if factor is None or factor == "":
            return spacing, "ImagerPixelSpacing"
        if not float(factor) > 0:
            raise InputError(f"{path}: EstimatedRadiographicMagnificationFactor must be > 0, "
                             f"got {factor}")
        return ((spacing[0] / float(factor), spacing[1] / float(factor)),
                "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor")
    return None, ""


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Grey luminance (ITU-R BT.601 weights) of an (..., 3 or 4) colour array; alpha is ignored."""
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _read_dicom(path: Path) -> tuple[np.ndarray, tuple[float, float] | None, dict]:
    try:
        ds = pydicom.dcmread(path, force=True)
        stored = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for damaged or compressed files
        raise InputError(f"{path}: cannot read the DICOM image: {exc}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{path}: has {ds.NumberOfFrames} frames; a single radiograph is needed")
    if photometric not in PHOTOMETRICS and int(ds.get("SamplesPerPixel", 1)) != 3:
        raise InputError(f"{path}: unsupported PhotometricInterpretation {photometric}")
    bits = int(ds.get("BitsStored", stored.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if stored.ndim == 3:  # colour, already converted to RGB by pydicom
        stored = _luminance(stored)
    # Rescaled values mapped onto [0, 1] over the range the stored bits can hold.
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    values = np.clip(stored.astype(np.float64), low, high) * slope + intercept
    ends = np.array([low, high], dtype=np.float64) * slope + intercept
    pixels = (values - ends.min()) / (ends.max() - ends.min())
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    spacing, source = _dicom_spacing(ds, path)
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


def _read_sitk(path: Path) -> tuple[np.ndarray, tuple[float, float] | None, dict]:
    import SimpleITK as sitk

    try:
        io_name = sitk.ImageFileReader().GetImageIOFromFileName(str(path))
        if io_name == "GDCMImageIO":  # DICOM without the 'DICM' marker or the .dcm suffix
            return _read_dicom(path)
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read the image: {str(exc).strip().splitlines()[-1]}") \
            from None
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
    if io_name in HEADER_SPACING_IO:
        col, row = image.GetSpacing()[:2]
        spacing = _positive_spacing((row, col), "header spacing", path)
    meta = {
        "format": HEADER_SPACING_IO.get(io_name, io_name.replace("ImageIO", "")),
        "patient_id": "", "patient_name": "", "patient_birth_date": "", "study_date": "",
        "laterality": "", "modality": "",
        "photometric": "RGB" if components > 1 else "MONOCHROME2",
        "bits_stored": array.dtype.itemsize * 8,
        "spacing_source": "file header" if spacing else "",
        "intensity_scaling": scaling,
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
                    require_spacing: bool = True) -> Radiograph:
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

    Returns
    -------
    Radiograph
        DICOM spacing is PixelSpacing, else ImagerPixelSpacing divided by
        EstimatedRadiographicMagnificationFactor when present, else ImagerPixelSpacing. An
        anisotropic spacing is resampled to the finer of the two (noted in meta["notes"]).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if spacing_mm is not None and not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise InputError(f"spacing_mm must be a positive number of mm per pixel, got {spacing_mm}")
    try:
        dicom = _is_dicom(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    if dicom:
        pixels, spacing_rc, meta = _read_dicom(path)
    else:
        pixels, spacing_rc, meta = _read_sitk(path)
    meta = {"path": str(path), **meta, "notes": []}
    if spacing_mm is not None:
        spacing, meta["spacing_source"] = float(spacing_mm), "user"
    elif spacing_rc is None:
        if require_spacing:
            raise InputError(f"{path} has no pixel spacing; give it with --spacing-mm "
                             "(mm per pixel at the patient)")
        spacing = None
    else:
        spacing = min(spacing_rc)
        if abs(spacing_rc[0] - spacing_rc[1]) > 1e-6 * spacing:
            pixels = _resample(pixels, (spacing_rc[0] / spacing, spacing_rc[1] / spacing))
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
    pixels = _resample(image.pixels, (zoom, zoom)).astype(np.float32)
    notes = image.meta.get("notes", []) + [
        f"resampled from {image.spacing_mm:g} to {spacing_mm:g} mm per pixel"]
    return Radiograph(pixels, float(spacing_mm), {**image.meta, "notes": notes})


def read_mask(path, shape: tuple[int, int]) -> np.ndarray:
    """Read an upper-region mask (non-zero = upper bone region) of the given (rows, cols) shape."""
    import SimpleITK as sitk

    try:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read the mask: {str(exc).strip().splitlines()[-1]}") \
            from None
    if array.ndim == 3 and array.shape[-1] in (3, 4):  # colour-saved mask: any channel counts
        array = array[..., :3].max(axis=-1)
    if array.shape != tuple(shape[:2]):
        raise InputError(f"{path}: mask shape {array.shape} does not match the ROI {tuple(shape)}")
    return array != 0
