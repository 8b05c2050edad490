"""Reading and writing radiographs: DICOM (CR, DX), PNG, BMP, TIFF, NRRD and MetaImage.

Every image in the package is a float32 array (rows, cols) with intensities in [0, 1] and bone
BRIGHT (MONOCHROME1 DICOM is inverted on reading). Pixel spacing is isotropic, in mm per pixel,
and never guessed: it comes from the file header or from the user.
"""

from __future__ import annotations

import datetime
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

    _atomic_write(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True))


def write_png(path, pixels01: np.ndarray, bits: int = 8) -> None:
    """Write [0, 1] intensities as an 8- or 16-bit greyscale PNG, atomically."""
    import SimpleITK as sitk

    pixels = _check_pixels01(pixels01)
    if bits not in (8, 16):
        raise InputError(f"PNG bits must be 8 or 16, got {bits}")
    if Path(path).suffix.lower() != ".png":
        raise InputError(f"{path}: a PNG file name must end in .png")
    dtype = np.uint8 if bits == 8 else np.uint16
    stored = np.rint(pixels * (2 ** bits - 1)).astype(dtype)
    _atomic_write(path, lambda tmp: sitk.WriteImage(sitk.GetImageFromArray(stored), tmp))
