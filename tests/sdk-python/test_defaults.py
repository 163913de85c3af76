"""What a new E2B user's first lines do, as the E2B docs write them: the default template is a
Python image with Node.js, `pip` and `npm install -g` work as the sandbox user without flags,
and the code interpreter SDK runs cells in templates other than code-interpreter-v1."""

import pytest
from e2b import CommandExitException, SandboxException
from e2b_code_interpreter import Sandbox as CodeSandbox


def test_the_default_template_is_python_with_node(sandbox):
    r = sandbox.commands.run(
        "python --version; pip --version | cut -d' ' -f1; node -e 'console.log(process.version[0])'; "
        "npm --version >/dev/null && echo npm; git --version | cut -d' ' -f1; curl --version | head -1 | cut -d' ' -f1"
    )
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Python 3."), r.stdout
    assert lines[1:] == ["pip", "v", "npm", "git", "curl"], r.stdout


def test_pip_without_a_network_fails_on_the_network_not_on_pep_668(sandbox):
    with pytest.raises(CommandExitException) as e:
        sandbox.commands.run("pip install --retries 0 cowsay")
    out = e.value.stdout + e.value.stderr
    assert "externally-managed" not in out
    assert "No matching distribution found for cowsay" in out or "Failed to establish a new connection" in out, out


def test_pip_and_npm_install_as_the_user_without_flags(sandbox):
    # A local wheel and a local npm package: no network needed, the same install paths.
    sandbox.files.write(
        "/tmp/mkwheel.py",
        "import zipfile, base64, hashlib\n"
        "files = {'brigwheel.py': \"VALUE = 'wheel ok'\\n\",\n"
        "         'brigwheel-1.0.dist-info/METADATA': 'Metadata-Version: 2.1\\nName: brigwheel\\nVersion: 1.0\\n',\n"
        "         'brigwheel-1.0.dist-info/WHEEL': 'Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n'}\n"
        "rec = ''.join(f\"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b'=').decode()},{len(c)}\\n\" for n, c in files.items())\n"
        "with zipfile.ZipFile('/tmp/brigwheel-1.0-py3-none-any.whl', 'w') as z:\n"
        "    [z.writestr(n, c) for n, c in files.items()]\n"
        "    z.writestr('brigwheel-1.0.dist-info/RECORD', rec + 'brigwheel-1.0.dist-info/RECORD,,\\n')\n",
    )
    r = sandbox.commands.run("python /tmp/mkwheel.py && pip install /tmp/brigwheel-1.0-py3-none-any.whl && id -un")
    assert r.stdout.endswith("user\n"), r.stdout
    # Installed where every user's python finds it, root's included.
    assert sandbox.commands.run("python -c 'import brigwheel; print(brigwheel.VALUE)'").stdout == "wheel ok\n"
    assert sandbox.commands.run("python -c 'import brigwheel; print(brigwheel.VALUE)'", user="root").stdout == "wheel ok\n"
    r = sandbox.commands.run(
        "mkdir -p /tmp/p && cd /tmp/p && "
        "echo '{\"name\":\"brigprobe\",\"version\":\"1.0.0\",\"bin\":{\"brigprobe\":\"cli.js\"}}' > package.json && "
        "printf '#!/usr/bin/env node\\nconsole.log(\"probe ok\")\\n' > cli.js && npm pack --silent >/dev/null && "
        "npm install -g --offline ./brigprobe-1.0.0.tgz >/dev/null 2>&1 && brigprobe"
    )
    assert r.stdout == "probe ok\n"


def test_the_docs_pandas_example_runs_as_written_on_python3(sandboxes):
    s = sandboxes(template="python3")
    r = s.commands.run('pip install pandas && python -c "import pandas; print(pandas.__version__)"')
    assert r.exit_code == 0
    assert r.stdout.splitlines()[-1].count(".") == 2, r.stdout


def test_code_cells_run_in_the_default_template(sandboxes):
    # Not only in code-interpreter-v1: python (ipykernel), javascript (Node.js) and bash in base.
    s = sandboxes(cls=CodeSandbox, template="base")
    assert s.run_code("x = 20\nx + 1").text == "21"
    assert s.run_code("x * 2").text == "40"
    js = s.run_code("const n = [1, 2, 3].map((v) => v * 2)\nn.length", language="javascript")
    assert js.error is None and js.text == "3", js
    sh = s.run_code("echo $((6 * 7))", language="bash")
    assert sh.logs.stdout == ["42\n"], sh


def test_a_language_the_template_lacks_is_a_clear_error(sandboxes):
    s = sandboxes(cls=CodeSandbox, template="minimal")
    assert s.run_code("echo lean", language="bash").logs.stdout == ["lean\n"]
    with pytest.raises(SandboxException) as e:
        s.run_code("print(1)")
    assert "no python kernel" in str(e.value) and "code-interpreter-v1" in str(e.value), str(e.value)
