"""Inputs for edge_cases.sh: the hostile cases of the hardening pass, written into the current folder."""
import json, numpy as np, pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from jsnreg.images import write_dicom, write_png
from jsnreg.synthetic import make_joint_pair, write_demo_case
from jsnreg.session import save_session
import sys; sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from test_session import make_session
pair = make_joint_pair(np.random.default_rng(5), jsn_mm=0.4, noise_sigma=0.01, spacing_mm=0.15)
write_dicom("fixed.dcm", pair.fixed, 0.15); write_dicom("m015.dcm", pair.moving, 0.15)
write_dicom("m030.dcm", pair.moving, 0.30); write_dicom("mnone.dcm", pair.moving, 0.15, spacing_tag=None)
write_png("flat.png", np.full(pair.fixed.shape, 0.5), bits=16); write_png("moving.png", pair.moving, bits=16)
def bad(name, shape=None, **tags):
    write_dicom(name, pair.fixed if shape is None else np.full(shape, 0.5), 0.15)
    ds = pydicom.dcmread(name)
    for k, v in tags.items():
        tag = tag_for_keyword(k); vr, raw = v if isinstance(v, tuple) else (dictionary_VR(tag), v)
        raw = raw.encode() if isinstance(raw, str) else raw; raw += b" " * (len(raw) % 2)
        ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    ds.save_as(name)
bad("slope_abc.dcm", RescaleSlope="abc"); bad("slope_multi.dcm", RescaleSlope="1\\2")
bad("slope_inf.dcm", RescaleSlope="1e308", RescaleIntercept="1e308")
bad("mag_abc.dcm", ImagerPixelSpacing="0.15\\0.15", PixelSpacing="", EstimatedRadiographicMagnificationFactor="x")
bad("mag_multi.dcm", ImagerPixelSpacing="0.15\\0.15", PixelSpacing="", EstimatedRadiographicMagnificationFactor="1\\2")
bad("ps_1e9.dcm", PixelSpacing="1e9\\1e9"); bad("aniso.dcm", shape=(1000, 1000), PixelSpacing="0.01\\5")
bad("vr_zz.dcm", PatientName=("ZZ", b"x")); bad("spp3.dcm", SamplesPerPixel=("US", b"\x03\x00"))
bad("big.dcm", Rows=("US", b"\x20\x4e"), Columns=("US", b"\x20\x4e"))
write_demo_case("case")
s = make_session(__import__("pathlib").Path("sess")); save_session(s, "sess/s.json")
base = json.load(open("sess/s.json"))
def edit(name, path, value):
    d = json.loads(json.dumps(base)); node = d
    for k in path[:-1]: node = node[k]
    if value is KeyError: del node[path[-1]]
    else: node[path[-1]] = value
    open(f"sess/{name}.json", "w").write(json.dumps(d, allow_nan=True))
edit("interval_abc", ("images", "followup", "interval_days"), "abc")
edit("no_roi_size", ("results", 0, "position", "roi_size_px"), KeyError)
edit("sp_neg", ("spacing_mm",), -0.2); edit("sp_zero", ("spacing_mm",), 0); edit("sp_nan", ("spacing_mm",), float("nan"))
edit("nan_result", ("results", 0, "jsn_mm"), float("nan")); edit("nan_dy", ("results", 0, "upper", "dy"), float("nan"))
edit("rle_huge", ("joints", 0, "upper_mask"), {"shape": [100000, 100000], "rle": [0, 10**10]})
open("sess/deep.json", "w").write('{"schema": "jsnreg-session", "version": 1, "x": ' + "[" * 100000 + "]" * 100000 + "}")
open("sess/digits.json", "w").write('{"schema": "jsnreg-session", "version": 1, "spacing_mm": ' + "1" * 5000 + "}")
g = "fixed.dcm,m015.dcm"
open("ragged.csv", "w").write(f"fixed,moving\n{g}\nfixed.dcm\nfixed.dcm,\n{g},extra\n{g}\n")
open("bom.csv", "wb").write(b"\xef\xbb\xbf" + f"fixed,moving\r\n{g}\r\n".encode())
open("latin1.csv", "wb").write("fixed,moving\nb_\xe9.dcm,f.dcm\n".encode("latin-1"))
open("spacing.csv", "w").write("fixed,moving\nfixed.dcm,mnone.dcm\nfixed.dcm,m030.dcm\n")
open("plain", "w").write("x")
