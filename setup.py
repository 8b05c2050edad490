from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("JSNRegistration/jsnreg/__init__.py").read_text().split('"""', 2)[2], version)

setup(
    name="jsnregistration",
    version=version["__version__"],
    description="Joint space narrowing in rheumatoid arthritis by per-bone registration of hand radiographs",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    # 3.9: the Python of 3D Slicer 5.6-5.8, which runs the core in its worker.
    python_requires=">=3.9",
    # The core and the viewer live beneath the Slicer module folder, under their own import names.
    package_dir={"": "JSNRegistration"},
    packages=find_packages("JSNRegistration", include=["jsnreg", "jsnreg.*", "jsnreg_viewer", "jsnreg_viewer.*"]),
    package_data={"jsnreg": ["weights/*.pt", "weights/*.json", "data/*.json"]},
    # Lower bounds only: the core also runs inside 3D Slicer's own Python and must not pin its numpy.
    # pydicom 2.4 is what Slicer 5.6-5.8 bundle. torch is an extra: a plain `torch` requirement
    # pulls a multi-GB CUDA build, and inside Slicer the PyTorch extension installs it.
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "SimpleITK>=2.2",
        "pydicom>=2.4",
        "matplotlib>=3.7",
        "contourpy>=1.0",
    ],
    extras_require={
        "torch": ["torch>=2.1"],
        "viewer": ["PyQt5>=5.15", "pyqtgraph>=0.13"],
        "dicom-compressed": ["pylibjpeg>=2", "pylibjpeg-openjpeg>=2", "pylibjpeg-libjpeg>=2"],
        "test": ["pytest>=7", "pytest-qt>=4", "pypdf>=4", "pydicom-data>=1.0", "deid-data>=0.0.20",
                 "pylibjpeg>=2", "pylibjpeg-openjpeg>=2", "pylibjpeg-libjpeg>=2"],
        # `jsnreg cohort`: Dask runs the same code on a laptop or a cluster; tqdm draws the progress
        # bar; pyarrow writes the Parquet tables (psutil comes with distributed).
        "cohort": ["dask>=2024.1", "distributed>=2024.1", "tqdm>=4.60", "pyarrow>=14"],
        # `jsnreg bench --real --peer elastix` only: the stronger, slower registration peer (~290 MB
        # of wheels, 1.6 GB installed, the whole of ITK), so in no other extra.
        "peers": ["itk-elastix>=0.20"],
    },
    entry_points={
        "console_scripts": [
            "jsnreg=jsnreg.cli:run",
            "jsnreg-viewer=jsnreg_viewer.app:main",
        ],
    },
)
