"""Install: ``pip install -e ".[dev]"`` (development) or ``pip install git+<repository url>`` (Colab).

torch is a range, not a pin, so Colab's preinstalled CUDA build is kept.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements() -> list[str]:
    """Runtime requirements: the lines of requirements.txt (one source of truth)."""
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="eva-utils",
    version="0.1.0",
    description="Train CNNs on CIFAR-10 and look inside them with Grad-CAM: package, notebooks and command line",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["eva_utils", "eva_utils.*"]),
    package_data={"eva_utils": ["py.typed"], "eva_utils.sample_data": ["*.npz"],
                  "eva_utils.models": ["weights/*.pt", "weights/*.json"]},
    include_package_data=True,
    install_requires=requirements(),
    extras_require={
        "app": ["gradio>=5"],
        "tensorboard": ["tensorboard>=2.14"],
        "lightning": ["lightning>=2.4"],  # eva_utils.lightning: the recipe as a LightningModule, DataModule and Callback
        "dev": ["pytest>=8", "packaging>=22", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29", "ruff>=0.6",
                "gradio>=5", "playwright>=1.40", "tensorboard>=2.14",
                "lightning>=2.4"],  # the app, its browser test, TensorBoard's and Lightning's tests run in CI
    },
    entry_points={"console_scripts": ["eva-utils=eva_utils.apps.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: Jupyter",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
