"""JSNRegistration core: joint space narrowing from two hand radiographs, by registration.

No Qt and no Slicer here: the CLI, the desktop viewer and the Slicer module are thin faces
over these modules. The method's steps, one module each, in the order data flows:
images -> rois -> split -> network -> refine -> measure -> quantify -> session/report.
"""

__version__ = "0.1.0"
