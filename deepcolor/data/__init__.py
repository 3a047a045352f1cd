"""Data files shipped with the package (see LICENSE-zhang.txt)."""
