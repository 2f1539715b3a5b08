"""Writes the VS Code workspace settings that let DaCe's extension ("DaCe SDFG Optimizer", phschaad.sdfv) use
sdflow: the project's .venv as the Python interpreter (the extension's daemon runs in it, so sdflow's op nodes
load and expand), and sdflow's passes as custom transformations. The extension wants an absolute path there (it
does not expand ${workspaceFolder}), so the file is written per checkout and not committed. Other settings in
the file are kept."""
from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETTINGS = ROOT / ".vscode" / "settings.json"


def wanted() -> dict:
    return {
        "python.defaultInterpreterPath": "${workspaceFolder}/.venv/bin/python",
        "dace.optimization.customTransformationsPaths": [str(ROOT / "sdflow" / "vscode_transformations.py")],
    }


def main(argv: list[str]) -> int:
    """``vscode_settings.py [SETTINGS_FILE]`` (default: this checkout's .vscode/settings.json)."""
    settings_file = pathlib.Path(argv[0]) if argv else SETTINGS
    settings = {}
    if settings_file.exists():
        try:
            settings = json.loads(settings_file.read_text())
        except ValueError:
            print(f"[setup] {settings_file} is not plain JSON (comments?); left as is. Add these settings yourself:\n"
                  f"{json.dumps(wanted(), indent=4)}", file=sys.stderr)
            return 0
    if all(settings.get(key) == value for key, value in wanted().items()):
        return 0
    settings.update(wanted())
    settings_file.parent.mkdir(exist_ok=True)
    settings_file.write_text(json.dumps(settings, indent=4) + "\n")
    print(f"[setup] wrote {settings_file} (VS Code: DaCe's extension uses .venv and sdflow's passes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
