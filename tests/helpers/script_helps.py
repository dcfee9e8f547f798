"""Test helper: the --help of several scripts from one Python, so TensorFlow and the other heavy imports load once.

Usage: script_helps.py OUT_JSON SCRIPT [SCRIPT ...]
Runs each SCRIPT as `python SCRIPT --help` would (as __main__, with its own folder first on sys.path), one after
another, and writes {script: {"exit": exit status, "help": what it printed}} to OUT_JSON.
"""

import contextlib
import io
import json
import os
import runpy
import sys
import traceback


def help_of(script: str) -> dict:
    out = io.StringIO()
    sys.argv = [script, "--help"]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    code = 0
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except Exception:  # a script that breaks on import: its traceback is the "help", with status 1
        code = 1
        out.write(traceback.format_exc())
    finally:
        sys.path.pop(0)
    return {"exit": code, "help": out.getvalue()}


def main() -> None:
    out_json, *scripts = sys.argv[1:]
    helps = {script: help_of(script) for script in scripts}
    with open(out_json, "w") as f:
        json.dump(helps, f)


if __name__ == "__main__":
    main()
