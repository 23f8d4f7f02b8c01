"""Finding the offline validators; a missing one fails loudly (CI installs them)."""

from __future__ import annotations

import shutil

import pytest

INSTALL_HINT = "install it with: bash deploy/install-tools.sh"


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found (Debian package {package}); {INSTALL_HINT}", pytrace=False)
    return path
