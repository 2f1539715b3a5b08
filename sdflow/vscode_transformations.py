"""The file DaCe's VS Code extension loads (``dace.optimization.customTransformationsPaths``; scripts/setup.sh
writes .vscode/settings.json pointing here). The extension executes it by path, as a module of its own, so it
only imports: the transformations are defined once, in sdflow.transformations."""
from sdflow.transformations import *  # noqa: F401,F403
