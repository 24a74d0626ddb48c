"""udifftext: UDiffText (arXiv 2312.04884) text synthesis in arbitrary images with character-aware diffusion.

Importing the package is cheap on purpose: heavy libraries (torch, diffusers, Lightning) are imported by the
submodules that need them, so command-line scripts can print `--help` and validate configs quickly.
"""

__version__ = "0.1.0"
