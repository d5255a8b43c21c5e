"""The twistd plugin lives outside src/ (in twisted/plugins/), so map it explicitly."""

from setuptools import find_packages, setup

setup(
    package_dir={"": "src", "twisted.plugins": "twisted/plugins"},
    packages=find_packages("src") + ["twisted.plugins"],
)
