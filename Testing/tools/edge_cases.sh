#!/bin/bash
# The command-line edge cases of the hardening pass: exit code, traceback count, last stderr line each.
# Run in an empty folder: python Testing/tools/make_edge_cases.py && bash Testing/tools/edge_cases.sh
P=${JSNREG:-jsnreg}
B=case/baseline.dcm; F=case/followup.dcm; J="--joint MCP3=490,317"
t() { label="$1"; shift; "$P" "$@" > out.txt 2> err.txt; rc=$?; last=$(grep -v '^\[' err.txt | tail -1); [ -z "$last" ] && last=$(tail -1 out.txt); tb=$(grep -c Traceback err.txt); echo "$label | rc=$rc | tb=$tb | ${last:0:170}"; }
t "1 roi follow-up without spacing" roi fixed.dcm mnone.dcm
t "1 roi 0.15 vs 0.30" roi fixed.dcm m030.dcm
rm -f o.csv; t "1 manifest spacing rows" roi --manifest spacing.csv --out o.csv; cut -c1-150 o.csv | tail -2 | sed 's/^/    /'
t "2 --joint ../EVIL" quantify $B $F --joint ../EVIL=490,317 --out q
t "2 --joint absolute" quantify $B $F --joint /tmp/EVIL=490,317 --out q
t "2 --joint a/b" quantify $B $F --joint a/b=490,317 --out q
t "2 --joint NUL" quantify $B $F --joint "$(printf 'A\x01B')=490,317" --out q
t "2 --joint 300 chars" quantify $B $F --joint "$(printf 'x%.0s' $(seq 300))=490,317" --out q
rm -f o.csv; t "3 ragged manifest" roi --manifest ragged.csv --out o.csv; cut -d, -f1-3,18- o.csv | sed 's/^/    /' | cut -c1-160
t "3 --out is a directory" roi --manifest ragged.csv --out case
t "3 --out under a file" roi --manifest ragged.csv --out plain/o.csv
t "3 existing --out" roi --manifest ragged.csv --out o.csv
t "3 --resume (all done)" roi --manifest ragged.csv --out o.csv --resume
t "3 --force" roi --manifest ragged.csv --out o.csv --force
t "5 --joint A490,317" quantify $B $F --joint A490,317 --out q
t "5 --joint A=x,y" quantify $B $F --joint A=x,y --out q
t "5 --joint =1,2" quantify $B $F --joint =1,2 --out q
t "5 --joint ''" quantify $B $F --joint "" --out q
t "5 --roi-mm nan" quantify $B $F $J --out q --roi-mm nan
for f in slope_abc slope_multi slope_inf mag_abc mag_multi vr_zz spp3; do t "5 roi $f.dcm" roi $f.dcm m015.dcm; done
t "5 roi --json unwritable" roi fixed.dcm m015.dcm --json plain/r.json
t "5 quantify --out a file" quantify $B $F $J --out plain
t "5 demo --out a file" demo --out plain
t "5 --manifest without --out" roi --manifest ragged.csv
t "5 non-UTF-8 manifest" roi --manifest latin1.csv --out o2.csv
for s in interval_abc no_roi_size deep digits; do t "5 report $s" report sess/$s.json --out r.pdf --html r.html; done
ls r.pdf r.html 2>/dev/null
t "6 --roi-mm 1e6" quantify $B $F $J --out q --roi-mm 1e6
t "6 --roi-mm 2000" quantify $B $F $J --out q --roi-mm 2000
t "6 roi 20000x20000" roi big.dcm m015.dcm
t "6 session rle 100000^2" report sess/rle_huge.json --out r.pdf
t "6 --spacing-mm 1e9" quantify $B $F $J --out q --spacing-mm 1e9
t "6 PixelSpacing 1e9" roi ps_1e9.dcm m015.dcm
for s in sp_neg sp_zero sp_nan nan_result nan_dy; do t "6 report $s" report sess/$s.json --out r.pdf; done
t "7 anisotropic 0.01x5 (was MemoryError)" roi aniso.dcm m015.dcm
rm -f o3.csv; t "8 BOM manifest" roi --manifest bom.csv --out o3.csv
t "8 manifest as its own --out" roi --manifest bom.csv --out bom.csv --force
t "8 constant ROI" roi flat.png moving.png --spacing-mm 0.15
rm -rf q; t "ok quantify --report" quantify $B $F $J --out q --report; stat -c '%a %n' q/MCP3_fixed.png q/results.json
t "ok report --deidentify" report q/session.json --out d.pdf --html d.html --deidentify; grep -c "unavailable" d.html
t "ok demo" demo --out demo
