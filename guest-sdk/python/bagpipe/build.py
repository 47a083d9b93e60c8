"""Builds a Python block into a component: `python -m bagpipe.build app.py -o app.wasm`.

It imports `app.py` (natively, so its top level must not need the host) to find the class given
to `bagpipe.export`, writes a world that includes the project's `block` world and exports only
the hook interfaces that class implements (plus `batch-hook`, as every SDK does), and runs
`componentize-py` against it. The component's name in a manifest is its file name.
"""

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SDK = Path(__file__).resolve().parent.parent
#: The project's WIT package, when this SDK is used from the repository.
DEFAULT_WIT = SDK.parent.parent / "wit"
WORLD = "python-block"


class BuildError(Exception):
    """The block could not be built; says why."""


def block_class(app: Path):
    """Imports `app` and returns the class it exported."""
    sys.path[:0] = [str(app.parent), str(SDK)]
    import bagpipe

    try:
        importlib.import_module(app.stem)
    except Exception as e:  # the user's module: any failure is theirs to see
        raise BuildError(f"importing `{app}` failed: {type(e).__name__}: {e}") from e
    cls = bagpipe.exported()
    if cls is None:
        raise BuildError(f"`{app}` never calls bagpipe.export(SomeBlock)")
    return cls


def world(interfaces) -> str:
    """The WIT world of a block exporting `interfaces` besides the lifecycle."""
    exports = "".join(f"    export {i};\n" for i in interfaces)
    return f"package bagpipe:block@0.1.0;\n\nworld {WORLD} {{\n    include block;\n{exports}}}\n"


def componentize_py() -> str:
    """The `componentize-py` next to this Python (a venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("componentize-py")
    if found is None:
        raise BuildError("componentize-py not found: `pip install -r guest-sdk/python/requirements.txt`, or use guest-sdk/build-block")
    return found


def build(app: Path, out: Path, wit: Path) -> list:
    """Builds `app` into `out`; returns the optional interfaces it exports."""
    from bagpipe import hooks

    if not app.is_file():
        raise BuildError(f"`{app}` is not a file")
    if app.suffix != ".py" or not app.stem.isidentifier():
        raise BuildError(f"`{app.name}`: a block's module must be NAME.py with NAME a Python identifier")
    if app.stem in sys.stdlib_module_names or app.stem in ("bagpipe", "bagpipe_app", "wit_world"):
        raise BuildError(f"`{app.name}` would shadow the module `{app.stem}`: rename it")
    if not (wit / "block.wit").is_file():
        raise BuildError(f"`{wit}` holds no block.wit: pass the project's wit directory with --wit")
    interfaces = hooks.interfaces(block_class(app))
    with tempfile.TemporaryDirectory(prefix="bagpipe-py-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(wit, tmp / "wit")
        (tmp / "wit" / "bagpipe-python-world.wit").write_text(world(interfaces))
        (tmp / "app").mkdir()
        (tmp / "app" / "bagpipe_app.py").write_text(
            f"import {app.stem}  # noqa: F401  (runs bagpipe.export)\n"
            "from bagpipe._glue import (BatchHook, EnqueueHook, Lifecycle, NetHook,  # noqa: F401\n"
            "                           ReplyHook, ServerHook, StateHook, StreamHook, TimerHook)\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        # Beside the output (so the rename is atomic), named for this build alone.
        handle, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
        os.close(handle)
        partial = Path(partial)
        # A copy of the SDK: componentize-py writes bytecode beside what it reads.
        shutil.copytree(SDK / "bagpipe", tmp / "sdk" / "bagpipe", ignore=shutil.ignore_patterns("__pycache__"))
        command = [componentize_py(), "-d", str(tmp / "wit"), "-w", WORLD, "componentize", "bagpipe_app",
                   "-p", str(tmp / "app"), "-p", str(app.parent), "-p", str(tmp / "sdk"), "-o", str(partial)]
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise BuildError(f"componentize-py failed for `{app}`:\n{done.stdout}")
        # A watching host sees the whole new file at once, never a half-written one.
        os.replace(partial, out)
    return interfaces


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bagpipe.build", description=__doc__.splitlines()[0])
    parser.add_argument("app", type=Path, help="the block's module, e.g. enrich.py")
    parser.add_argument("-o", "--output", type=Path, help="the component to write (default: APP with .wasm)")
    parser.add_argument("--wit", type=Path, default=DEFAULT_WIT, help="the project's wit directory")
    args = parser.parse_args(argv)
    out = args.output or args.app.with_suffix(".wasm")
    try:
        interfaces = build(args.app.resolve(), out.resolve(), args.wit.resolve())
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built {out} (exports lifecycle, {', '.join(interfaces)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
