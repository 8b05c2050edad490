"""Slicer-free, Qt-free helpers of the JSNRegistration Slicer module (tested with plain pytest).

conversions: volume arrays, RAS <-> IJK of joint positions, the core's pixel grid, the request.
display: table columns, overlay images and their colour ranges, flagged joints, the table layout.
runner: drives a worker process (QProcess-like, injected) and parses its JSON-line events; run folders.
naming: the standard joint name for a point the user placed.
dependencies: what requirements.txt asks for and is missing.
reloading: reload the Lib and the core (the module's Reload button).
paths: the Resources folder in the source and the installed tree.
"""
