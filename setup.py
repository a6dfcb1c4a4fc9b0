"""actfusion_ros: ROS 2 (ament_python) package and pip-installable Python project."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "actfusion_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Real-time temporal action segmentation and long-term anticipation for ROS 2 (ActFusion)",
    license="MIT",
    python_requires=">=3.10",
    # One import name per directory, all prefixed: the repository keeps model/ and training/, installed (and
    # imported) as actfusion_model and actfusion_training, so nothing named `model` or `training` lands in a
    # robot's site-packages next to other packages (README, "Import names").
    packages=find_packages(include=["actfusion_ros", "actfusion_ros.*"]) + [
        f"actfusion_{pkg}" + name[len(pkg):]
        for pkg in ("model", "training") for name in find_packages(include=[pkg, f"{pkg}.*"])],
    package_dir={"actfusion_model": "model", "actfusion_training": "training"},
    package_data={"actfusion_training": ["configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    # torch as a range: CI and the Makefile install torch==2.13.0 first (a CPU wheel on disk here).
    install_requires=[
        "torch>=2.1",
        "numpy>=1.23",
        "pyyaml>=6.0",
        "opencv-python-headless>=4.8",
        "scipy>=1.10",
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1"],
        "bags": ["rosbags>=0.10"],
        "ros-pip": [  # ROS 2 Kilted from PyPI wheels, for machines without a ROS install
            "ros-rclpy", "ros-rmw-fastrtps-cpp", "ros-std-msgs", "ros-sensor-msgs", "ros-std-srvs",
            "ros-diagnostic-msgs", "ros-builtin-interfaces",
        ],
        "test": ["pytest>=7", "hypothesis>=6", "tensorboard>=2.12", "onnx>=1.15", "onnxruntime>=1.17",
                 "onnxscript>=0.1", "rosbags>=0.10",
                 "mcap>=1.1",  # the reference MCAP reader: tests check our bags' CRCs with it
                 "ruff>=0.6"],  # make lint (ruff.toml), run by .ci/run
    },
    entry_points={
        "console_scripts": [
            "actfusion-demo = actfusion_ros.tools.demo:main",
            "actfusion-convert = actfusion_model.official:main",
            "actfusion-export = actfusion_model.export:main",
            "actfusion-build-engine = actfusion_model.build_engine:main",
            "actfusion-train = actfusion_training.train:main",
            "actfusion-eval = actfusion_training.eval_model:main",
            "actfusion_node = actfusion_ros.node:main",
            "actfusion-replay = actfusion_ros.tools.replay.cli:main",
            "actfusion-play = actfusion_ros.tools.play:main",
            "actfusion-extract = actfusion_ros.tools.extract:main",
        ],
    },
    zip_safe=False,
)
