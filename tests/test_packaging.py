"""One source for each dependency's version: what `make setup` installs (requirements.txt, scripts/build_horovod.sh)
lies inside what setup.cfg's install_requires allows, and Horovod's version is written in setup.cfg alone."""

import configparser
import os
import subprocess

from conftest import REPO
from packaging.requirements import Requirement

# requirements.txt installs these builds of setup.cfg's distributions (docs/launching.md: the GPU variant).
BUILDS = {"tensorflow-cpu": "tensorflow"}


def _install_requires() -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
    return {Requirement(line).name: Requirement(line) for line in lines}


def _pins(path: str) -> dict[str, str]:
    pins = {}
    with open(os.path.join(REPO, path)) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                requirement = Requirement(line)
                (specifier,) = requirement.specifier
                assert specifier.operator == "==", f"{path}: {line!r} is not pinned with =="
                pins[requirement.name] = specifier.version
    return pins


def test_every_pin_is_allowed_by_setup_cfg_and_every_requirement_is_installed():
    allowed, pins = _install_requires(), _pins("requirements.txt")
    installed = {BUILDS.get(name, name): version for name, version in pins.items()}
    missing = [name for name in allowed if name not in installed and name != "horovod"]  # horovod: built, below
    assert not missing, f"setup.cfg requires {missing}, which requirements.txt does not install"
    outside = {
        name: version
        for name, version in installed.items()
        if name in allowed and not allowed[name].specifier.contains(version)
    }
    assert not outside, f"requirements.txt pins {outside} outside setup.cfg's {[str(allowed[n]) for n in outside]}"


def test_the_dev_pins_of_an_extra_are_allowed_by_it():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    extras = config["options.extras_require"]
    allowed = {
        Requirement(line).name: Requirement(line)
        for name in extras
        for line in extras[name].splitlines()
        if line.strip()
    }
    pins = _pins("requirements-dev.txt")
    assert set(allowed) <= set(pins), f"requirements-dev.txt does not install the extras' {set(allowed) - set(pins)}"
    outside = {name: pins[name] for name in allowed if not allowed[name].specifier.contains(pins[name])}
    assert not outside, f"requirements-dev.txt pins {outside} outside setup.cfg's extras"


def test_horovods_version_is_read_from_setup_cfg():
    (pin,) = _install_requires()["horovod"].specifier
    assert pin.operator == "=="
    script = os.path.join(REPO, "scripts", "build_horovod.sh")
    with open(script) as f:
        assert pin.version not in f.read(), "build_horovod.sh spells Horovod's version: it reads setup.cfg's"
    printed = subprocess.run(["bash", script, "--print-version"], capture_output=True, text=True, cwd=REPO)
    assert printed.returncode == 0 and printed.stdout.strip() == pin.version, printed.stderr
