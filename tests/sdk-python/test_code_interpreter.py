"""Code cells with the official `e2b-code-interpreter` Python SDK (`from e2b_code_interpreter
import Sandbox`) on brig's code-interpreter-v1 template. One sandbox serves the module; each test
sets up the kernel state it relies on, so the tests do not depend on their order."""

import asyncio
import base64
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2b import InvalidArgumentException, NotFoundException, SandboxException, TimeoutException
from e2b_code_interpreter import AsyncSandbox, Context, Sandbox

from sdkutil import run_async

TEMPLATE = "code-interpreter-v1"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sbx():
    s = Sandbox.create(template=TEMPLATE, timeout=900, envs={"BRIG_CREATE_ENV": "from-create"})
    try:
        yield s
    finally:
        try:
            s.kill()
        except Exception:
            pass


def stdout(e):
    return "".join(e.logs.stdout)


def stderr(e):
    return "".join(e.logs.stderr)


def test_template_and_trivial_cell(sbx):
    assert sbx.get_info().name == TEMPLATE
    started = time.monotonic()
    e = sbx.run_code("1+1")
    assert e.error is None, e.error
    assert e.text == "2"
    assert time.monotonic() - started < 10


def test_state_is_kept_across_cells(sbx):
    first = sbx.run_code("x = 41")
    assert first.error is None
    assert first.text is None
    assert first.results == []
    second = sbx.run_code("x + 1")
    assert second.error is None
    assert second.text == "42"
    assert isinstance(first.execution_count, int) and isinstance(second.execution_count, int)
    assert second.execution_count > first.execution_count, (first.execution_count, second.execution_count)
    # The kernel runs inside the sandbox: what it writes, a command sees.
    sbx.run_code("open('/home/user/from_kernel.txt', 'w').write('kernel wrote this')")
    assert sbx.commands.run("cat /home/user/from_kernel.txt").stdout == "kernel wrote this"
    who = sbx.run_code("import os, getpass; (getpass.getuser(), os.getcwd())")
    assert who.text == "('user', '/home/user')", who.text


def test_stdout_stderr_and_result_callbacks(sbx):
    out, err, results = [], [], []
    e = sbx.run_code(
        "import sys\nprint('out1')\nprint('err1', file=sys.stderr)\n6 * 7",
        on_stdout=out.append,
        on_stderr=err.append,
        on_result=results.append,
    )
    assert e.error is None, e.error
    assert any("out1" in m.line and m.error is False for m in out), out
    assert any("err1" in m.line and m.error is True for m in err), err
    assert not any("err1" in m.line for m in out), "stderr did not leak into stdout"
    assert not any("out1" in m.line for m in err), "stdout did not leak into stderr"
    # Upstream sends the Jupyter message's date (ISO 8601) although the SDK annotates an int.
    assert all(m.timestamp for m in out + err), out + err
    assert "out1" in stdout(e) and "err1" in stderr(e)
    assert len(results) == 1 and results[0].text == "42" and results[0].is_main_result is True, results
    assert e.text == "42"


def test_output_is_streamed_while_the_cell_runs(sbx):
    seen = []
    e = sbx.run_code(
        "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.4)",
        on_stdout=lambda m: seen.append((time.monotonic(), m.line)),
    )
    assert e.error is None, e.error
    assert "".join(line for _, line in seen).split() == ["0", "1", "2"]
    assert seen[-1][0] - seen[0][0] >= 0.6, seen


def test_matplotlib_figure_comes_back_as_png(sbx):
    e = sbx.run_code("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title('t')")
    assert e.error is None, e.error
    with_png = [r for r in e.results if r.png]
    assert with_png, [list(r.formats()) for r in e.results]
    png = base64.b64decode(with_png[0].png)
    assert png[:8] == PNG_MAGIC
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 0 and height > 0, (width, height)
    assert "png" in with_png[0].formats()


def test_pandas_dataframe_comes_back_as_html(sbx):
    e = sbx.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})")
    assert e.error is None, e.error
    assert len(e.results) >= 1
    r = e.results[0]
    assert r.is_main_result is True
    assert r.html and "<table" in r.html, r.html
    assert r.text, "the text/plain form is there too"
    assert "html" in r.formats()


def test_exception_is_an_execution_error_not_a_raise(sbx):
    errors = []
    e = sbx.run_code("1/0", on_error=errors.append)
    assert e.error is not None
    assert e.error.name == "ZeroDivisionError"
    assert "division by zero" in e.error.value
    assert "ZeroDivisionError" in e.error.traceback
    assert e.results == []
    assert len(errors) == 1 and errors[0].name == "ZeroDivisionError"
    # The kernel is still usable.
    # Like upstream, the repr() quotes of a string result are dropped.
    assert sbx.run_code("'after'").text == "after"


def test_javascript_cell(sbx):
    e = sbx.run_code("const a = [1, 2, 3]; a.map(x => x * 2).join(',')", language="js")
    assert e.error is None, e.error
    assert e.text and "2,4,6" in e.text, e.text
    e = sbx.run_code("console.log('from js'); 1", language="javascript")
    assert e.error is None, e.error
    assert "from js" in stdout(e)


# The Deno kernel may publish its execute_result after its idle status; the result still counts.
def test_typescript_cell_with_top_level_await(sbx):
    e = sbx.run_code(
        "const v: number = await new Promise<number>(r => setTimeout(() => r(21), 10)); v * 2",
        language="ts",
    )
    assert e.error is None, e.error
    assert e.text == "42"
    e = sbx.run_code("interface P { n: number }\nconst p: P = { n: 5 }; p.n + 1", language="typescript")
    assert e.error is None, e.error
    assert e.text == "6"


def test_bash_cells_keep_shell_state(sbx):
    first = sbx.run_code('X=5; echo "val=$X"; cd /tmp', language="bash")
    assert first.error is None, first.error
    assert "val=5" in stdout(first)
    second = sbx.run_code("echo $X; pwd; id -un", language="bash")
    assert second.error is None, second.error
    lines = [line.strip() for line in stdout(second).split("\n")]
    assert "5" in lines and "/tmp" in lines and "user" in lines, second.logs


def test_r_cells_keep_state_and_take_per_run_env_vars(sbx):
    # IRkernel shows a cell's value as display data, not as an execute_result: a result, but not
    # the main one (execution.text stays empty), as with upstream.
    def shown(e):
        return "\n".join(r.text or "" for r in e.results)

    first = sbx.run_code('x <- c(1, 2, 3)\nprint("from r")\nsum(x) * 2', language="r")
    assert first.error is None, first.error
    assert "[1] 12" in shown(first), first.results
    assert "from r" in stdout(first)
    second = sbx.run_code("length(x)", language="r")
    assert "[1] 3" in shown(second), second.results
    env = sbx.run_code('Sys.getenv("PER_RUN_R")', language="r", envs={"PER_RUN_R": "yes-r"})
    assert "yes-r" in shown(env), env.results
    after = sbx.run_code('Sys.getenv("PER_RUN_R")', language="r")
    assert "yes-r" not in shown(after)
    err = sbx.run_code('stop("boom")', language="r")
    assert err.error is not None, "an R error is an execution error"
    assert "boom" in err.error.value + err.error.traceback


def test_contexts_create_run_list_restart_remove(sbx):
    ctx = sbx.create_code_context(language="python", cwd="/tmp")
    assert isinstance(ctx, Context)
    assert isinstance(ctx.id, str) and ctx.id
    assert (ctx.language, ctx.cwd) == ("python", "/tmp")
    try:
        assert sbx.run_code("import os; os.getcwd()", context=ctx).text == "/tmp"
        assert sbx.run_code("y = 1", context=ctx).error is None
        assert sbx.run_code("y", context=ctx).text == "1"
        # The default context does not see it.
        sbx.run_code("globals().pop('y', None); None")
        default = sbx.run_code("y")
        assert default.error is not None and default.error.name == "NameError", default

        listed = sbx.list_code_contexts()
        mine = [c for c in listed if c.id == ctx.id]
        assert mine, listed
        assert (mine[0].language, mine[0].cwd) == ("python", "/tmp")

        sbx.restart_code_context(ctx)
        restarted = sbx.run_code("y", context=ctx)
        assert restarted.error is not None and restarted.error.name == "NameError", restarted
        assert sbx.run_code("import os; os.getcwd()", context=ctx).text == "/tmp", "the restarted kernel keeps the cwd"
    finally:
        sbx.remove_code_context(ctx)
    assert ctx.id not in [c.id for c in sbx.list_code_contexts()]
    with pytest.raises(NotFoundException):
        sbx.run_code("1", context=ctx, request_timeout=10)
    # A context of another language, removed by id.
    js = sbx.create_code_context(language="javascript")
    try:
        assert js.language == "javascript"
        assert sbx.run_code("let z = 3; z * 3", context=js).text == "9"
    finally:
        sbx.remove_code_context(js.id)


def test_env_vars_per_run_and_from_create(sbx):
    with_env = sbx.run_code("import os; os.environ.get('PER_RUN')", envs={"PER_RUN": "yes"})
    assert with_env.error is None, with_env.error
    assert with_env.text == "yes"
    without = sbx.run_code("import os; os.environ.get('PER_RUN')")
    assert without.error is None, without.error
    assert without.text is None, without.results  # the per-run env var does not outlive its run
    from_create = sbx.run_code("import os; os.environ['BRIG_CREATE_ENV']")
    assert from_create.error is None, from_create.error
    assert from_create.text == "from-create"


def test_timed_out_cell_is_interrupted_and_the_kernel_keeps_its_state(sbx):
    assert sbx.run_code("keep = 99").error is None
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.run_code("while True: pass", timeout=2)
    assert time.monotonic() - started < 10, "the SDK gave up after about `timeout`"
    # The next cell waits behind the interrupted one in the context's queue, then sees the state.
    e = sbx.run_code("keep", timeout=30)
    assert e.error is None, e.error
    assert e.text == "99"


def test_cell_printing_ten_megabytes(sbx):
    e = sbx.run_code("print('x' * 10_000_000)", timeout=120)
    assert e.error is None, e.error
    out = stdout(e)
    assert out.rstrip("\n") == "x" * 10_000_000, len(out)


def test_errors_unknown_language_and_context_with_language(sbx):
    with pytest.raises(SandboxException):
        sbx.run_code("1", language="cobol", request_timeout=10)
    ctx = sbx.create_code_context(language="python")
    try:
        with pytest.raises(InvalidArgumentException):
            sbx.run_code("1", context=ctx, language="python")
    finally:
        sbx.remove_code_context(ctx)


# ipykernel aborts the execute requests that reach it just after a cell raised (stop_on_error), so
# a cell queued behind a failing one must still run.
def test_cell_queued_behind_a_failing_cell_still_runs(sbx):
    assert sbx.run_code("queued = 7").error is None
    wrong = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(10):
            failing = pool.submit(sbx.run_code, "import time; time.sleep(0.2); 1/0")
            time.sleep(0.05)
            queued = pool.submit(sbx.run_code, "queued")
            a, b = failing.result(timeout=60), queued.result(timeout=60)
            assert a.error is not None and a.error.name == "ZeroDivisionError"
            if b.text != "7":
                wrong.append((i, b.results, b.error))
    assert wrong == []


def test_per_run_env_vars_do_not_outlive_a_failing_cell(sbx):
    leaked = []
    for i in range(10):
        failing = sbx.run_code("1/0", envs={"BRIG_LEAK": f"leak-{i}"})
        assert failing.error is not None and failing.error.name == "ZeroDivisionError"
        after = sbx.run_code("import os; os.environ.get('BRIG_LEAK')")
        if after.text is not None:
            leaked.append((i, after.text))
        sbx.run_code("import os; os.environ.pop('BRIG_LEAK', None); None")
    assert leaked == []


def test_async_run_code():
    async def body():
        s = await AsyncSandbox.create(template=TEMPLATE, timeout=300)
        try:
            out = []
            results = []

            async def on_result(r):  # async callbacks are awaited by the SDK
                results.append(r)

            e = await s.run_code("print('async out')\nz = 20\nz + 1", on_stdout=out.append, on_result=on_result)
            assert e.error is None, e.error
            assert e.text == "21"
            assert any("async out" in m.line for m in out), out
            assert [r.text for r in results] == ["21"]
            assert (await s.run_code("z * 2")).text == "40"
            err = await s.run_code("raise ValueError('bad value')")
            assert err.error.name == "ValueError" and "bad value" in err.error.value
            # Two contexts run concurrently.
            ctx = await s.create_code_context(language="python")
            try:
                a, b = await asyncio.gather(
                    s.run_code("import time; time.sleep(1); 'a'"),
                    s.run_code("import time; time.sleep(1); 'b'", context=ctx),
                )
                assert (a.text, b.text) == ("a", "b")
            finally:
                await s.remove_code_context(ctx)
            with pytest.raises(TimeoutException):
                await s.run_code("import time\nwhile True: time.sleep(0.1)", timeout=2)
            assert (await s.run_code("z", timeout=30)).text == "20"
        finally:
            await s.kill()
        assert await s.is_running() is False

    run_async(body())
