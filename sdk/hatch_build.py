"""The wheel's shared packages: privacam_core (core/) and the generated stubs (gen/privacam).

From the repository (`pip install ./sdk`) they are siblings of sdk/; an sdist carries them at
its own root (tool.hatch.build.targets.sdist.force-include), so a wheel built from it finds
them there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SHARED = {"privacam_core": "../core/privacam_core", "privacam": "../gen/privacam"}


class SharedPackages(BuildHookInterface):  # type: ignore[misc]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        for name, in_repository in SHARED.items():
            source = next((p for p in (root / in_repository, root / name) if p.is_dir()), None)
            if source is None:
                raise FileNotFoundError(
                    f"{in_repository} is missing: run `make setup` in the repository first"
                )
            build_data["force_include"][str(source.resolve())] = name
