"""Package layout that setup.cfg cannot express: the repository's top-level ``properties/``
folder (``overall.yaml``, ``model/``, ``dataset/``, ``benchmarks/``) is shipped inside the
package as ``recbole_llm.properties``, so a wheel (``pip install .``) carries it.

Everything else (metadata, dependencies, entry points) is in setup.cfg.
"""

from pathlib import Path

from setuptools import find_packages, setup

# every folder under properties/ at any depth (model/, model/paper_values/, search/, protocol/, ...), so a new one ships too
_PROPERTIES = Path(__file__).resolve().parent / "properties"
PROPERTY_SUBDIRS = sorted(p.relative_to(_PROPERTIES).as_posix() for p in _PROPERTIES.rglob("*") if p.is_dir())

setup(
    packages=find_packages(include=["recbole_llm", "recbole_llm.*", "atomic_data", "atomic_data.*"])
    + ["recbole_llm.properties"],
    package_dir={"recbole_llm.properties": "properties"},
    package_data={"recbole_llm.properties": ["*.yaml"] + [f"{sub}/*.yaml" for sub in PROPERTY_SUBDIRS]},
)
