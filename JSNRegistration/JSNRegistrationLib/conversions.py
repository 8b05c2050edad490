"""Node <-> core conversions as pure functions over numpy arrays and 4x4 matrices.

Slicer's world frame is RAS; ITK and DICOM use LPS (x and y negated). A radiograph volume's voxel
index IJK is (column, row, slice); `arrayFromVolume` gives the voxels as (slice, row, column), so a
radiograph is a (1, rows, cols) array and a joint at voxel (i, j, 0) is at column i, row j.

The core measures on its own pixel grid: a radiograph with anisotropic pixels is resampled to
the finer spacing when read (jsnreg.images.read_radiograph). Joint positions go to that grid
(`volume_xy_to_core`) and results come back from it (`core_to_volume_xy_matrix`), so joints and
overlays land where they were on the volume Slicer shows.
"""

from __future__ import annotations

import numpy as np

from jsnreg.errors import InputError

LPS_RAS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse: LPS -> RAS and RAS -> LPS
PLANE_TOLERANCE_VOXELS = 0.5  # a point farther off the image plane was not placed on this image


def ijk_to_ras_matrix(spacing_mm, origin_ras, directions_ras=np.eye(3)) -> np.ndarray:
    """4x4 IJK -> RAS of a volume: column k of directions_ras is voxel axis k's unit vector."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(directions_ras, dtype=float) * np.asarray(spacing_mm, dtype=float)[None, :]
    m[:3, 3] = origin_ras
    return m


def lps_to_ras_matrix(ijk_to_lps: np.ndarray) -> np.ndarray:
    """An ITK/DICOM IJK -> LPS matrix as Slicer's IJK -> RAS."""
    return LPS_RAS_FLIP @ np.asarray(ijk_to_lps, dtype=float)


def apply_matrix(matrix: np.ndarray, points) -> np.ndarray:
    """Map (N, 3) points through a 4x4 homogeneous matrix."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def ras_to_ijk(points_ras, ras_to_ijk_matrix: np.ndarray) -> np.ndarray:
    return apply_matrix(ras_to_ijk_matrix, points_ras)


def ijk_to_ras(points_ijk, ijk_to_ras_matrix_: np.ndarray) -> np.ndarray:
    return apply_matrix(ijk_to_ras_matrix_, points_ijk)


def core_zoom_xy(spacing_ijk_mm, spacing_given_mm: float | None = None) -> np.ndarray:
    """(x, y) scale from the volume's pixel grid to the core's, as read_radiograph resamples it:
    an anisotropic spacing to the finer of the two; a spacing given by the user is taken as the
    isotropic spacing of the pixels as they are, so nothing is resampled then."""
    sx, sy = float(spacing_ijk_mm[0]), float(spacing_ijk_mm[1])
    finer = min(sx, sy)
    if spacing_given_mm or abs(sx - sy) <= 1e-6 * finer:
        return np.ones(2)
    return np.array([sx / finer, sy / finer])


def volume_xy_to_core(xy, zoom_xy) -> np.ndarray:
    """Volume pixel positions (N, 2) on the core's grid (pixel edges aligned, as the resampling)."""
    return (np.asarray(xy, dtype=float) + 0.5) * np.asarray(zoom_xy, dtype=float) - 0.5


def core_to_volume_xy_matrix(zoom_xy) -> np.ndarray:
    """3x3 affine (x, y, 1) from the core's pixel grid back to the volume's."""
    zoom = np.asarray(zoom_xy, dtype=float)
    m = np.eye(3)
    m[[0, 1], [0, 1]] = 1.0 / zoom
    m[:2, 2] = 0.5 / zoom - 0.5
    return m


def volume_to_image(array: np.ndarray) -> np.ndarray:
    """A radiograph volume's (1, rows, cols) voxel array as a (rows, cols) image."""
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[0] != 1:
        raise InputError(f"a radiograph is a single-slice grey volume; this one has shape {array.shape} "
                         "(slices, rows, columns[, components])")
    return array[0]


def image_to_volume(image: np.ndarray) -> np.ndarray:
    """A (rows, cols) image as the (1, rows, cols) float32 array a volume node takes."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    return np.ascontiguousarray(image[None].astype(np.float32))


def joint_xy(points_ras, ras_to_ijk_matrix: np.ndarray, shape_rows_cols: tuple[int, int],
             names: list[str], zoom_xy=(1.0, 1.0)) -> np.ndarray:
    """Baseline pixel positions (x = column, y = row) of joints clicked in RAS, shape (N, 2), on the
    core's grid (zoom_xy from core_zoom_xy; shape_rows_cols is the volume's).

    InputError names a joint placed off the image plane or outside the image.
    """
    ijk = ras_to_ijk(points_ras, ras_to_ijk_matrix)
    rows, cols = shape_rows_cols
    for name, (i, j, k) in zip(names, ijk):
        if abs(k) > PLANE_TOLERANCE_VOXELS:
            raise InputError(f"joint {name} is {abs(k):.1f} voxels off the baseline's image plane: "
                             "place it on the baseline radiograph")
        if not (-0.5 <= i <= cols - 0.5 and -0.5 <= j <= rows - 0.5):
            raise InputError(f"joint {name} at pixel ({i:.0f}, {j:.0f}) lies outside the baseline "
                             f"({cols} x {rows} px)")
    return volume_xy_to_core(ijk[:, :2], zoom_xy)


def joint_entries(names: list[str], xy: np.ndarray, sources=None) -> list[dict]:
    """The request's joint list from names and (N, 2) baseline pixel positions, with each joint's
    (source, moved, detection confidence) when given (detection.joint_sources)."""
    if not names:
        raise InputError("no joints placed: click the joints on the baseline radiograph first")
    entries = [{"name": n.strip(), "x": float(x), "y": float(y)} for n, (x, y) in zip(names, xy)]
    for entry, (source, moved, confidence) in zip(entries, sources or []):
        entry.update(source=source, moved=moved)
        if confidence is not None:
            entry["detect_confidence"] = float(confidence)
    return entries


def roi_affine_xy(roi_to_image, size_px: int) -> np.ndarray:
    """3x3 affine (x, y, 1) ROI pixel -> radiograph pixel, from a point map such as rois.roi_to_image."""
    src = np.array([[0.0, 0.0], [size_px - 1.0, 0.0], [0.0, size_px - 1.0]])
    dst = np.asarray(roi_to_image(src), dtype=float)
    a = np.eye(3)
    a[:2, :2] = np.stack([dst[1] - dst[0], dst[2] - dst[0]], axis=1) / (size_px - 1.0)
    a[:2, 2] = dst[0]
    return a


def roi_ijk_to_ras(image_ijk_to_ras: np.ndarray, roi_to_image_xy: np.ndarray, zoom_xy=(1.0, 1.0)) -> np.ndarray:
    """IJK -> RAS of an ROI volume placed where it was cut from the radiograph (turn included);
    roi_to_image_xy maps onto the core's grid, zoom_xy (core_zoom_xy) leads from it to the volume's."""
    roi_to_image_xy = core_to_volume_xy_matrix(zoom_xy) @ np.asarray(roi_to_image_xy, dtype=float)
    m = np.eye(4)
    m[:2, :2] = roi_to_image_xy[:2, :2]
    m[:2, 3] = roi_to_image_xy[:2, 2]
    return np.asarray(image_ijk_to_ras, dtype=float) @ m


def build_request(baseline_path: str, followup_path: str, joints: list[dict], out_dir: str,
                  roi_mm: float, refine: bool, spacing_mm: float | None = None) -> dict:
    """The jsnreg.job request; spacing_mm None (or 0 from the panel) = the files' own spacing."""
    return {
        "baseline": str(baseline_path),
        "followup": str(followup_path),
        "spacing_mm": float(spacing_mm) if spacing_mm else None,
        "joints": joints,
        "settings": {"roi_mm": float(roi_mm), "refine": bool(refine)},
        "out_dir": str(out_dir),
    }


def source_file(storage_file: str | None, modified_since_read: bool, dicom_files: list[str]) -> str | None:
    """The file a volume's pixels can be read from unchanged, or None (then export the volume).

    The original file keeps what the core needs (DICOM spacing, photometric interpretation).
    """
    if storage_file and not modified_since_read:
        return storage_file
    if len(dicom_files) == 1 and dicom_files[0]:
        return dicom_files[0]
    return None
