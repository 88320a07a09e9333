from setuptools import find_packages, setup

setup(
    name="nstyle",
    version="0.1.0",
    description="Neural style transfer (Gatys et al.) with handwritten backprop on NumPy and CuPy",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["nstyle", "nstyle.*"]),
    # The GPU engine's CUDA source, read at run time (nstyle/gpu/program.py).
    package_data={"nstyle.gpu": ["cuda/*.cu"]},
    install_requires=["numpy>=1.22", "scipy>=1.11", "h5py>=3.0", "pillow>=9.1"],
    extras_require={
        "gpu": ["cupy-cuda12x>=13"],
        "gpu-cuda13": ["cupy-cuda13x>=14"],
        "test": ["pytest>=7", "hypothesis>=6", "matplotlib>=3.5", "scikit-image>=0.19",
                 "dask==2026.8.0", "distributed==2026.8.0", "av==18.1.0", "opencv-python-headless==4.14.0.94",
                 # the notebooks, executed by a real kernel (tests/test_notebooks.py)
                 "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
        "bench": ["torch==2.13.0", "psutil>=5", "threadpoolctl>=3", "asv==0.6.6"],
        # bench/asv_check.sh (CI): airspeed velocity alone
        "asv": ["asv==0.6.6"],
        "bench-tf": ["tensorflow-cpu==2.21.*"],
        "bench-jax": ["jax[cpu]==0.10.2"],
        "demo": ["scikit-image>=0.19", "matplotlib>=3.5"],
        "plot": ["matplotlib>=3.5"],
        # the docs as a site: `mkdocs build --strict` (CI) or `mkdocs serve`
        "docs": ["mkdocs-material>=9.5"],
        # `nstyle batch`: Dask's distributed scheduler (its own dependencies: tornado, msgpack, psutil, ...)
        "batch": ["dask==2026.8.0", "distributed==2026.8.0"],
        # `nstyle video`: PyAV (FFmpeg) for the frames in and out, OpenCV's DIS optical flow
        "video": ["av==18.1.0", "opencv-python-headless==4.14.0.94"],
    },
    entry_points={"console_scripts": ["nstyle=nstyle.cli.main:entry"]},
)
