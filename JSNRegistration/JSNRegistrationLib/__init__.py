"""Slicer-free, Qt-free helpers of the JSNRegistration Slicer module (tested with plain pytest).

conversions: volume arrays, RAS <-> IJK of joint positions, the worker request.
display: table columns, overlay images and their colour ranges, flagged joints.
runner: drives a worker process (QProcess-like, injected) and parses its JSON-line events.
"""
