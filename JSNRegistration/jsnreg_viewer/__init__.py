"""Desktop viewer over the jsnreg core: open two radiographs, place joints, register, review.

The session (model.py) is plain Python; the views (Qt, pyqtgraph) only show it and report what
the user does. Every measurement comes from jsnreg.quantify: nothing here re-implements a step.
"""
